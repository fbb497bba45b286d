//! SQL over a lake as `psync-lake query` and the Python package run it: the
//! session ([`open`]), a text's statements ([`statements`]), each one's plan
//! ([`physical_plan`]) and the one line its failure is reported as ([`query_error`]).
//!
//! ```text
//! params  -v / \set variables, written :name, $name, :"name" in SQL
//! urls    'path/or/s3/glob.parquet' as a table: the stores of such paths
//! ```

pub mod params;
pub mod urls;

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use psync_lake_io::{DeltaAt, Lake, root_message};

use crate::catalog::{self, Entry};
use crate::error::{CoreError, Result};
use crate::session::{EngineOptions, locate, new_context};

/// A session over a lake: its landed tables, and the views (read from a
/// destination when it holds them, otherwise computed when queried).
pub struct LakeSession {
    /// The context the statements run in (URL tables enabled).
    pub ctx: SessionContext,
    /// What is registered in it, landed tables first.
    pub entries: Vec<Entry>,
}

/// Opens the session of `query`: the landed tables of `source` (Delta tables at
/// `at`), the views of `dest` when given, and files queried by path.
pub async fn open(
    source: &str,
    dest: Option<&str>,
    at: &DeltaAt,
    engine: &EngineOptions,
) -> Result<LakeSession> {
    // URL tables: `SELECT * FROM 'data/x/*.parquet'` reads files by path.
    let ctx = new_context(engine)?.enable_url_table();
    let lake = Lake::open_at(&ctx.state(), locate(&ctx, source, engine)?, at).await?;
    let published = match dest {
        Some(d) => Some(Lake::open(&ctx.state(), locate(&ctx, d, engine)?).await?),
        None => None,
    };
    let entries = catalog::register(&ctx, Arc::new(lake), published.as_ref())?;
    Ok(LakeSession { ctx, entries })
}

/// The statements of `sql` with the variables `vars` substituted, after making
/// the store of every remote path it names known to `ctx`.
pub fn statements(
    ctx: &SessionContext,
    sql: &str,
    vars: &params::Vars,
    engine: &EngineOptions,
) -> Result<Vec<Statement>> {
    let sql = params::substitute(sql, vars).map_err(|m| CoreError::Config(m.to_string()))?;
    urls::register_stores(ctx, &sql, engine)?;
    DFParserBuilder::new(sql.as_str())
        .build()
        .and_then(|mut p| p.parse_statements())
        .map(Vec::from)
        .map_err(|e| CoreError::Config(root_message(&e)))
}

/// Plans one statement to the plan that runs it.
pub async fn physical_plan(
    ctx: &SessionContext,
    statement: Statement,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    ctx.execute_logical_plan(plan)
        .await?
        .create_physical_plan()
        .await
}

/// The one line a failed statement is reported as: the root cause, and a table
/// the lake does not have said as such.
pub fn query_error(e: &DataFusionError) -> String {
    let message = root_message(e);
    if let Some((_, rest)) = message.split_once("table '")
        && let Some((name, _)) = rest.split_once("' not found")
    {
        let name = name.rsplit('.').next().unwrap_or(name);
        return format!("this lake has no table '{name}' (\\d lists the tables it has)");
    }
    message
}

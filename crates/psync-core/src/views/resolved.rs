//! Events resolved to the person: `<table>_resolved` views and the shell's
//! `resolved('<table>')` table function.
//!
//! ```text
//! <event table> ⟕ id_graph ON segment_id ─► every column of the event,
//!   canonical_segment_id = the id graph's canonical of its segment_id,
//!                          or the segment_id itself when the id graph does not know it
//! ```
//!
//! An event's `segment_id` is the profile it landed on at the time; after later
//! merges that profile may have been merged away. Joining the id graph *now*
//! gives every event of one person the same `canonical_segment_id`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::JoinType;
use datafusion::prelude::{DataFrame, Expr, SessionContext, coalesce, col, ident};
use psync_lake_io::{Lake, LakeTable};

use crate::inputs::{
    EXTERNAL_ID_MAPPING_UPDATES, ID_GRAPH_UPDATES, Inputs, PROFILE_TRAITS_UPDATES,
};
use crate::on_demand::{LazyPlan, OnDemand};
use crate::views::id_graph;

/// The column every resolved event gains.
pub const CANONICAL: &str = "canonical_segment_id";

/// Whether landed table `t` holds events that can be resolved: a top-level
/// table (not a Personas space's) with a `segment_id` column, other than the
/// Profiles Sync update tables.
pub fn is_event_table(t: &LakeTable) -> bool {
    let name = t.name();
    !name.contains('.')
        && ![
            ID_GRAPH_UPDATES,
            EXTERNAL_ID_MAPPING_UPDATES,
            PROFILE_TRAITS_UPDATES,
        ]
        .contains(&name)
        && t.schema().field_with_name("segment_id").is_ok()
}

/// The event tables of `lake`, by name.
pub fn event_tables(lake: &Lake) -> Vec<String> {
    lake.tables()
        .filter(|t| is_event_table(t))
        .map(|t| t.name().to_string())
        .collect()
}

/// `events` with `canonical_segment_id` appended (replacing a landed column of
/// that name), from `graph` (`segment_id`, `canonical_segment_id` columns).
pub fn resolve(events: DataFrame, graph: DataFrame) -> Result<DataFrame> {
    let names: Vec<String> = events
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != CANONICAL)
        .collect();
    let graph = graph.select(vec![
        col("segment_id").alias("__psync_sid"),
        col(CANONICAL).alias("__psync_canonical"),
    ])?;
    let mut out: Vec<Expr> = names.iter().map(ident).collect();
    out.push(coalesce(vec![col("__psync_canonical"), ident("segment_id")]).alias(CANONICAL));
    // The graph is the build side (see `session::views_context`): events can be many.
    graph
        .join(
            events,
            JoinType::Right,
            &["__psync_sid"],
            &["segment_id"],
            None,
        )?
        .select(out)
}

/// The `<table>_resolved` view (sorted by `canonical_segment_id`, then
/// `timestamp` when the table has one: a person's events are contiguous, and
/// readers filtering on one person skip most row groups).
pub fn plan(inputs: &Inputs<'_>, table: &str, graph: &id_graph::IdGraph) -> Result<DataFrame> {
    let Some(t) = inputs.lake().table(table).filter(|t| is_event_table(t)) else {
        let known = event_tables(inputs.lake());
        return Err(DataFusionError::Plan(format!(
            "no event table '{table}' under {} to resolve (event tables: {})",
            inputs.lake().location().display,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let Some(events) = inputs.whole(t.name())? else {
        return Err(DataFusionError::Internal(format!(
            "table '{table}' vanished"
        )));
    };
    let has_time = events
        .schema()
        .has_column_with_unqualified_name("timestamp");
    let df = resolve(events, graph.df.clone())?;
    let mut sort = vec![col(CANONICAL).sort(true, true)];
    if has_time {
        sort.push(col("timestamp").sort(true, true));
    }
    df.sort(sort)
}

/// The schema of `table` resolved.
fn resolved_schema(table: &LakeTable) -> SchemaRef {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != CANONICAL)
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(CANONICAL, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// `resolved('<table>')` in the SQL shell: the events of a landed table with
/// `canonical_segment_id`, joined with whatever the session calls `id_graph`
/// (the published view, or the one computed on demand).
pub struct ResolvedFunction {
    lake: Arc<Lake>,
}

impl ResolvedFunction {
    /// The function over the event tables of `lake`.
    pub fn new(lake: Arc<Lake>) -> Self {
        ResolvedFunction { lake }
    }
}

impl fmt::Debug for ResolvedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResolvedFunction")
    }
}

impl TableFunctionImpl for ResolvedFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = || {
            let tables = event_tables(&self.lake);
            DataFusionError::Plan(format!(
                "resolved() takes the name of an event table as a string, e.g. resolved('{}') (event tables: {})",
                tables.first().map_or("tracks", String::as_str),
                if tables.is_empty() {
                    "none".to_string()
                } else {
                    tables.join(", ")
                }
            ))
        };
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::Utf8View(Some(s)), _)] => s.to_lowercase(),
            _ => return Err(usage()),
        };
        let Some(table) = self.lake.table(&name).filter(|t| is_event_table(t)) else {
            return Err(usage());
        };
        Ok(Arc::new(OnDemand::new(
            resolved_schema(table),
            ResolvedPlan {
                table: table.clone(),
            },
        )))
    }
}

/// One event table resolved, planned when scanned.
#[derive(Debug)]
pub struct ResolvedPlan {
    table: LakeTable,
}

#[async_trait]
impl LazyPlan for ResolvedPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        let graph = ctx.table("id_graph").await?;
        let events = ctx.read_table(Arc::new(self.table.clone()))?;
        resolve(events, graph)
    }
}

//! `materialize`: one full run from a lake to a destination.
//!
//! ```text
//! Lake::open (list + footers) ─► views::plan (id graph resolved) ─► stage each view
//!   ─► commit (renames) ─► run record
//! ```

use std::sync::Arc;
use std::time::Instant;

use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use psync_lake_io::{Lake, LakeTable, Location, root_message};
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::inputs::{Inputs, Warnings};
use crate::publish::Publisher;
use crate::session::{EngineOptions, locate, new_context};
use crate::views::{self, View};

/// What to materialize, from where, to where.
#[derive(Debug, Clone)]
pub struct MaterializeOptions {
    /// The lake root.
    pub source: String,
    /// The destination root.
    pub dest: String,
    /// The views to publish.
    pub views: Vec<View>,
    /// Engine settings.
    pub engine: EngineOptions,
    /// A destination lock older than this belongs to a dead run and is replaced.
    pub stale_lock_after: std::time::Duration,
}

/// One landed table as read by a run.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// Table name.
    pub table: String,
    /// Parquet files read.
    pub files: usize,
    /// Rows (from the footers).
    pub rows: u64,
    /// Bytes of Parquet.
    pub bytes: u64,
}

/// One published view.
#[derive(Debug, Clone, Serialize)]
pub struct ViewReport {
    /// View name.
    pub view: String,
    /// Rows published.
    pub rows: u64,
    /// The published file.
    pub file: String,
    /// Seconds spent computing and writing it.
    pub seconds: f64,
}

/// The outcome of a run; also written as the run record.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Unique id of the run.
    pub run_id: String,
    /// `full`.
    pub mode: String,
    /// Lake root.
    pub source: String,
    /// Destination root.
    pub dest: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Tables read.
    pub inputs: Vec<InputReport>,
    /// Views published.
    pub views: Vec<ViewReport>,
    /// Merge cycles broken.
    pub cycles_broken: u64,
    /// Pointer-jumping rounds of the id graph.
    pub id_graph_rounds: u32,
    /// Warnings (skipped rows, missing tables, broken cycles).
    pub warnings: Vec<String>,
}

/// Progress notifications for a display.
pub trait Progress: Send + Sync {
    /// A stage started (`listing`, `id_graph`, a view name, `publishing`).
    fn stage(&self, name: &str);
    /// A view finished.
    fn view_done(&self, report: &ViewReport);
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _: &str) {}
    fn view_done(&self, _: &ViewReport) {}
}

/// A fresh run id: UTC time plus process id, sortable.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

/// Runs a full materialization.
pub async fn materialize(opts: &MaterializeOptions, progress: &dyn Progress) -> Result<RunReport> {
    let source = Location::parse_with(&opts.source, &opts.engine.store)?;
    let dest = Location::parse_with(&opts.dest, &opts.engine.store)?;
    materialize_at(opts, source, dest, progress).await
}

/// Runs a full materialization between locations already built (tests use this
/// to put a fault-injecting store under a run).
pub async fn materialize_at(
    opts: &MaterializeOptions,
    source: Location,
    dest: Location,
    progress: &dyn Progress,
) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    if opts.views.is_empty() {
        return Err(CoreError::Config("no views selected".into()));
    }
    let ctx = new_context(&opts.engine)?;
    source.register(&ctx);
    dest.register(&ctx);
    progress.stage("listing");
    let lake = Lake::open(&ctx.state(), source).await?;
    if lake.tables().next().is_none() {
        return Err(CoreError::Config(format!(
            "no tables under {} (expected <root>/<table>/*.parquet)",
            opts.source
        )));
    }
    let inputs = Inputs::new(&ctx, &lake);
    let mut warnings = Warnings::default();

    progress.stage("id_graph");
    let planned = match views::plan(&inputs, &opts.views, &mut warnings).await {
        Ok(p) => p,
        Err(e) => return Err(blame(&ctx, &lake, e).await),
    };

    let run_id = new_run_id();
    let publisher = Publisher::new(dest, run_id.clone());
    publisher.lock(opts.stale_lock_after).await?;
    let result = publish(
        opts, progress, &ctx, &lake, &publisher, planned, warnings, started, started_at,
    )
    .await;
    publisher.unlock().await;
    result
}

/// Stages, commits and records the views of a run that holds the lock.
#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of one run, passed once"
)]
async fn publish(
    opts: &MaterializeOptions,
    progress: &dyn Progress,
    ctx: &SessionContext,
    lake: &Lake,
    publisher: &Publisher,
    planned: views::Planned,
    warnings: Warnings,
    started: Instant,
    started_at: String,
) -> Result<RunReport> {
    let run_id = publisher.run_id().to_string();
    let mut staged = vec![];
    let mut reports = vec![];
    for (view, df) in planned.views {
        progress.stage(view.name());
        let t = Instant::now();
        let result = publisher.stage(view.name(), df).await;
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                publisher.cleanup().await;
                return Err(match e {
                    CoreError::DataFusion(e) => blame(ctx, lake, e).await,
                    other => other,
                });
            }
        };
        let report = ViewReport {
            view: view.name().to_string(),
            rows: s.rows,
            file: publisher.dest().url_of(&publisher.view_file(view.name())),
            seconds: t.elapsed().as_secs_f64(),
        };
        progress.view_done(&report);
        reports.push(report);
        staged.push(s);
    }
    progress.stage("publishing");
    publisher.commit(&staged).await?;

    let report = RunReport {
        run_id,
        mode: "full".into(),
        source: opts.source.clone(),
        dest: opts.dest.clone(),
        started_at,
        seconds: started.elapsed().as_secs_f64(),
        inputs: lake
            .tables()
            .map(|t| InputReport {
                table: t.name().to_string(),
                files: t.files().len(),
                rows: t.rows(),
                bytes: t.files().iter().map(|f| f.meta.size).sum(),
            })
            .collect(),
        views: reports,
        cycles_broken: planned.cycles_broken,
        id_graph_rounds: planned.id_graph_rounds,
        warnings: warnings.0,
    };
    let json = serde_json::to_value(&report).map_err(|e| CoreError::Config(e.to_string()))?;
    publisher.record(&json).await?;
    Ok(report)
}

/// The physical plan of each view (after the id graph is resolved), as
/// DataFusion's `EXPLAIN` prints it, without writing anything.
pub async fn explain(opts: &MaterializeOptions) -> Result<String> {
    let ctx = new_context(&opts.engine)?;
    let lake = Lake::open(&ctx.state(), locate(&ctx, &opts.source, &opts.engine)?).await?;
    let inputs = Inputs::new(&ctx, &lake);
    let planned = views::plan(&inputs, &opts.views, &mut Warnings::default()).await?;
    let mut out = String::new();
    for (view, df) in planned.views {
        let plan = df.create_physical_plan().await?;
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        out.push_str(&format!("-- {view}\n{text}\n"));
    }
    Ok(out)
}

/// Turns a query error into one that names the landed file that caused it, by
/// scanning each file of each table alone (only ever done after a failure).
pub async fn blame(ctx: &SessionContext, lake: &Lake, error: DataFusionError) -> CoreError {
    for table in lake.tables() {
        for file in table.files() {
            let single = Arc::new(table.with_files(vec![file.clone()]));
            if let Err(e) = scan(ctx, single.clone(), None).await {
                // Name the column too, when one column alone fails.
                let mut message = root_message(&e);
                for field in single.schema().fields() {
                    if scan(ctx, single.clone(), Some(field.name())).await.is_err() {
                        message = format!("column '{}': {message}", field.name());
                        break;
                    }
                }
                return CoreError::InputFile {
                    file: lake.location().url_of(&file.meta.location),
                    message,
                };
            }
        }
    }
    CoreError::DataFusion(error)
}

/// Reads a table (or one of its columns) to the end.
async fn scan(
    ctx: &SessionContext,
    table: Arc<LakeTable>,
    column: Option<&str>,
) -> datafusion::error::Result<()> {
    let mut df = ctx.read_table(table)?;
    if let Some(c) = column {
        df = df.select(vec![datafusion::prelude::ident(c)])?;
    }
    df.collect().await.map(|_| ())
}

//! A run: from a lake to a destination, in stages a module each.
//!
//! ```text
//! listing (Lake::open: list + footers)
//!   ─► plan      views as DataFrames, state segments          (plan)
//!   ─► execute   a DataFrame run into a staged Parquet file   (execute; a cluster plugs in here)
//!   ─► stage     every view and extra under _psync/tmp/<run>/ (stage)
//!   ─► publish   lock, commit (renames), run record, unlock   (publish)
//! ```
//!
//! The modes, a module each, put these stages together:
//!
//! - [`full`](self::full): the whole history (or as of an instant), no state;
//! - [`stateful`](self::stateful): an incremental run, new files plus saved state,
//!   which goes one of two ways: [`patch`](self::patch) the published views when
//!   they are the saved state's, else [`recompute`](self::recompute) them.
//!
//! [`options`](self::options) has what a run is asked and what it reports.

mod execute;
mod full;
mod options;
mod patch;
mod plan;
pub mod publish;
mod recompute;
mod stage;
mod stateful;

use std::time::Instant;

use datafusion::prelude::SessionContext;
use psync_lake_io::{Lake, Location};

use crate::error::{CoreError, Result};
use crate::inputs::Warnings;
use crate::session::views_context;

pub use options::{InputReport, MaterializeOptions, OnChange, RunMode, RunReport, ViewReport};
pub use plan::explain;
use publish::Publisher;

/// Progress notifications for a display.
pub trait Progress: Send + Sync {
    /// A stage started (`listing`, `resolve` (the id graph), `state`, a view name, `publishing`).
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

/// A fresh run id: UTC time, process id and a counter (runs in one process
/// within one millisecond stay apart), sortable.
pub fn new_run_id() -> String {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{}-{n}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

/// Runs a materialization.
pub async fn materialize(opts: &MaterializeOptions, progress: &dyn Progress) -> Result<RunReport> {
    let source = Location::parse_with(&opts.source, &opts.engine.store)?;
    let dest = Location::parse_with(&opts.dest, &opts.engine.store)?;
    materialize_at(opts, source, dest, progress).await
}

/// Runs a materialization between locations already built (tests use this
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
    let ctx = views_context(&opts.engine)?;
    source.register(&ctx);
    dest.register(&ctx);
    progress.stage("listing");
    let lake = Lake::open_at(&ctx.state(), source, &opts.source_at).await?;
    if lake.tables().next().is_none() {
        return Err(CoreError::Config(format!(
            "no tables under {} (expected <root>/<table>/*.parquet)",
            opts.source
        )));
    }
    let publisher = Publisher::new(dest, new_run_id())
        .with_stop(opts.stop.clone())
        .with_format(opts.format);
    let run = Run {
        opts,
        progress,
        ctx: &ctx,
        lake: &lake,
        publisher: &publisher,
        warnings: Warnings::default(),
        started,
        started_at,
        patched: false,
    };
    // A stop drops the run's work in progress, unless it is committing: then the
    // commit stops between two files by itself.
    tokio::select! {
        result = run.dispatch() => result,
        signal = publisher.stopped_before_commit() => {
            publisher.abandon().await;
            Err(publisher.interrupted(signal))
        }
    }
}

impl Run<'_> {
    /// Runs the mode the options ask for.
    async fn dispatch(self) -> Result<RunReport> {
        match &self.opts.mode {
            RunMode::Full => self.full(None).await,
            RunMode::AsOf(t) => self.full(Some(*t)).await,
            RunMode::Incremental { on_change } => self.incremental(*on_change).await,
        }
    }
}

/// One run: what it reads, where it publishes, what it has to say.
struct Run<'a> {
    opts: &'a MaterializeOptions,
    progress: &'a dyn Progress,
    ctx: &'a SessionContext,
    /// The lake as listed (every file).
    lake: &'a Lake,
    publisher: &'a Publisher,
    warnings: Warnings,
    started: Instant,
    started_at: String,
    /// Whether the core views are patched (see [`RunReport::patched`]).
    patched: bool,
}

impl Run<'_> {
    /// Starts a stage: tells the display, and logs when (`--log info` shows where time goes).
    fn enter(&self, stage: &str) {
        tracing::info!(
            stage,
            at = format!("{:.2}s", self.started.elapsed().as_secs_f64()),
            "stage"
        );
        self.progress.stage(stage);
    }

    /// The report of this run, which read `read` and published `views`.
    fn report(
        &self,
        mode: &str,
        as_of: Option<i64>,
        views: Vec<ViewReport>,
        cycles_broken: u64,
        id_graph_rounds: u32,
        read: &Lake,
    ) -> RunReport {
        RunReport {
            run_id: self.publisher.run_id().to_string(),
            mode: mode.into(),
            as_of: as_of
                .and_then(|t| chrono::DateTime::from_timestamp_micros(t).map(|d| d.to_rfc3339())),
            source: self.opts.source.clone(),
            dest: self.opts.dest.clone(),
            format: self.opts.format,
            started_at: self.started_at.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            inputs: read
                .tables()
                .map(|t| InputReport {
                    table: t.name().to_string(),
                    files: t.files().len(),
                    rows: t.rows(),
                    bytes: t.files().iter().map(|f| f.meta.size).sum(),
                    delta_version: t.delta_version(),
                })
                .collect(),
            views: views
                .into_iter()
                .map(|v| ViewReport {
                    delta_version: self.publisher.delta_version(&v.view),
                    ..v
                })
                .collect(),
            cycles_broken,
            id_graph_rounds,
            warnings: self.warnings.0.clone(),
            patched: self.patched,
        }
    }

    /// Writes the run record, then (Delta output) `_psync/views.json`; returns the report.
    async fn record(&self, report: RunReport) -> Result<RunReport> {
        let json = serde_json::to_value(&report).map_err(|e| CoreError::Config(e.to_string()))?;
        self.publisher.record(&json).await?;
        // Last: it names the versions of a complete set only once all are committed.
        self.publisher.write_views_json().await?;
        Ok(report)
    }

    /// Ends a run that held the lock: its staging folder removed, the lock released.
    async fn release(&self, result: Result<RunReport>) -> Result<RunReport> {
        self.publisher.cleanup().await;
        self.publisher.unlock().await;
        result
    }
}

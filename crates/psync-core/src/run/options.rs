//! What a run is asked to do ([`MaterializeOptions`]) and what it says it did
//! ([`RunReport`], also written as the run record).

use psync_lake_io::DeltaAt;
use serde::Serialize;

use crate::lease::LeaseOptions;
use crate::run::publish::OutputFormat;
use crate::session::EngineOptions;
use crate::stop::Stop;
use crate::views::View;

/// How much of the history a run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// Every view from the whole history.
    Full,
    /// Only files not processed before, plus the state saved under
    /// `<dest>/_psync/state/` (the first run, without state, reads everything).
    Incremental {
        /// What to do when a processed file changed or vanished.
        on_change: OnChange,
    },
    /// The views as they stood at this instant (µs since the epoch, UTC): only
    /// updates with `timestamp <=` it, or a NULL timestamp.
    AsOf(i64),
}

/// What an incremental run does when a file it processed before changed or vanished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnChange {
    /// Say so and rebuild everything (a full run that saves state).
    #[default]
    Rebuild,
    /// Stop with an error naming the file.
    Fail,
}

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
    /// How the run claims the destination (lease timeout, --break-lock).
    pub lease: LeaseOptions,
    /// Stops the run when requested (the CLI requests it on SIGTERM/SIGINT).
    pub stop: Stop,
    /// Full, incremental or as-of.
    pub mode: RunMode,
    /// Whether the run writes the identity health tables under `<dest>/_psync/health/`.
    pub health: bool,
    /// The version of the source's Delta tables to read.
    pub source_at: DeltaAt,
    /// How views are published: Parquet files, or Delta tables (each run a new
    /// version of every view it publishes; an incremental run rewrites them whole).
    pub format: OutputFormat,
}

/// One landed table as read by a run.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// Table name.
    pub table: String,
    /// Parquet files read.
    pub files: usize,
    /// Rows (from the footers, less the rows deletion vectors remove).
    pub rows: u64,
    /// Bytes of Parquet.
    pub bytes: u64,
    /// The version of the table's Delta log read, for a Delta table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
}

/// One published view.
#[derive(Debug, Clone, Serialize)]
pub struct ViewReport {
    /// View name.
    pub view: String,
    /// Rows published.
    pub rows: u64,
    /// The published file (with Delta output: the table's folder).
    pub file: String,
    /// Seconds spent computing and writing it.
    pub seconds: f64,
    /// With Delta output: the version of the view's table this run committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
}

/// The outcome of a run; also written as the run record.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Unique id of the run.
    pub run_id: String,
    /// `full`, `incremental`, `as-of` or `nothing-new` (an incremental run that found
    /// no new file and wrote nothing).
    pub mode: String,
    /// For as-of runs, the instant (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Lake root.
    pub source: String,
    /// Destination root.
    pub dest: String,
    /// How the views were published (`parquet` or `delta`).
    pub format: OutputFormat,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Tables read (for incremental runs: the new files only).
    pub inputs: Vec<InputReport>,
    /// Views published.
    pub views: Vec<ViewReport>,
    /// Merge cycles broken.
    pub cycles_broken: u64,
    /// Pointer-jumping rounds of the id graph.
    pub id_graph_rounds: u32,
    /// Warnings (skipped rows, missing tables, broken cycles, rebuilds).
    pub warnings: Vec<String>,
    /// Whether this incremental run patched the previously published views (only
    /// the rows the new files can change were recomputed) rather than recomputing
    /// them from the saved state.
    pub patched: bool,
}

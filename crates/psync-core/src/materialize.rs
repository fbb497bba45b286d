//! `materialize`: one run from a lake to a destination.
//!
//! ```text
//! full:        Lake::open (list + footers) ─► views::plan (id graph resolved) ─► stage each view
//!                ─► commit (renames) ─► run record
//! incremental: Lake::open ─► manifest: which files are new ─► new files ∪ saved state
//!                ─► published views still the manifest's?
//!                     yes: patch them (id_graph::patch: only the keys the new files reach)
//!                     no:  views over saved state ∪ new files
//!                ─► stage the new state segment and the views (together when patching)
//!                ─► commit views, then state, then manifest (with the views' files) ─► run record
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use object_store::ObjectStoreExt;
use psync_lake_io::{DeltaAt, Lake, Location};
use serde::Serialize;

use crate::blame::blame;
use crate::error::{CoreError, Result};
use crate::extras::{self, Extra};
use crate::incremental::{
    Delta, FileEntry, MANIFEST, Manifest, STATE_TABLES, Segment, plan_segment,
};
use crate::inputs::{EXTERNAL_ID_MAPPING_UPDATES, ID_GRAPH_UPDATES, Inputs, Warnings};
use crate::lease::LeaseOptions;
use crate::publish::{OutputFormat, Publisher, Replaces, Staged};
use crate::session::{EngineOptions, locate, views_context};
use crate::stop::Stop;
use crate::views::{self, View, external_id_mapping, id_graph, profile_traits};

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
        result = run.dispatch(&lake) => result,
        signal = publisher.stopped_before_commit() => {
            publisher.abandon().await;
            Err(publisher.interrupted(signal))
        }
    }
}

impl Run<'_> {
    /// Runs the mode the options ask for.
    async fn dispatch(mut self, lake: &Lake) -> Result<RunReport> {
        let opts = self.opts;
        match &opts.mode {
            RunMode::Full => self.full(None).await,
            RunMode::AsOf(t) => self.full(Some(*t)).await,
            RunMode::Incremental { on_change } => {
                let Some(manifest) = Manifest::read(self.publisher.dest()).await? else {
                    tracing::info!(
                        "no saved state under the destination: this run reads everything"
                    );
                    return self.stateful(lake, None).await;
                };
                if manifest.source != opts.source {
                    self.warnings.push(format!(
                        "the saved state was built from {}, not {}: rebuilding in full",
                        manifest.source, opts.source
                    ));
                    return self.stateful(lake, None).await;
                }
                let delta = Delta::between(&manifest, lake);
                if !delta.changed.is_empty() {
                    let list: Vec<String> = delta
                        .changed
                        .iter()
                        .take(3)
                        .map(|(url, why)| format!("{url} ({why})"))
                        .collect();
                    let more = delta.changed.len().saturating_sub(3);
                    let what = format!(
                        "{} landed file(s) changed or vanished since run {} processed them: {}{}",
                        delta.changed.len(),
                        manifest.run_id,
                        list.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    );
                    return match on_change {
                        OnChange::Fail => Err(CoreError::Config(format!(
                            "{what}; rerun with --on-change rebuild to rebuild every view from the lake as it is"
                        ))),
                        OnChange::Rebuild => {
                            self.warnings.push(format!("{what}: rebuilding in full"));
                            self.stateful(lake, None).await
                        }
                    };
                }
                // Nothing new: nothing to write, unless a view this run publishes is not
                // there (an earlier run had other --views): then the state makes it.
                if delta.is_empty() && self.all_published().await? {
                    return Ok(self.report(
                        "nothing-new",
                        None,
                        vec![],
                        0,
                        0,
                        &lake.with_files(|_, _| vec![]),
                    ));
                }
                let new = delta.restrict(lake);
                self.stateful(&new, Some(&manifest)).await
            }
        }
    }
}

/// The core views as the previous incremental run published them.
struct PublishedViews {
    id_graph: DataFrame,
    external_id_mapping: DataFrame,
    profile_traits: DataFrame,
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

    /// A full (or as-of) run: no state read or written.
    async fn full(mut self, as_of: Option<i64>) -> Result<RunReport> {
        let inputs = Inputs::new(self.ctx, self.lake).as_of(as_of);
        self.enter("resolve");
        let planned = match views::plan(&inputs, &self.opts.views, &mut self.warnings).await {
            Ok(p) => p,
            Err(e) => return Err(blame(self.ctx, self.lake, e).await),
        };
        self.publisher.lock(&self.opts.lease).await?;
        let result = async {
            let staged_views = self.stage_views(planned.views).await?;
            let staged_views = self
                .with_extras(staged_views, &planned.graph, as_of)
                .await?;
            self.enter("publishing");
            if as_of.is_some() {
                // The views about to be published are not the saved state's: the next
                // incremental run must not take "nothing new" for "nothing to do".
                self.publisher.forget_state().await?;
            }
            self.publisher.commit(&staged_views.0).await?;
            let mode = if as_of.is_some() { "as-of" } else { "full" };
            let report = self.report(
                mode,
                as_of,
                staged_views.1,
                planned.cycles_broken,
                planned.id_graph_rounds,
                self.lake,
            );
            self.record(report).await
        }
        .await;
        self.release(result).await
    }

    /// A run that reads `input` (the new files; every file when `previous` is
    /// `None`) plus the state `previous` describes, and saves the new state.
    ///
    /// When the core views published with `previous` are still in place, only the
    /// rows the new files can change are recomputed (see `id_graph::patch`); the
    /// rest is the published views' rows. Otherwise the views are recomputed from
    /// the saved state plus the new files.
    async fn stateful(mut self, input: &Lake, previous: Option<&Manifest>) -> Result<RunReport> {
        let state_dir = self.publisher.dest().join(&["_psync", "state"]);
        let saved = match previous {
            Some(_) => Some(Lake::open(&self.ctx.state(), state_dir).await?),
            None => None,
        };
        let published = match previous {
            Some(m) => self.published_views(m).await?,
            None => None,
        };
        // Everything processed so far (the saved segments) plus the new files.
        let nothing = input.with_files(|_, _| vec![]);
        let mut inputs = Inputs::new(self.ctx, input);
        let mut saved_only = Inputs::new(self.ctx, &nothing);
        for table in STATE_TABLES {
            if let Some(t) = saved.as_ref().and_then(|s| s.table(table)) {
                let rows = self.ctx.read_table(Arc::new(t.clone()))?;
                inputs = inputs.with_overlay(table, rows.clone());
                saved_only = saved_only.with_overlay(table, rows);
            }
        }
        let only_new = Inputs::new(self.ctx, input);

        // A patch reads few rows of large state files: the key columns first, the
        // rest only for the rows the joins' dynamic filters let through.
        self.late_materialization(published.is_some());
        self.enter("resolve");
        let resolved = match (&published, previous) {
            (Some(p), Some(m)) => id_graph::patch(
                &inputs,
                &only_new,
                &saved_only,
                p.id_graph.clone(),
                m.cycles_broken,
                &mut self.warnings,
            )
            .await
            .map(|p| (p.graph, Some((p.affected, p.ends)))),
            _ => id_graph::build(&inputs, &mut self.warnings)
                .await
                .map(|g| (g, None)),
        };
        let (graph, patch) = match resolved {
            Ok(r) => r,
            Err(e) => return Err(blame(self.ctx, input, e).await),
        };
        self.patched = patch.is_some();
        self.publisher.lock(&self.opts.lease).await?;
        let result = async {
            self.enter("state");
            let mut state_jobs = vec![];
            for table in STATE_TABLES {
                let saved_table = saved.as_ref().and_then(|s| s.table(table));
                let segment = match (&saved, saved_table) {
                    (None, _) => Segment::All,
                    (Some(_), None) => Segment::New,
                    (Some(_), Some(t)) => plan_segment(t.files()),
                };
                let has_new = input.table(table).is_some_and(|t| !t.files().is_empty());
                if matches!(segment, Segment::New) && !has_new {
                    continue;
                }
                let (of, replaces) = match (&segment, saved_table) {
                    (Segment::Merge(merged), Some(t)) => {
                        let rows = self
                            .ctx
                            .read_table(Arc::new(t.with_files(merged.clone())))?;
                        let paths = merged.iter().map(|f| f.meta.location.clone()).collect();
                        (
                            Inputs::new(self.ctx, input).with_overlay(table, rows),
                            Replaces::These(paths),
                        )
                    }
                    (Segment::All, _) => (inputs.clone(), Replaces::All),
                    _ => (only_new.clone(), Replaces::None),
                };
                let df = match table {
                    ID_GRAPH_UPDATES if matches!(segment, Segment::All) => graph.latest.clone(),
                    ID_GRAPH_UPDATES => id_graph::latest(&of, &mut self.warnings)?,
                    EXTERNAL_ID_MAPPING_UPDATES => {
                        external_id_mapping::compact(&of, &mut self.warnings)?
                    }
                    _ => profile_traits::compact(&of, &mut self.warnings)?,
                };
                state_jobs.push(self.publisher.stage_state(table, df, replaces));
            }
            let (state, (staged_views, reports)) = match (&patch, &published) {
                (Some((affected, ends)), Some(p)) => {
                    // Small queries each: all at once keep the cores busy. The id
                    // graph is written while the other two views find their keys.
                    self.enter(View::IdGraph.name());
                    let id_graph_view = self.stage_view(
                        View::IdGraph,
                        views::sorted(View::IdGraph, graph.df.clone())?,
                        input,
                    );
                    let (mut w1, mut w2) = (Warnings::default(), Warnings::default());
                    let others = async {
                        let (e, t) = futures::try_join!(
                            external_id_mapping::patch(
                                &inputs,
                                &only_new,
                                p.external_id_mapping.clone(),
                                &graph,
                                ends,
                                &mut w1,
                            ),
                            profile_traits::patch(
                                &inputs,
                                &only_new,
                                p.profile_traits.clone(),
                                &graph,
                                affected,
                                ends,
                                &mut w2,
                            ),
                        )?;
                        let planned = vec![
                            (
                                View::ExternalIdMapping,
                                views::sorted(View::ExternalIdMapping, e)?,
                            ),
                            (View::ProfileTraits, views::sorted(View::ProfileTraits, t)?),
                        ];
                        self.stage_views_from(planned, input, true).await
                    };
                    let state_jobs = state_jobs.into_iter().map(|job| self.stage(job, input));
                    let (state, first, (mut staged, mut reports)) = futures::try_join!(
                        futures::future::try_join_all(state_jobs),
                        id_graph_view,
                        others,
                    )?;
                    self.warnings.0.extend(w1.0.into_iter().chain(w2.0));
                    staged.insert(0, first.0);
                    reports.insert(0, first.1);
                    (state, (staged, reports))
                }
                _ => {
                    let mut planned = vec![];
                    for &view in &self.opts.views {
                        let df = match view {
                            View::IdGraph => graph.df.clone(),
                            View::ExternalIdMapping | View::ProfileTraits => {
                                views::plan_view(&inputs, view, &graph, &mut self.warnings)?
                            }
                            // Staged by `with_extras`.
                            View::IdGraphHistory
                            | View::Users
                            | View::AudienceMembership
                            | View::ComputedTraits
                            | View::Resolved(_) => continue,
                        };
                        planned.push((view, views::sorted(view, df)?));
                    }
                    let mut state = vec![];
                    for job in state_jobs {
                        state.push(self.stage(job, input).await?);
                    }
                    (state, self.stage_views_from(planned, input, false).await?)
                }
            };
            let (staged_views, reports) = self
                .with_extras((staged_views, reports), &graph, None)
                .await?;
            self.enter("publishing");
            // Views first, then the state, then the manifest: see `incremental`.
            self.publisher.commit(&staged_views).await?;
            self.publisher.commit(&state).await?;
            let mut manifest = Manifest::of(self.lake, self.publisher.run_id(), &self.opts.source);
            manifest.views = self.core_view_files().await?;
            manifest.cycles_broken = graph.cycles_broken;
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| CoreError::Config(e.to_string()))?;
            self.publisher.put_meta(&["state", MANIFEST], body).await?;
            let mode = if previous.is_some() {
                "incremental"
            } else {
                "full"
            };
            let report = self.report(
                mode,
                None,
                reports,
                graph.cycles_broken,
                graph.rounds,
                input,
            );
            self.record(report).await
        }
        .await;
        self.release(result).await
    }

    /// The published core views as this run leaves them, when it published all
    /// three (else none: a view it did not publish is not the manifest's).
    async fn core_view_files(&self) -> Result<BTreeMap<String, FileEntry>> {
        let mut files = BTreeMap::new();
        if !self.publishes_core_views() {
            return Ok(files);
        }
        for view in View::ALL {
            if let Some(entry) = self.view_entry(view).await? {
                files.insert(view.name().to_string(), entry);
            }
        }
        Ok(files)
    }

    /// Whether this run publishes all three core views (only then do its views
    /// and the state it saves stand for the same landed files).
    fn publishes_core_views(&self) -> bool {
        View::ALL.iter().all(|v| self.opts.views.contains(v))
    }

    /// The published file of `view` as the store describes it now; `None` when there is none.
    async fn view_entry(&self, view: View) -> Result<Option<FileEntry>> {
        let dest = self.publisher.dest();
        let path = self.publisher.view_file(view.name());
        match dest.store.head(&path).await {
            Ok(meta) => {
                let relative = format!("{0}/{0}.parquet", view.name());
                Ok(Some(FileEntry::at(&relative, &meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(crate::publish::publish_err(&dest.url_of(&path), e)),
        }
    }

    /// The core views `manifest` recorded, opened for reading, when this run
    /// publishes all three and each is still the file the manifest recorded.
    async fn published_views(&self, manifest: &Manifest) -> Result<Option<PublishedViews>> {
        // Delta output: a view is a table of many versions, not the single file a
        // patch merges with; the views are recomputed from the saved state.
        if !self.publishes_core_views() || self.opts.format == OutputFormat::Delta {
            return Ok(None);
        }
        for view in View::ALL {
            let now = self.view_entry(view).await?;
            let same = match (manifest.views.get(view.name()), now) {
                (Some(before), Some(now)) => before.changed(&now).is_none(),
                _ => false,
            };
            if !same {
                tracing::info!(
                    view = view.name(),
                    "the published view is not the saved state's: views recomputed from the state"
                );
                return Ok(None);
            }
        }
        let dest = self.publisher.dest();
        let read = |view: View| {
            let url = dest.url_of(&self.publisher.view_file(view.name()));
            let ctx = self.ctx;
            // Published files are sorted by the view's key: merged, not re-sorted.
            let order = views::key_order(view);
            async move {
                ctx.read_parquet(
                    url,
                    ParquetReadOptions::default().file_sort_order(vec![order]),
                )
                .await
                .map_err(CoreError::from)
            }
        };
        Ok(Some(PublishedViews {
            id_graph: read(View::IdGraph).await?,
            external_id_mapping: read(View::ExternalIdMapping).await?,
            profile_traits: read(View::ProfileTraits).await?,
        }))
    }

    /// Whether scans evaluate filters (joins' dynamic filters included) inside
    /// the Parquet reader, decoding the other columns only for the rows that pass.
    fn late_materialization(&self, on: bool) {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let parquet = &mut state.config_mut().options_mut().execution.parquet;
        parquet.pushdown_filters = on;
        parquet.reorder_filters = on;
    }

    /// Whether every view this run publishes has a published file.
    async fn all_published(&self) -> Result<bool> {
        let dest = self.publisher.dest();
        let mut files = vec![];
        for &view in &self.opts.views {
            if view.is_personas() {
                let file = format!("{view}.parquet");
                for space in self.lake.spaces() {
                    files.push(dest.child(&[space.as_str(), view.name(), file.as_str()]));
                }
            } else {
                files.push(self.publisher.view_file(view.name()));
            }
        }
        for file in files {
            if !self.publisher.is_published(&file).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Awaits a staging write, naming the landed file when a query error came from one.
    async fn stage(
        &self,
        write: impl std::future::Future<Output = Result<Staged>>,
        input: &Lake,
    ) -> Result<Staged> {
        match write.await {
            Ok(s) => Ok(s),
            Err(CoreError::DataFusion(e)) => Err(blame(self.ctx, input, e).await),
            Err(other) => Err(other),
        }
    }

    async fn stage_views(
        &self,
        planned: Vec<(View, datafusion::prelude::DataFrame)>,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        self.stage_views_from(planned, self.lake, false).await
    }

    /// Runs and stages every view, reporting each as it is done; `together`
    /// runs them at once (a patch's views are small queries that leave cores idle
    /// alone; a full run's are large and take their turns within the memory limit).
    async fn stage_views_from(
        &self,
        planned: Vec<(View, datafusion::prelude::DataFrame)>,
        input: &Lake,
        together: bool,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        let done = if together {
            for (view, _) in &planned {
                self.enter(view.name());
            }
            futures::future::try_join_all(
                planned
                    .into_iter()
                    .map(|(view, df)| self.stage_view(view, df, input)),
            )
            .await?
        } else {
            let mut done = vec![];
            for (view, df) in planned {
                self.enter(view.name());
                done.push(self.stage_view(view, df, input).await?);
            }
            done
        };
        Ok(done.into_iter().unzip())
    }

    /// Runs and stages one core view.
    async fn stage_view(
        &self,
        view: View,
        df: DataFrame,
        input: &Lake,
    ) -> Result<(Staged, ViewReport)> {
        let write = self.publisher.stage(view.name(), df);
        self.stage_reported(view.name(), write, input).await
    }

    /// Runs and stages a Personas or `_resolved` view.
    async fn stage_extra(&self, extra: Extra, input: &Lake) -> Result<(Staged, ViewReport)> {
        let target: Vec<&str> = extra.target.iter().map(String::as_str).collect();
        let write = self.publisher.stage_at(&extra.name, &target, extra.df);
        self.stage_reported(&extra.name, write, input).await
    }

    /// Awaits the staging write of the view `name`, then reports it to the display.
    async fn stage_reported(
        &self,
        name: &str,
        write: impl std::future::Future<Output = Result<Staged>>,
        input: &Lake,
    ) -> Result<(Staged, ViewReport)> {
        let t = Instant::now();
        let s = self.stage(write, input).await?;
        let report = ViewReport {
            view: name.to_string(),
            rows: s.rows,
            file: self.publisher.dest().url_of(&s.target),
            seconds: t.elapsed().as_secs_f64(),
            delta_version: None,
        };
        self.progress.view_done(&report);
        Ok((s, report))
    }

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

/// The physical plan of each view (after the id graph is resolved), as
/// DataFusion's `EXPLAIN` prints it, without writing anything.
pub async fn explain(opts: &MaterializeOptions) -> Result<String> {
    let ctx = views_context(&opts.engine)?;
    let source = locate(&ctx, &opts.source, &opts.engine)?;
    let lake = Lake::open_at(&ctx.state(), source, &opts.source_at).await?;
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

// ---- Personas and `_resolved` views, the health report (see `crate::extras`) ----

impl Run<'_> {
    /// Stages the views beyond the core three, and the health tables, after
    /// `staged` (the core views): all are committed together.
    async fn with_extras(
        &self,
        staged: (Vec<Staged>, Vec<ViewReport>),
        graph: &id_graph::IdGraph,
        as_of: Option<i64>,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        let (mut files, mut reports) = staged;
        // Whole tables: no filter to push into their scans.
        self.late_materialization(false);
        // Every landed file whatever the mode: these are recomputed in full.
        let inputs = Inputs::new(self.ctx, self.lake).as_of(as_of);
        // The health report reads the core views as staged, not as published.
        let staged_view = |view: View| -> Option<String> {
            files
                .iter()
                .find(|s| s.name == view.name())
                .map(|s| self.publisher.staged_url(s))
        };
        let external_id_mapping = staged_view(View::ExternalIdMapping);
        let profile_traits = staged_view(View::ProfileTraits);
        for view in extras::extra_views(self.lake, &self.opts.views) {
            let extra = view.plan(&inputs, graph).await?;
            self.progress.stage(&extra.name);
            let (s, r) = self.stage_extra(extra, self.lake).await?;
            files.push(s);
            reports.push(r);
        }
        if !self.opts.health {
            return Ok((files, reports));
        }
        self.progress.stage("health");
        let started = Instant::now();
        let tables = extras::health_tables(extras::HealthOf {
            inputs: &inputs,
            graph,
            external_id_mapping,
            profile_traits,
            run_id: self.publisher.run_id(),
        })
        .await?;
        for table in tables {
            let target: Vec<&str> = table.target.iter().map(String::as_str).collect();
            let s = self
                .publisher
                .stage_at(&table.name, &target, table.df)
                .await?;
            files.push(s);
        }
        tracing::info!(
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            "health tables written"
        );
        Ok((files, reports))
    }
}

//! What a run publishes besides the three core views, staged after them and
//! committed with them (so a failing run leaves all of it as it was):
//!
//! ```text
//! every Personas space found (personas_<space>/, engage_<space>/)
//!   × the Personas views asked for  ─► <dest>/<space>/<view>/<view>.parquet
//! every `<table>_resolved` asked for ─► <dest>/<table>_resolved/<table>_resolved.parquet
//! the health report (always)        ─► <dest>/_psync/health/<table>/<table>.parquet
//! ```
//!
//! These are recomputed from every landed file whatever the run mode: an
//! incremental run reads the new files for the core views, but the Personas
//! tables, the event tables and the daily merge counts are read in full (the
//! id graph they join is the incremental run's, which equals a full run's).

use std::time::Instant;

use datafusion::prelude::{DataFrame, SessionContext};
use psync_lake_io::Lake;

use crate::blame::blame;
use crate::error::{CoreError, Result};
use crate::health::{self, HealthInputs};
use crate::inputs::{Inputs, Warnings};
use crate::materialize::{Progress, ViewReport};
use crate::publish::{Publisher, Staged};
use crate::views::id_graph::IdGraph;
use crate::views::{self, View, external_id_mapping, personas, resolved};

/// Everything the extra stage reads.
pub struct Extras<'a> {
    /// The run's session.
    pub ctx: &'a SessionContext,
    /// Every landed table, all files (as of the run's instant, for as-of runs).
    pub inputs: &'a Inputs<'a>,
    /// The run's resolved id graph.
    pub graph: &'a IdGraph,
    /// Where the run publishes.
    pub publisher: &'a Publisher,
    /// The views asked for.
    pub views: &'a [View],
    /// The core views this run already staged (the health report reads them).
    pub staged: &'a [Staged],
    /// Cycles the id graph broke.
    pub cycles_broken: u64,
    /// Whether to write the health tables.
    pub health: bool,
    /// Progress display.
    pub progress: &'a dyn Progress,
}

/// Stages the Personas views of every space, the `_resolved` views asked for,
/// and the health tables; returns them with a report per view.
pub async fn stage(x: &Extras<'_>) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
    let lake = x.inputs.lake();
    let mut staged = vec![];
    let mut reports = vec![];

    let wanted: Vec<View> = x
        .views
        .iter()
        .copied()
        .filter(|v| v.is_personas())
        .collect();
    let spaces = lake.spaces();
    if !wanted.is_empty() && spaces.is_empty() {
        tracing::info!("no Personas space (personas_<space>/ or engage_<space>/) under the source");
    }
    for space in &spaces {
        for &view in &wanted {
            let name = format!("{space}.{view}");
            let file = format!("{view}.parquet");
            let target = [space.as_str(), view.name(), file.as_str()];
            let df = views::sorted(view, personas::plan(x.inputs, space, view)?)?;
            let (s, r) = timed(x, &name, &target, df, lake).await?;
            staged.push(s);
            reports.push(r);
        }
    }

    for &view in x.views {
        let Some(table) = view.resolved_table() else {
            continue;
        };
        let name = view.name();
        let file = format!("{name}.parquet");
        let df = resolved::plan(x.inputs, table, x.graph)?;
        let (s, r) = timed(x, name, &[name, file.as_str()], df, lake).await?;
        staged.push(s);
        reports.push(r);
    }

    if !x.health {
        return Ok((staged, reports));
    }
    x.progress.stage("health");
    let started = std::time::Instant::now();
    let staged_view = |view: View| -> Option<String> {
        x.staged
            .iter()
            .find(|s| s.name == view.name())
            .map(|s| x.publisher.staging_url(&s.name))
    };
    let read = |url: String| x.ctx.read_parquet(url, Default::default());
    let external_id_mapping = match staged_view(View::ExternalIdMapping) {
        Some(url) => read(url).await?,
        // Cheap to plan again (one aggregation of the identifiers).
        None => external_id_mapping::plan(x.inputs, x.graph, &mut Warnings::default())?,
    };
    let profile_traits = match staged_view(View::ProfileTraits) {
        Some(url) => Some(read(url).await?),
        // The trait pivot is the costliest view: not run again for the report.
        None => None,
    };
    let tables = health::compute(HealthInputs {
        inputs: x.inputs,
        graph: x.graph,
        external_id_mapping,
        profile_traits,
        cycles_broken: x.cycles_broken,
        run_id: x.publisher.run_id(),
    })
    .await;
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return Err(blame(x.ctx, lake, e).await),
    };
    for (table, df) in tables {
        let file = format!("{table}.parquet");
        let target = [health::DIR[0], health::DIR[1], table, file.as_str()];
        let s = x
            .publisher
            .stage_at(&format!("health.{table}"), &target, df)
            .await?;
        staged.push(s);
    }
    tracing::info!(
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "health tables written"
    );
    Ok((staged, reports))
}

/// Runs and stages one view, timing it.
async fn timed(
    x: &Extras<'_>,
    name: &str,
    target: &[&str],
    df: DataFrame,
    lake: &Lake,
) -> Result<(Staged, ViewReport)> {
    x.progress.stage(name);
    let t = Instant::now();
    let s = match x.publisher.stage_at(name, target, df).await {
        Ok(s) => s,
        Err(CoreError::DataFusion(e)) => return Err(blame(x.ctx, lake, e).await),
        Err(other) => return Err(other),
    };
    let report = ViewReport {
        view: name.to_string(),
        rows: s.rows,
        file: x.publisher.dest().url_of(&s.target),
        seconds: t.elapsed().as_secs_f64(),
    };
    x.progress.view_done(&report);
    Ok((s, report))
}

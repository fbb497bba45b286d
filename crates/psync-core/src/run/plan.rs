//! Planning a run's outputs: inputs and a resolved id graph in, `DataFrame`s
//! out. Nothing here writes to the destination; running the plans is
//! [`super::execute`]'s, through [`super::stage`].

use std::sync::Arc;

use datafusion::prelude::{DataFrame, SessionContext};
use psync_lake_io::Lake;

use crate::error::Result;
use crate::incremental::{STATE_TABLES, Segment, plan_segment};
use crate::inputs::{EXTERNAL_ID_MAPPING_UPDATES, ID_GRAPH_UPDATES, Inputs, Warnings};
use crate::run::MaterializeOptions;
use crate::run::publish::Replaces;
use crate::session::{locate, views_context};
use crate::views::id_graph::IdGraph;
use crate::views::{self, View, external_id_mapping, id_graph, profile_traits};

/// A state segment to save: the compacted rows of one state table.
pub(super) struct StateSegment {
    /// The state table.
    pub table: &'static str,
    /// Its rows.
    pub df: DataFrame,
    /// The saved segments it replaces once committed.
    pub replaces: Replaces,
}

/// What the inputs that a stateful run plans from are made of.
pub(super) struct StateInputs<'a> {
    /// The saved state plus the new files.
    pub all: &'a Inputs<'a>,
    /// The new files only.
    pub only_new: &'a Inputs<'a>,
    /// The new files, as listed.
    pub input: &'a Lake,
    /// The saved state as listed (`None` on a run without state).
    pub saved: Option<&'a Lake>,
}

/// The state segments a stateful run saves: every table in full on a run
/// without state; else the new files' rows, merged with the saved segments
/// [`plan_segment`] picks so their count stays bounded. A table without new
/// files and nothing to merge gets none.
pub(super) fn state_segments<'a>(
    ctx: &'a SessionContext,
    of: &StateInputs<'a>,
    graph: &IdGraph,
    warnings: &mut Warnings,
) -> Result<Vec<StateSegment>> {
    let mut segments = vec![];
    for table in STATE_TABLES {
        let saved_table = of.saved.and_then(|s| s.table(table));
        let segment = match (of.saved, saved_table) {
            (None, _) => Segment::All,
            (Some(_), None) => Segment::New,
            (Some(_), Some(t)) => plan_segment(t.files()),
        };
        let has_new = of.input.table(table).is_some_and(|t| !t.files().is_empty());
        if matches!(segment, Segment::New) && !has_new {
            continue;
        }
        let (rows_of, replaces) = match (&segment, saved_table) {
            (Segment::Merge(merged), Some(t)) => {
                let rows = ctx.read_table(Arc::new(t.with_files(merged.clone())))?;
                let paths = merged.iter().map(|f| f.meta.location.clone()).collect();
                (
                    Inputs::new(ctx, of.input).with_overlay(table, rows),
                    Replaces::These(paths),
                )
            }
            (Segment::All, _) => (of.all.clone(), Replaces::All),
            _ => (of.only_new.clone(), Replaces::None),
        };
        let df = match table {
            // The graph was resolved from these same rows: its edges are reused, not recomputed.
            ID_GRAPH_UPDATES if matches!(segment, Segment::All) => graph.latest.clone(),
            ID_GRAPH_UPDATES => id_graph::latest(&rows_of, warnings)?,
            EXTERNAL_ID_MAPPING_UPDATES => external_id_mapping::compact(&rows_of, warnings)?,
            _ => profile_traits::compact(&rows_of, warnings)?,
        };
        segments.push(StateSegment {
            table,
            df,
            replaces,
        });
    }
    Ok(segments)
}

/// The core views among `wanted`, recomputed in full from `inputs` and the
/// resolved `graph`, sorted by their keys as published.
pub(super) fn core_views(
    inputs: &Inputs<'_>,
    wanted: &[View],
    graph: &IdGraph,
    warnings: &mut Warnings,
) -> Result<Vec<(View, DataFrame)>> {
    let mut planned = vec![];
    for &view in wanted {
        let df = match view {
            View::IdGraph => graph.df.clone(),
            View::ExternalIdMapping | View::ProfileTraits => {
                views::plan_view(inputs, view, graph, warnings)?
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
    Ok(planned)
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

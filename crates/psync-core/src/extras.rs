//! What a run publishes besides the three core views, planned here and staged
//! by the run after them (committed with them, so a failing run leaves all of
//! it as it was):
//!
//! ```text
//! every Personas space found (personas_<space>/, engage_<space>/)
//!   × the Personas views asked for  ─► <dest>/<space>/<view>/<view>.parquet
//! every `<table>_resolved` asked for ─► <dest>/<table>_resolved/<table>_resolved.parquet
//! `id_graph_history` when asked for ─► <dest>/id_graph_history/id_graph_history.parquet
//! the health report (always)        ─► <dest>/_psync/health/<table>/<table>.parquet
//! ```
//!
//! These are recomputed from every landed file whatever the run mode: an
//! incremental run reads the new files for the core views, but the Personas
//! tables, the event tables and the daily merge counts are read in full (the
//! id graph they join is the incremental run's, which equals a full run's).
//!
//! Only plans: running, staging and reporting them is the run's, so this
//! module knows nothing of it.

use datafusion::prelude::DataFrame;
use psync_lake_io::Lake;

use crate::blame::blame;
use crate::error::Result;
use crate::health::{self, HealthInputs};
use crate::inputs::{Inputs, Warnings};
use crate::views::id_graph::IdGraph;
use crate::views::{self, View, external_id_mapping, id_graph_history, personas, resolved};

/// A file to stage: its name in the staging folder and the display, where it
/// goes under the destination, and its plan.
pub struct Extra {
    /// `<space>.<view>`, the `_resolved` view's name, or `health.<table>`.
    pub name: String,
    /// The published file's path under the destination, one part per folder.
    pub target: Vec<String>,
    /// What the file holds.
    pub df: DataFrame,
}

/// A Personas view of one space, a `_resolved` view or `id_graph_history`,
/// before it is planned.
pub struct ExtraView {
    /// The Personas space (`None` for the others).
    space: Option<String>,
    view: View,
}

/// Every Personas view asked for in every space of `lake`, then every
/// `_resolved` view and `id_graph_history` asked for, in the order the run stages them.
pub fn extra_views(lake: &Lake, views: &[View]) -> Vec<ExtraView> {
    let wanted: Vec<View> = views.iter().copied().filter(|v| v.is_personas()).collect();
    let spaces = lake.spaces();
    if !wanted.is_empty() && spaces.is_empty() {
        tracing::info!("no Personas space (personas_<space>/ or engage_<space>/) under the source");
    }
    let mut out = vec![];
    for space in spaces {
        for &view in &wanted {
            out.push(ExtraView {
                space: Some(space.clone()),
                view,
            });
        }
    }
    for &view in views {
        if view.resolved_table().is_some() || view == View::IdGraphHistory {
            out.push(ExtraView { space: None, view });
        }
    }
    out
}

impl ExtraView {
    /// Plans the view over `inputs` (every landed file) and the run's `graph`
    /// (resolving the id graph's history runs queries).
    pub async fn plan(&self, inputs: &Inputs<'_>, graph: &IdGraph) -> Result<Extra> {
        let view = self.view;
        if view == View::IdGraphHistory {
            let name = view.name();
            return Ok(Extra {
                name: name.to_string(),
                target: vec![name.to_string(), format!("{name}.parquet")],
                df: views::sorted(view, id_graph_history::plan(inputs).await?)?,
            });
        }
        match (&self.space, view.resolved_table()) {
            (Some(space), _) => {
                let file = format!("{view}.parquet");
                Ok(Extra {
                    name: format!("{space}.{view}"),
                    target: vec![space.clone(), view.name().to_string(), file],
                    df: views::sorted(view, personas::plan(inputs, space, view)?)?,
                })
            }
            (None, Some(table)) => {
                let name = view.name();
                Ok(Extra {
                    name: name.to_string(),
                    target: vec![name.to_string(), format!("{name}.parquet")],
                    df: resolved::plan(inputs, table, graph)?,
                })
            }
            (None, None) => unreachable!("extra_views lists Personas and _resolved views only"),
        }
    }
}

/// What the health tables are computed from.
pub struct HealthOf<'a> {
    /// Every landed table, all files (as of the run's instant, for as-of runs).
    pub inputs: &'a Inputs<'a>,
    /// The run's resolved id graph.
    pub graph: &'a IdGraph,
    /// The staged `external_id_mapping` file, when the run publishes that view.
    pub external_id_mapping: Option<String>,
    /// The staged `profile_traits` file, when the run publishes that view.
    pub profile_traits: Option<String>,
    /// The run they are written by.
    pub run_id: &'a str,
}

/// Plans the health tables, in [`health::TABLES`] order.
pub async fn health_tables(h: HealthOf<'_>) -> Result<Vec<Extra>> {
    let ctx = h.inputs.ctx();
    let read = |url: String| ctx.read_parquet(url, Default::default());
    let external_id_mapping = match h.external_id_mapping {
        Some(url) => read(url).await?,
        // Cheap to plan again (one aggregation of the identifiers).
        None => external_id_mapping::plan(h.inputs, h.graph, &mut Warnings::default())?,
    };
    let profile_traits = match h.profile_traits {
        Some(url) => Some(read(url).await?),
        // The trait pivot is the costliest view: not run again for the report.
        None => None,
    };
    let tables = health::compute(HealthInputs {
        inputs: h.inputs,
        graph: h.graph,
        external_id_mapping,
        profile_traits,
        cycles_broken: h.graph.cycles_broken,
        run_id: h.run_id,
    })
    .await;
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return Err(blame(ctx, h.inputs.lake(), e).await),
    };
    Ok(tables
        .into_iter()
        .map(|(table, df)| {
            let file = format!("{table}.parquet");
            let target = [health::DIR[0], health::DIR[1], table, &file];
            Extra {
                name: format!("health.{table}"),
                target: target.map(String::from).to_vec(),
                df,
            }
        })
        .collect())
}

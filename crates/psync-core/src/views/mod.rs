//! The current-state views, one module each:
//!
//! | view | module | key |
//! | --- | --- | --- |
//! | `id_graph` | [`id_graph`] | segment_id |
//! | `external_id_mapping` | [`external_id_mapping`] | external_id_type, external_id_value |
//! | `profile_traits` | [`profile_traits`] | canonical_segment_id |
//!
//! Each is a DataFusion plan over [`Inputs`]; [`plan`] builds the ones asked for
//! (the id graph is resolved first: the other two join it).

pub mod external_id_mapping;
pub mod id_graph;
pub mod profile_traits;

use std::fmt;
use std::str::FromStr;

use datafusion::error::Result;
use datafusion::prelude::{DataFrame, col};

use crate::inputs::{Inputs, Warnings};
use crate::views::id_graph::IdGraph;

/// A view psync-lake publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// SPEC §3.1.
    IdGraph,
    /// SPEC §3.2.
    ExternalIdMapping,
    /// SPEC §3.3.
    ProfileTraits,
}

impl View {
    /// Every view, in publishing order.
    pub const ALL: [View; 3] = [View::IdGraph, View::ExternalIdMapping, View::ProfileTraits];

    /// The view's name, which is also its folder under the destination.
    pub fn name(self) -> &'static str {
        match self {
            View::IdGraph => id_graph::NAME,
            View::ExternalIdMapping => external_id_mapping::NAME,
            View::ProfileTraits => profile_traits::NAME,
        }
    }

    /// The columns that identify a row; output is sorted by them.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            View::IdGraph => &["segment_id"],
            View::ExternalIdMapping => &["external_id_type", "external_id_value"],
            View::ProfileTraits => &["canonical_segment_id"],
        }
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        View::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<_> = View::ALL.iter().map(|v| v.name()).collect();
                format!("unknown view '{s}' (expected one of: {})", names.join(", "))
            })
    }
}

/// The views of one run, planned and ready to execute.
pub struct Planned {
    /// Each requested view with its plan (sorted by its key).
    pub views: Vec<(View, DataFrame)>,
    /// Merge cycles found and broken while resolving the id graph.
    pub cycles_broken: u64,
    /// Pointer-jumping rounds the id graph took.
    pub id_graph_rounds: u32,
}

/// Plans `which` views. Resolving the id graph runs queries (pointer jumping);
/// the returned plans run when written.
pub async fn plan(inputs: &Inputs<'_>, which: &[View], warnings: &mut Warnings) -> Result<Planned> {
    let graph = id_graph::build(inputs, warnings).await?;
    let mut views = vec![];
    for &view in which {
        let df = plan_view(inputs, view, &graph, warnings)?;
        let sort = view
            .key()
            .iter()
            .map(|k| col(*k).sort(true, true))
            .collect();
        views.push((view, df.sort(sort)?));
    }
    Ok(Planned {
        views,
        cycles_broken: graph.cycles_broken,
        id_graph_rounds: graph.rounds,
    })
}

/// Plans one view over an already resolved id graph (unsorted).
pub fn plan_view(
    inputs: &Inputs<'_>,
    view: View,
    graph: &IdGraph,
    warnings: &mut Warnings,
) -> Result<DataFrame> {
    match view {
        View::IdGraph => Ok(graph.df.clone()),
        View::ExternalIdMapping => external_id_mapping::plan(inputs, graph, warnings),
        View::ProfileTraits => profile_traits::plan(inputs, graph, warnings),
    }
}

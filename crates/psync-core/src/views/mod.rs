//! The current-state views, one module each:
//!
//! | view | module | key |
//! | --- | --- | --- |
//! | `id_graph` | [`id_graph`] | segment_id |
//! | `external_id_mapping` | [`external_id_mapping`] | external_id_type, external_id_value |
//! | `profile_traits` | [`profile_traits`] | canonical_segment_id |
//! | `id_graph_history` (off by default) | [`id_graph_history`] | segment_id, valid_from |
//! | `users`, `audience_membership`, `computed_traits` (per Personas space) | [`personas`] | user_id (, audience_key) |
//! | `<table>_resolved` (per event table) | [`resolved`] | (sorted by canonical_segment_id) |
//!
//! Each is a DataFusion plan over [`Inputs`]; [`plan`] builds the core three
//! (the id graph is resolved first: the other two join it). The Personas and
//! `_resolved` views are planned per space / per table by [`crate::extras`].

pub mod external_id_mapping;
pub mod id_graph;
pub mod id_graph_history;
pub mod personas;
pub mod profile_traits;
pub mod resolved;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex, PoisonError};

use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{SortExpr, cast};
use datafusion::prelude::{DataFrame, col, ident, lit};

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
    /// SPEC §3.6: every segment_id's canonical over time (off by default).
    IdGraphHistory,
    /// SPEC §3.4: per Personas space, one row per user_id with its traits.
    Users,
    /// Per Personas space, one row per (user_id, audience_key).
    AudienceMembership,
    /// Per Personas space, one row per user_id, one column per trait_key.
    ComputedTraits,
    /// Every event of a landed event table with the canonical_segment_id of its
    /// segment_id now. Holds the view's name, `<table>_resolved` (interned: see
    /// [`View::resolved`]).
    Resolved(&'static str),
}

/// Suffix of the `_resolved` views' names.
pub const RESOLVED_SUFFIX: &str = "_resolved";

impl View {
    /// The three core views (SPEC §3.1-3.3), in publishing order.
    pub const ALL: [View; 3] = [View::IdGraph, View::ExternalIdMapping, View::ProfileTraits];

    /// What a run publishes unless told otherwise: the core views and the
    /// Personas views of every space (the `_resolved` views are opt-in: they
    /// copy whole event tables).
    pub const DEFAULT: [View; 6] = [
        View::IdGraph,
        View::ExternalIdMapping,
        View::ProfileTraits,
        View::Users,
        View::AudienceMembership,
        View::ComputedTraits,
    ];

    /// The `_resolved` view of event table `table`.
    pub fn resolved(table: &str) -> View {
        View::Resolved(intern(&format!(
            "{}{RESOLVED_SUFFIX}",
            table.to_lowercase()
        )))
    }

    /// Whether [`plan`] plans this view (one of the three core views).
    pub fn is_core(self) -> bool {
        matches!(
            self,
            View::IdGraph | View::ExternalIdMapping | View::ProfileTraits
        )
    }

    /// Whether this view is published once per Personas space.
    pub fn is_personas(self) -> bool {
        matches!(
            self,
            View::Users | View::AudienceMembership | View::ComputedTraits
        )
    }

    /// The event table of a `_resolved` view.
    pub fn resolved_table(self) -> Option<&'static str> {
        match self {
            View::Resolved(name) => name.strip_suffix(RESOLVED_SUFFIX),
            _ => None,
        }
    }

    /// The view's name, which is also its folder under the destination.
    pub fn name(self) -> &'static str {
        match self {
            View::IdGraph => id_graph::NAME,
            View::ExternalIdMapping => external_id_mapping::NAME,
            View::ProfileTraits => profile_traits::NAME,
            View::IdGraphHistory => id_graph_history::NAME,
            View::Users => personas::USERS,
            View::AudienceMembership => personas::AUDIENCE_MEMBERSHIP,
            View::ComputedTraits => personas::COMPUTED_TRAITS,
            View::Resolved(name) => name,
        }
    }

    /// The columns that identify a row; output is sorted by them.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            View::IdGraph => &["segment_id"],
            View::ExternalIdMapping => &["external_id_type", "external_id_value"],
            View::ProfileTraits => &["canonical_segment_id"],
            View::IdGraphHistory => &["segment_id", "valid_from"],
            View::Users | View::ComputedTraits => &["user_id"],
            View::AudienceMembership => &["user_id", "audience_key"],
            // Not unique: the order readers find a person's events by.
            View::Resolved(_) => &["canonical_segment_id"],
        }
    }
}

/// `name` as a `&'static str`: a view is `Copy` and named by a static string,
/// but `_resolved` views are named after landed tables. Each distinct name is
/// leaked once (a few per process: the tables of one lake).
fn intern(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<BTreeSet<&'static str>>> =
        LazyLock::new(|| Mutex::new(BTreeSet::new()));
    // A poisoned set is still a valid set of names.
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for View {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_lowercase();
        if let Some(v) = View::DEFAULT
            .into_iter()
            .chain([View::IdGraphHistory])
            .find(|v| v.name() == s)
        {
            return Ok(v);
        }
        match s.strip_suffix(RESOLVED_SUFFIX) {
            Some(table) if !table.is_empty() => Ok(View::resolved(table)),
            _ => {
                let names: Vec<_> = View::DEFAULT.iter().map(|v| v.name()).collect();
                Err(format!(
                    "unknown view '{s}' (expected one of: {}, {}, or <event table>{RESOLVED_SUFFIX})",
                    names.join(", "),
                    id_graph_history::NAME
                ))
            }
        }
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
    /// The resolved id graph (the `_resolved` views and the health report join it).
    pub graph: IdGraph,
}

/// Plans `which` views. Resolving the id graph runs queries (pointer jumping);
/// the returned plans run when written.
pub async fn plan(inputs: &Inputs<'_>, which: &[View], warnings: &mut Warnings) -> Result<Planned> {
    let graph = id_graph::build(inputs, warnings).await?;
    let mut views = vec![];
    // The other views are planned per space / per table by `crate::extras`.
    for &view in which.iter().filter(|v| v.is_core()) {
        let df = plan_view(inputs, view, &graph, warnings)?;
        views.push((view, sorted(view, df)?));
    }
    Ok(Planned {
        views,
        cycles_broken: graph.cycles_broken,
        id_graph_rounds: graph.rounds,
        graph,
    })
}

/// The order of every published file of `view`: by its key, ascending, NULLs first.
pub fn key_order(view: View) -> Vec<SortExpr> {
    view.key()
        .iter()
        .map(|k| col(*k).sort(true, true))
        .collect()
}

/// `df` sorted by `view`'s key, as every published file is.
pub fn sorted(view: View, df: DataFrame) -> Result<DataFrame> {
    df.sort(key_order(view))
}

/// The rows of a published view (`previous`) in the columns of `like`, by name:
/// a column `previous` lacks (a trait first landed since) is NULL, one whose type
/// changed is cast.
pub fn in_columns_of(previous: DataFrame, like: &DataFrame) -> Result<DataFrame> {
    let have = previous.schema().clone();
    let mut columns = vec![];
    for field in like.schema().fields() {
        let (name, data_type) = (field.name(), field.data_type());
        columns.push(match have.field_with_unqualified_name(name) {
            Ok(f) if f.data_type() == data_type => ident(name),
            Ok(_) => cast(ident(name), data_type.clone()).alias(name),
            Err(_) => lit(ScalarValue::try_from(data_type)?).alias(name),
        });
    }
    previous.select(columns)
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
        View::IdGraphHistory
        | View::Users
        | View::AudienceMembership
        | View::ComputedTraits
        | View::Resolved(_) => Err(datafusion::error::DataFusionError::Internal(format!(
            "{view} is planned by crate::extras, not by plan_view"
        ))),
    }
}

//! `explain`: one person of a lake, and why the views say what they say about it.
//!
//! ```text
//! ID ── type:value ─► external_id_mapping::compact over that identifier's rows ─► its segment_id
//!    └─ segment_id
//! segment_id ─► its id graph component: rounds of id_graph_updates rows whose
//!               segment_id or canonical_segment_id is in the frontier (a literal
//!               IN list, pushed into the Parquet scans: row groups whose
//!               statistics rule it out are skipped, filters run in the reader),
//!               the rows kept in memory
//!   ─► id_graph::build over those rows only ─► canonical C, members of C
//!   ─► merge_tree:     the members' latest updates (points_to, triggering event, notes)
//!   ─► identifiers:    external_id_mapping (compact, finish) over the identifiers seen on members
//!   ─► trait_sources:  last_seen_state over the members' trait rows, and the row each value came from
//! ```
//!
//! A chain only ever runs along update rows, so the component holds every
//! segment_id whose canonical the asked one shares, and the id graph of the
//! component is the id graph of the lake restricted to it: the view code runs
//! unchanged on a few rows instead of the whole history.

mod functions;
mod report;
mod sources;
mod tree;

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result as DfResult;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use psync_lake_io::Lake;

use crate::error::Result;
use crate::inputs::{
    EXTERNAL_ID_MAPPING_UPDATES, ID_GRAPH_UPDATES, Inputs, ORDER_NEEDED, PROFILE_TRAITS_UPDATES,
    Warnings, id, opt_id,
};
use crate::views::external_id_mapping;
use crate::views::id_graph::{self, IdGraph};

pub use functions::register;
pub use report::{Explained, Explanation, explain, to_json};
pub use sources::trait_sources_schema;
pub use tree::{MERGE_TREE_NOTES, identifiers_schema, merge_tree_schema};

/// The person an ID names.
#[derive(Debug, Clone)]
pub struct Person {
    /// The ID as asked.
    pub asked: String,
    /// The identifier (type, value) the ID named, when it named one.
    pub identifier: Option<(String, String)>,
    /// The segment_id the ID names (an identifier's: that of its latest update).
    pub segment_id: String,
    /// The canonical_segment_id it resolves to now.
    pub canonical_segment_id: String,
    /// Every segment_id that resolves to it, itself included, sorted.
    pub members: Vec<String>,
    /// Merge cycles broken in its component.
    pub cycles_broken: u64,
}

/// A person found, with the id graph rows of its component.
pub struct Found {
    /// Whom the ID names.
    pub person: Person,
    /// The id graph restricted to the person's component (`df` cached).
    pub graph: IdGraph,
    /// The id_graph_updates rows of the component's segment_ids (in memory):
    /// `segment_id`, `canonical_segment_id`, `triggering_event_type`,
    /// `triggering_event_id`, `seq`, `timestamp`, `uuid_ts`.
    pub updates: DataFrame,
}

/// Explains people of one lake: finds them, then plans their merge tree,
/// identifiers and trait sources as small DataFrames.
#[derive(Clone)]
pub struct Explainer<'a> {
    inputs: Inputs<'a>,
}

/// A context for explaining: `ctx`'s settings, with filters evaluated inside
/// the Parquet reader (other columns are decoded only for the rows that pass,
/// and row groups whose statistics or bloom filters rule a filter out are skipped).
pub fn explain_context(ctx: &SessionContext) -> SessionContext {
    let mut state = ctx.state();
    let parquet = &mut state.config_mut().options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    SessionContext::new_with_state(state)
}

/// `column IN (values)`; false for no values.
pub(crate) fn in_list(column: &str, values: &[String]) -> Expr {
    if values.is_empty() {
        return lit(false);
    }
    col(column).in_list(values.iter().map(|v| lit(v.as_str())).collect(), false)
}

/// The non-NULL values of string column `column` of `df`, distinct and sorted.
pub(crate) async fn strings(df: DataFrame, column: &str) -> DfResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for batch in df.select_columns(&[column])?.collect().await? {
        let utf8 = cast(batch.column(0), &DataType::Utf8)?;
        let values = utf8.as_string::<i32>();
        out.extend(values.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// A one-column (`segment_id`) frame of `values`.
pub(crate) fn frame_of(ctx: &SessionContext, values: &[String]) -> DfResult<DataFrame> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "segment_id",
        DataType::Utf8,
        false,
    )]));
    let array = StringArray::from_iter_values(values.iter());
    ctx.read_batch(RecordBatch::try_new(schema, vec![Arc::new(array)])?)
}

impl<'a> Explainer<'a> {
    /// An explainer of `lake`, planning in `ctx` (see [`explain_context`]).
    pub fn new(ctx: &'a SessionContext, lake: &'a Lake) -> Self {
        Explainer {
            inputs: Inputs::new(ctx, lake),
        }
    }

    /// The inputs it reads.
    pub fn inputs(&self) -> &Inputs<'a> {
        &self.inputs
    }

    /// Finds whom `id` names: an identifier written `type:value` (when the lake
    /// has it), else a segment_id. `None` when the lake knows neither.
    pub async fn find(&self, id: &str) -> Result<Option<Found>> {
        let id = id.trim();
        let mut identifier = None;
        let mut segment_id = None;
        if let Some((kind, value)) = id.split_once(':')
            && let Some(sid) = self.identifier_owner(kind, value).await?
        {
            identifier = Some((kind.to_string(), value.to_string()));
            segment_id = Some(sid);
        }
        let segment_id = match segment_id {
            Some(s) => s,
            None => id.to_string(),
        };
        let updates = self.component(&segment_id).await?;
        let in_graph = updates.clone().count().await? > 0;
        if !in_graph && identifier.is_none() && !self.seen(&segment_id).await? {
            return Ok(None);
        }
        // The view code over the component's rows, held in memory, instead of the lake's.
        let no_files = self.inputs.lake().with_files(|table, files| {
            if table == ID_GRAPH_UPDATES {
                vec![]
            } else {
                files.to_vec()
            }
        });
        let restricted = Inputs::new(self.inputs.ctx(), &no_files)
            .with_overlay(ID_GRAPH_UPDATES, updates.clone());
        let graph = id_graph::build(&restricted, &mut Warnings::default()).await?;
        let canonical = strings(
            graph
                .df
                .clone()
                .filter(col("segment_id").eq(lit(segment_id.as_str())))?,
            "canonical_segment_id",
        )
        .await?
        .into_iter()
        .next()
        .unwrap_or_else(|| segment_id.clone());
        let mut members = strings(
            graph
                .df
                .clone()
                .filter(col("canonical_segment_id").eq(lit(canonical.as_str())))?,
            "segment_id",
        )
        .await?;
        members.insert(canonical.clone());
        Ok(Some(Found {
            person: Person {
                asked: id.to_string(),
                identifier,
                segment_id,
                canonical_segment_id: canonical,
                members: members.into_iter().collect(),
                cycles_broken: graph.cycles_broken,
            },
            graph,
            updates,
        }))
    }

    /// The segment_id of the latest update of identifier (`kind`, `value`), as
    /// the external_id_mapping view finds it.
    async fn identifier_owner(&self, kind: &str, value: &str) -> Result<Option<String>> {
        let only = self.inputs.clone().filter(
            EXTERNAL_ID_MAPPING_UPDATES,
            col("external_id_value")
                .eq(lit(value))
                .and(col("external_id_type").eq(lit(kind))),
        );
        let latest = external_id_mapping::compact(&only, &mut Warnings::default())?;
        Ok(strings(latest, "segment_id").await?.into_iter().next())
    }

    /// Every segment_id joined to `segment_id` by id_graph_updates rows (either
    /// direction, any time), itself included: rounds over the frontier until no
    /// new one turns up: those rows, in memory (see [`Found::updates`]).
    async fn component(&self, segment_id: &str) -> Result<DataFrame> {
        let mut needed = vec![
            id("segment_id"),
            id("canonical_segment_id"),
            opt_id("triggering_event_type"),
            opt_id("triggering_event_id"),
        ];
        needed.extend(ORDER_NEEDED);
        let mut known = BTreeSet::from([segment_id.to_string()]);
        let mut frontier = vec![segment_id.to_string()];
        let mut rows: Option<DataFrame> = None;
        while !frontier.is_empty() {
            let edges = self
                .inputs
                .clone()
                .filter(
                    ID_GRAPH_UPDATES,
                    in_list("segment_id", &frontier).or(in_list("canonical_segment_id", &frontier)),
                )
                .select(ID_GRAPH_UPDATES, &needed, &mut Warnings::default())?
                .filter(
                    col("segment_id")
                        .is_not_null()
                        .and(col("canonical_segment_id").is_not_null()),
                )?
                .cache()
                .await?;
            let mut found = strings(edges.clone(), "segment_id").await?;
            found.extend(strings(edges.clone(), "canonical_segment_id").await?);
            rows = Some(match rows {
                Some(r) => r.union(edges)?,
                None => edges,
            });
            frontier = found.difference(&known).cloned().collect();
            known.extend(frontier.iter().cloned());
        }
        let rows = match rows {
            // A row reached from both of its ends is read twice.
            Some(r) => r.distinct()?.cache().await?,
            None => {
                return Err(datafusion::error::DataFusionError::Internal(
                    "the component search ran no round".into(),
                )
                .into());
            }
        };
        Ok(rows)
    }

    /// Whether `segment_id` has a row in external_id_mapping_updates or
    /// profile_traits_updates (a profile the id graph does not know).
    async fn seen(&self, segment_id: &str) -> Result<bool> {
        for table in [PROFILE_TRAITS_UPDATES, EXTERNAL_ID_MAPPING_UPDATES] {
            if self.inputs.lake().table(table).is_none() {
                continue;
            }
            let rows = self
                .inputs
                .clone()
                .filter(table, col("segment_id").eq(lit(segment_id)))
                .select(table, &[id("segment_id")], &mut Warnings::default())?
                .limit(0, Some(1))?
                .count()
                .await?;
            if rows > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The message for an ID the lake does not know.
pub fn unknown(id: &str, lake: &Lake) -> String {
    format!(
        "no profile or identifier '{id}' in {} (an ID is a segment_id or type:value, e.g. email:jane@example.com)",
        lake.location().display
    )
}

/// The values of column `name` of collected `batches` as display text
/// (timestamps in RFC 3339), NULL as `None`; none when no batch has the column.
pub fn column_texts(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let opts = FormatOptions::default();
    let mut out = vec![];
    for b in batches {
        let Some(c) = b.column_by_name(name) else {
            continue;
        };
        match ArrayFormatter::try_new(c.as_ref(), &opts) {
            Ok(f) => {
                out.extend((0..c.len()).map(|i| c.is_valid(i).then(|| f.value(i).to_string())))
            }
            Err(_) => out.extend((0..c.len()).map(|_| None)),
        }
    }
    out
}

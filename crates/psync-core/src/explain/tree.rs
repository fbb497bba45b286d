//! A person's merge tree and identifiers.
//!
//! ```text
//! merge_tree:  members ⟕ latest update of each (id_graph's own choice of latest,
//!              carrying the triggering event) ─► parent = where it points (none for the root)
//!              note: no id_graph_updates row | cycle broken here | recursive entry missing
//! identifiers: values seen on members ─► every row of those values
//!              ─► external_id_mapping::compact + finish (the view) ─► canonical = the person's
//! ```

use std::ops::Not;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{JoinType, cast, when};
use datafusion::prelude::{DataFrame, col, get_field, lit, named_struct};
use psync_lake_io::schema::time_type;

use super::{Explainer, Found, frame_of, in_list, strings};
use crate::error::Result;
use crate::inputs::{EXTERNAL_ID_MAPPING_UPDATES, Warnings, id, order_key};
use crate::views::external_id_mapping;

/// The notes of `merge_tree` rows: a profile only other tables know, the node
/// where a merge cycle was broken (its latest update, the cycle's oldest edge, is
/// ignored), and a segment_id whose latest update points at a profile merged
/// since (Segment's recursive entry is late or lost; the chain is followed).
pub const MERGE_TREE_NOTES: [&str; 3] = [
    "no id_graph_updates row",
    "cycle broken here",
    "recursive entry missing",
];

/// The columns of `merge_tree('ID')`.
pub fn merge_tree_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        s("segment_id"),
        s("canonical_segment_id"),
        s("parent"),
        s("points_to"),
        Field::new("timestamp", time_type(), true),
        Field::new("seq", DataType::Int64, true),
        s("triggering_event_type"),
        s("triggering_event_id"),
        s("note"),
    ]))
}

/// The columns of `identifiers('ID')`.
pub fn identifiers_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        s("external_id_type"),
        s("external_id_value"),
        Field::new("first_seen", time_type(), true),
        s("segment_id"),
        Field::new("seq", DataType::Int64, true),
        s("external_id_hash"),
    ]))
}

impl Explainer<'_> {
    /// The person's merge tree: one row per member (see [`merge_tree_schema`]),
    /// with its latest id_graph_updates row: where it points (`points_to`, as
    /// landed; `parent` in the tree, NULL for the root), when, the triggering
    /// event, and a note (see [`MERGE_TREE_NOTES`]). Oldest first.
    pub fn merge_tree(&self, f: &Found) -> Result<DataFrame> {
        // The component's rows are in memory already (see `Explainer::find`).
        let p = &f.person;
        let root = p.canonical_segment_id.as_str();
        let updates = f
            .updates
            .clone()
            .filter(in_list("segment_id", &p.members))?;
        // The struct starts as id_graph's does, so a full tie of the order key
        // picks the same target the id graph followed.
        let mut args = vec![named_struct(vec![
            lit("target"),
            col("canonical_segment_id"),
            lit("timestamp"),
            col("timestamp"),
            lit("seq"),
            col("seq"),
            lit("uuid_ts"),
            col("uuid_ts"),
            lit("event_type"),
            cast(col("triggering_event_type"), DataType::Utf8),
            lit("event_id"),
            cast(col("triggering_event_id"), DataType::Utf8),
        ])];
        args.extend(order_key());
        let latest = updates
            .aggregate(
                vec![col("segment_id")],
                vec![psync_functions::latest().call(args).alias("l")],
            )?
            .select(vec![
                col("segment_id").alias("l_sid"),
                get_field(col("l"), "target").alias("points_to"),
                get_field(col("l"), "timestamp").alias("timestamp"),
                get_field(col("l"), "seq").alias("seq"),
                get_field(col("l"), "event_type").alias("triggering_event_type"),
                get_field(col("l"), "event_id").alias("triggering_event_id"),
            ])?;
        let is_root = col("segment_id").eq(lit(root));
        let note = when(col("l_sid").is_null(), lit(MERGE_TREE_NOTES[0]))
            .when(
                is_root
                    .clone()
                    .and(col("points_to").not_eq(col("segment_id"))),
                lit(MERGE_TREE_NOTES[1]),
            )
            .when(
                is_root
                    .clone()
                    .not()
                    .and(col("points_to").not_eq(lit(root))),
                lit(MERGE_TREE_NOTES[2]),
            )
            .end()?;
        let df = frame_of(self.inputs.ctx(), &p.members)?
            .join(latest, JoinType::Left, &["segment_id"], &["l_sid"], None)?
            .select(vec![
                col("segment_id"),
                lit(root).alias("canonical_segment_id"),
                when(is_root.not(), col("points_to")).end()?.alias("parent"),
                col("points_to"),
                col("timestamp"),
                col("seq"),
                col("triggering_event_type"),
                col("triggering_event_id"),
                note.alias("note"),
            ])?
            .sort(vec![
                col("timestamp").sort(true, true),
                col("segment_id").sort(true, true),
            ])?;
        Ok(df)
    }

    /// The person's identifiers: every row of `external_id_mapping` whose
    /// canonical is the person, with the segment_id and time it was first seen
    /// on (its latest external_id_mapping_updates row), oldest first.
    pub async fn identifiers(&self, f: &Found) -> Result<DataFrame> {
        let p = &f.person;
        let ext = EXTERNAL_ID_MAPPING_UPDATES;
        // An identifier whose latest row is on a member has a row on a member:
        // its value is among these, and its rows are all the view needs.
        let seen = self
            .inputs
            .clone()
            .filter(ext, in_list("segment_id", &p.members))
            .select(
                ext,
                &[id("segment_id"), id("external_id_value")],
                &mut Warnings::default(),
            )?;
        let values: Vec<String> = strings(seen, "external_id_value")
            .await?
            .into_iter()
            .collect();
        let only = self
            .inputs
            .clone()
            .filter(ext, in_list("external_id_value", &values));
        let latest = external_id_mapping::compact(&only, &mut Warnings::default())?
            .cache()
            .await?;
        let view = external_id_mapping::finish(latest.clone(), &f.graph)?
            .filter(col("canonical_segment_id").eq(lit(p.canonical_segment_id.as_str())))?;
        let seen_on = latest.select(vec![
            col("external_id_type").alias("s_type"),
            col("external_id_value").alias("s_value"),
            col("segment_id"),
            col("seq"),
        ])?;
        Ok(view
            .join(
                seen_on,
                JoinType::Inner,
                &["external_id_type", "external_id_value"],
                &["s_type", "s_value"],
                None,
            )?
            .select(vec![
                col("external_id_type"),
                col("external_id_value"),
                col("timestamp").alias("first_seen"),
                col("segment_id"),
                col("seq"),
                col("external_id_hash"),
            ])?
            .sort(vec![
                col("first_seen").sort(true, true),
                col("external_id_type").sort(true, true),
                col("external_id_value").sort(true, true),
            ])?)
    }
}

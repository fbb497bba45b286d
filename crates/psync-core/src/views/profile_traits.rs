//! `profile_traits` (SPEC §3.3): one row per profile, the last-seen value of every trait.
//!
//! ```text
//! profile_traits_updates ⋈ id_graph ─► owner = canonical of the row's segment_id
//!   ─► repartition by owner ─► last_seen_struct(all traits, seq, timestamp, uuid_ts)
//!      (one pass, one order-key comparison per row, for every trait at once)
//! profiles = id_graph ids ∪ their canonicals ∪ profile_traits_updates ids
//!   canonical profile: its traits, merged_to NULL
//!   merged-away profile: NULL traits, merged_to = its canonical
//! ```

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{JoinType, when};
use datafusion::prelude::{DataFrame, coalesce, col, get_field, ident, lit, named_struct};

use crate::inputs::{Inputs, ORDER_NEEDED, PROFILE_TRAITS_UPDATES, Warnings, id, order_key};
use crate::views::id_graph::IdGraph;

/// The view's name and folder.
pub const NAME: &str = "profile_traits";

/// Columns of `profile_traits_updates` that are never traits (SPEC §2), besides
/// `context_*` and `_*`.
pub const NOT_TRAITS: &[&str] = &[
    "segment_id",
    "canonical_segment_id",
    "merged_to",
    "id",
    "user_id",
    "anonymous_id",
    "seq",
    "timestamp",
    "uuid_ts",
    "received_at",
    "sent_at",
    "original_timestamp",
    "event_source_id",
];

/// Whether a (lower-case) column of `profile_traits_updates` is a trait.
pub fn is_trait(name: &str) -> bool {
    !NOT_TRAITS.contains(&name) && !name.starts_with("context_") && !name.starts_with('_')
}

/// The trait columns of the landed table, in landed order, with their types.
pub fn traits_of(inputs: &Inputs<'_>) -> Vec<(String, DataType)> {
    inputs
        .lake()
        .schema_of(PROFILE_TRAITS_UPDATES)
        .map(|s| {
            s.fields()
                .iter()
                .filter(|f| is_trait(f.name()))
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Plans the view: `canonical_segment_id`, one column per trait, `merged_to`.
pub fn plan(inputs: &Inputs<'_>, id_graph: &IdGraph, warnings: &mut Warnings) -> Result<DataFrame> {
    let traits = traits_of(inputs);
    let mut needed = vec![id("segment_id")];
    needed.extend(ORDER_NEEDED);
    inputs.warn_nulls(PROFILE_TRAITS_UPDATES, "segment_id", warnings);
    let trait_names: Vec<String> = traits.iter().map(|(t, _)| t.clone()).collect();
    let updates = inputs
        .select_with(PROFILE_TRAITS_UPDATES, &needed, &trait_names, warnings)?
        .filter(col("segment_id").is_not_null())?;

    let graph = |p: &str| {
        id_graph.df.clone().select(vec![
            col("segment_id").alias(format!("{p}_sid")),
            col("canonical_segment_id").alias(format!("{p}_canonical")),
        ])
    };
    // Profiles the id graph knows: its segment_ids and the canonicals they point at.
    let known = id_graph
        .df
        .clone()
        .select(vec![col("segment_id").alias("sid")])?
        .union(
            id_graph
                .df
                .clone()
                .select(vec![col("canonical_segment_id").alias("sid")])?,
        )?
        .distinct()?
        .join(graph("p")?, JoinType::Left, &["sid"], &["p_sid"], None)?
        .select(vec![
            col("sid"),
            when(col("p_canonical").not_eq(col("sid")), col("p_canonical"))
                .end()?
                .alias("merged_to"),
        ])?;

    // Every trait row goes to its owner: the canonical of its segment_id, or the
    // segment_id itself when the id graph does not know it. The one aggregation
    // also yields the profiles that only profile_traits_updates knows (one scan).
    let mut resolved_cols =
        vec![coalesce(vec![col("u_canonical"), col("segment_id")]).alias("owner")];
    resolved_cols.extend(order_key());
    resolved_cols.extend(traits.iter().map(|(t, _)| ident(t)));
    let aggregates = if traits.is_empty() {
        vec![]
    } else {
        let mut struct_args = Vec::with_capacity(traits.len() * 2);
        for (t, _) in &traits {
            struct_args.push(lit(t.as_str()));
            struct_args.push(ident(t));
        }
        let mut args = vec![named_struct(struct_args)];
        args.extend(order_key());
        // One pass over all traits; SinglePhaseWideAggregates runs it without a partial phase.
        vec![psync_functions::last_seen_struct().call(args).alias("t")]
    };
    let owned = updates
        .join(
            graph("u")?,
            JoinType::Left,
            &["segment_id"],
            &["u_sid"],
            None,
        )?
        .select(resolved_cols)?
        .aggregate(vec![col("owner")], aggregates)?;

    let mut out = vec![coalesce(vec![col("sid"), col("owner")]).alias("canonical_segment_id")];
    out.extend(
        traits
            .iter()
            .map(|(t, _)| get_field(col("t"), t.as_str()).alias(t)),
    );
    out.push(col("merged_to"));
    known
        .join(owned, JoinType::Full, &["sid"], &["owner"], None)?
        .select(out)
}

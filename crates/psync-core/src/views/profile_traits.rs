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

use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{JoinType, cast, when};
use datafusion::prelude::{DataFrame, Expr, coalesce, col, get_field, ident, lit, named_struct};

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

/// The trait updates a view reads: `segment_id`, the order key, every trait.
fn updates(
    inputs: &Inputs<'_>,
    traits: &[(String, DataType)],
    warnings: &mut Warnings,
) -> Result<DataFrame> {
    let mut needed = vec![id("segment_id")];
    needed.extend(ORDER_NEEDED);
    inputs.warn_nulls(PROFILE_TRAITS_UPDATES, "segment_id", warnings);
    let trait_names: Vec<String> = traits.iter().map(|(t, _)| t.clone()).collect();
    inputs
        .select_with(PROFILE_TRAITS_UPDATES, &needed, &trait_names, warnings)?
        .filter(col("segment_id").is_not_null())
}

/// `named_struct('t1', t1, ...)` over the trait columns.
fn traits_struct(traits: &[(String, DataType)]) -> Expr {
    let mut args = Vec::with_capacity(traits.len() * 2);
    for (t, _) in traits {
        args.push(lit(t.as_str()));
        args.push(ident(t));
    }
    named_struct(args)
}

/// `id_graph` as `<p>_sid → <p>_canonical`.
fn graph(id_graph: &IdGraph, p: &str) -> Result<DataFrame> {
    id_graph.df.clone().select(vec![
        col("segment_id").alias(format!("{p}_sid")),
        col("canonical_segment_id").alias(format!("{p}_canonical")),
    ])
}

/// Plans the view: `canonical_segment_id`, one column per trait, `merged_to`.
pub fn plan(inputs: &Inputs<'_>, id_graph: &IdGraph, warnings: &mut Warnings) -> Result<DataFrame> {
    let traits = traits_of(inputs);
    let updates = updates(inputs, &traits, warnings)?;
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
        let mut args = vec![traits_struct(&traits)];
        args.extend(order_key());
        // One pass over all traits; SinglePhaseWideAggregates runs it without a partial phase.
        vec![psync_functions::last_seen_struct().call(args).alias("t")]
    };
    let owned = updates
        .join(
            graph(id_graph, "u")?,
            JoinType::Left,
            &["segment_id"],
            &["u_sid"],
            None,
        )?
        .select(resolved_cols)?
        .aggregate(vec![col("owner")], aggregates)?;
    assemble(id_graph, owned, &traits)
}

/// The per-segment_id state of every trait (an incremental run's saved state):
/// `segment_id`, then the fields of `last_seen_state` flattened (each trait's
/// value, then `_k0_<trait>`, `_k1_<trait>`, `_k2_<trait>`: the order key it came
/// with). `previous` is the state saved by the last run, merged in.
pub fn states(
    inputs: &Inputs<'_>,
    previous: Option<DataFrame>,
    warnings: &mut Warnings,
) -> Result<DataFrame> {
    let traits = traits_of(inputs);
    let updates = updates(inputs, &traits, warnings)?;
    if traits.is_empty() {
        let sids = updates.select(vec![col("segment_id")])?;
        let all = match previous {
            Some(p) => sids.union(p.select(vec![col("segment_id")])?)?,
            None => sids,
        };
        return all.distinct();
    }
    let mut args = vec![traits_struct(&traits)];
    args.extend(order_key());
    let fresh = updates.aggregate(
        vec![col("segment_id")],
        vec![psync_functions::last_seen_state().call(args).alias("s")],
    )?;
    let merged = match previous {
        None => fresh,
        Some(p) => {
            let s = state_struct(&p, &traits)?.alias("s");
            fresh
                .union(p.select(vec![col("segment_id"), s])?)?
                .aggregate(
                    vec![col("segment_id")],
                    vec![
                        psync_functions::last_seen_merge()
                            .call(vec![col("s")])
                            .alias("s"),
                    ],
                )?
        }
    };
    let mut flat = vec![col("segment_id")];
    flat.extend(
        state_fields(&traits)
            .iter()
            .map(|f| get_field(col("s"), f.name().as_str()).alias(f.name())),
    );
    merged.select(flat)
}

/// The view from per-segment_id states ([`states`]' rows) and the id graph.
pub fn plan_from_states(
    inputs: &Inputs<'_>,
    states: DataFrame,
    id_graph: &IdGraph,
) -> Result<DataFrame> {
    let traits = traits_of(inputs);
    let aggregates = if traits.is_empty() {
        vec![]
    } else {
        vec![
            psync_functions::last_seen_merge()
                .call(vec![col("s")])
                .alias("t"),
        ]
    };
    let owned = states
        .clone()
        .select(vec![col("segment_id"), state_struct(&states, &traits)?.alias("s")])?
        .join(
            graph(id_graph, "u")?,
            JoinType::Left,
            &["segment_id"],
            &["u_sid"],
            None,
        )?
        .select(vec![
            coalesce(vec![col("u_canonical"), col("segment_id")]).alias("owner"),
            col("s"),
        ])?
        .aggregate(vec![col("owner")], aggregates)?;
    assemble(id_graph, owned, &traits)
}

/// The state struct's fields for `traits` with three order-key columns.
fn state_fields(traits: &[(String, DataType)]) -> Fields {
    let values: Fields = traits
        .iter()
        .map(|(t, dt)| Field::new(t, dt.clone(), true))
        .collect();
    psync_functions::state_struct_fields(&values, ORDER_NEEDED.len())
}

/// The state struct of `traits` from flat state columns: a column the saved
/// state lacks (a trait first landed since) is NULL, one of another type is cast.
fn state_struct(flat: &DataFrame, traits: &[(String, DataType)]) -> Result<Expr> {
    let have = flat.schema();
    let mut args = vec![];
    for f in state_fields(traits).iter() {
        args.push(lit(f.name().as_str()));
        args.push(if have.has_column_with_unqualified_name(f.name()) {
            cast(ident(f.name()), f.data_type().clone())
        } else {
            lit(ScalarValue::try_from(f.data_type())?)
        });
    }
    Ok(named_struct(args))
}

/// Every profile with its traits (`owned`: `owner`, struct `t`) or `merged_to`.
fn assemble(
    id_graph: &IdGraph,
    owned: DataFrame,
    traits: &[(String, DataType)],
) -> Result<DataFrame> {
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
        .join(graph(id_graph, "p")?, JoinType::Left, &["sid"], &["p_sid"], None)?
        .select(vec![
            col("sid"),
            when(col("p_canonical").not_eq(col("sid")), col("p_canonical"))
                .end()?
                .alias("merged_to"),
        ])?;
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

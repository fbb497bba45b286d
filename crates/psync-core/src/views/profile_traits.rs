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
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::functions_nested::expr_fn::{array_distinct, cardinality, make_array};
use datafusion::logical_expr::{JoinType, Operator, binary_expr, cast, when};
use datafusion::prelude::{DataFrame, Expr, coalesce, col, get_field, ident, lit, named_struct};

use crate::inputs::{Inputs, ORDER_NEEDED, PROFILE_TRAITS_UPDATES, Warnings, id, order_key};
use crate::views::id_graph::IdGraph;
use crate::views::in_columns_of;

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
    inputs.columns_where(PROFILE_TRAITS_UPDATES, is_trait)
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
pub(crate) fn traits_struct(traits: &[(String, DataType)]) -> Expr {
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
    // The graph is the build side (see `session::views_context`).
    let owned = graph(id_graph, "u")?
        .join(updates, JoinType::Right, &["u_sid"], &["segment_id"], None)?
        .select(resolved_cols)?
        .aggregate(vec![col("owner")], aggregates)?;
    assemble(id_graph, owned, &traits)
}

/// The trait rows an incremental run saves: per segment_id, one
/// `profile_traits_updates` row (`segment_id`, `seq`, `timestamp`, `uuid_ts`,
/// every trait) for each distinct order key among its traits' winners, carrying
/// the traits that won with that key. For every trait and profile the winner over
/// these rows is the winner over the whole history, so [`plan`] over them (plus
/// any newer rows) is [`plan`] over everything.
///
/// ```text
/// per segment_id: last_seen_state(all traits) ─► each trait's value and winning key
///   ─► unnest the distinct winning keys ─► one row per key, a trait set where it won with it
/// ```
pub fn compact(inputs: &Inputs<'_>, warnings: &mut Warnings) -> Result<DataFrame> {
    let traits = traits_of(inputs);
    let updates = updates(inputs, &traits, warnings)?;
    let null_key = |c: &str| {
        Ok::<_, datafusion::error::DataFusionError>(
            lit(ScalarValue::try_from(&order_type(c))?).alias(c),
        )
    };
    if traits.is_empty() {
        // Only the profiles themselves.
        return updates
            .select(vec![col("segment_id")])?
            .distinct()?
            .select(vec![
                col("segment_id"),
                null_key("seq")?,
                null_key("timestamp")?,
                null_key("uuid_ts")?,
            ]);
    }
    let mut args = vec![traits_struct(&traits)];
    args.extend(order_key());
    let key_field = |t: &str, j: usize| get_field(col("s"), psync_functions::state_key_name(t, j));
    let winning_key = |t: &str| {
        named_struct(vec![
            lit("seq"),
            key_field(t, 0),
            lit("timestamp"),
            key_field(t, 1),
            lit("uuid_ts"),
            key_field(t, 2),
        ])
    };
    let keys = array_distinct(make_array(
        traits.iter().map(|(t, _)| winning_key(t)).collect(),
    ));
    let rows = updates
        .aggregate(
            vec![col("segment_id")],
            vec![psync_functions::last_seen_state().call(args).alias("s")],
        )?
        .select(vec![
            col("segment_id"),
            col("s"),
            keys.clone().alias("k"),
            cardinality(keys).alias("keys"),
        ])?
        .unnest_columns(&["k"])?;
    let mut out = vec![
        col("segment_id"),
        cast(get_field(col("k"), "seq"), order_type("seq")).alias("seq"),
        cast(get_field(col("k"), "timestamp"), order_type("timestamp")).alias("timestamp"),
        cast(get_field(col("k"), "uuid_ts"), order_type("uuid_ts")).alias("uuid_ts"),
    ];
    let same = |a: Expr, b: Expr| binary_expr(a, Operator::IsNotDistinctFrom, b);
    let mut any_value: Option<Expr> = None;
    for (t, _) in &traits {
        let won_here = same(key_field(t, 0), get_field(col("k"), "seq"))
            .and(same(key_field(t, 1), get_field(col("k"), "timestamp")))
            .and(same(key_field(t, 2), get_field(col("k"), "uuid_ts")));
        let value = get_field(col("s"), t.as_str());
        out.push(when(won_here.clone(), value.clone()).end()?.alias(t));
        let has = value.is_not_null().and(won_here);
        any_value = Some(match any_value {
            None => has,
            Some(e) => e.or(has),
        });
    }
    // A row whose traits are all NULL is needed only to keep a profile that has no value at all.
    let keep = col("keys").eq(lit(1u64)).or(any_value.unwrap_or(lit(true)));
    rows.filter(keep)?.select(out)
}

/// The view after a delta: `previous` (the published view) with the rows of
/// every profile the delta may have changed recomputed by [`plan`] from `all`
/// (saved state plus delta), over the patched `graph`. Unsorted.
///
/// ```text
/// seeds = affected ∪ ends (id_graph::patch) ∪ segment_ids with a trait row in the delta
/// P     = seeds ∪ their canonicals now            (profiles whose row may change)
/// members = every segment_id whose canonical is in P, and P
/// rows of P = plan(trait rows of members, graph of members) restricted to P
/// ```
/// A profile outside P keeps its canonical, its members and their trait rows,
/// hence its row.
pub async fn patch(
    all: &Inputs<'_>,
    new: &Inputs<'_>,
    previous: DataFrame,
    graph: &IdGraph,
    affected: &DataFrame,
    ends: &DataFrame,
    warnings: &mut Warnings,
) -> Result<DataFrame> {
    let landed = new
        .select(PROFILE_TRAITS_UPDATES, &[id("segment_id")], warnings)?
        .filter(col("segment_id").is_not_null())?
        .select(vec![col("segment_id").alias("sid")])?;
    let seeds = affected
        .clone()
        .union(ends.clone())?
        .union(landed)?
        .distinct()?
        .cache()
        .await?;
    let canonicals = seeds
        .clone()
        .join(
            graph.df.clone(),
            JoinType::Inner,
            &["sid"],
            &["segment_id"],
            None,
        )?
        .select(vec![col("canonical_segment_id").alias("sid")])?;
    let profiles = seeds.union(canonicals)?.distinct()?.cache().await?;
    let members = profiles
        .clone()
        .join(
            graph.df.clone(),
            JoinType::RightSemi,
            &["sid"],
            &["canonical_segment_id"],
            None,
        )?
        .select(vec![col("segment_id").alias("sid")])?
        .union(profiles.clone())?
        .distinct()?
        .cache()
        .await?;
    let sub_graph = graph.restricted_to(members.clone()).await?;
    let recomputed = profiles.clone().join(
        plan(
            &all.clone()
                .only(PROFILE_TRAITS_UPDATES, members, &["segment_id"]),
            &sub_graph,
            &mut Warnings::default(),
        )?,
        JoinType::RightSemi,
        &["sid"],
        &["canonical_segment_id"],
        None,
    )?;
    let kept = profiles.join(
        previous,
        JoinType::RightAnti,
        &["sid"],
        &["canonical_segment_id"],
        None,
    )?;
    // A trait first landed in the delta is NULL in every row it did not touch.
    in_columns_of(kept, &recomputed)?.union(recomputed)
}

/// The type an order-key column is read as.
fn order_type(column: &str) -> DataType {
    match column {
        "seq" => DataType::Int64,
        _ => psync_lake_io::schema::time_type(),
    }
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
        .join(
            graph(id_graph, "p")?,
            JoinType::Left,
            &["sid"],
            &["p_sid"],
            None,
        )?
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

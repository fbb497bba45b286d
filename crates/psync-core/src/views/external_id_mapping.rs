//! `external_id_mapping` (SPEC §3.2): every identifier and the person it belongs to now.
//!
//! ```text
//! external_id_mapping_updates ─► latest update per (type, value)     [compact: an incremental run's state]
//!   ─► its segment_id ⋈ id_graph ─► canonical_segment_id (or the segment_id itself)
//!   hash: as landed, else sha1_hex(type || value)
//! ```

use datafusion::error::Result;
use datafusion::logical_expr::JoinType;
use datafusion::prelude::{DataFrame, coalesce, col, concat, get_field, lit, named_struct};

use crate::functions::sha1_hex;
use crate::inputs::{
    EXTERNAL_ID_MAPPING_UPDATES, Inputs, ORDER_NEEDED, Warnings, id, opt_id, order_key,
};
use crate::views::id_graph::IdGraph;
use crate::views::in_columns_of;

/// The view's name and folder.
pub const NAME: &str = "external_id_mapping";

/// Plans the view: `canonical_segment_id`, `external_id_type`,
/// `external_id_value`, `external_id_hash`, `timestamp`.
pub fn plan(inputs: &Inputs<'_>, id_graph: &IdGraph, warnings: &mut Warnings) -> Result<DataFrame> {
    finish(compact(inputs, warnings)?, id_graph)
}

/// The latest update of every identifier, as `external_id_mapping_updates` rows
/// (`segment_id`, `external_id_type`, `external_id_value`, `external_id_hash` as
/// landed, `seq`, `timestamp`, `uuid_ts`): all the view depends on besides the
/// id graph, so an incremental run saves it as its state.
pub fn compact(inputs: &Inputs<'_>, warnings: &mut Warnings) -> Result<DataFrame> {
    let mut needed = vec![
        id("segment_id"),
        id("external_id_type"),
        id("external_id_value"),
        opt_id("external_id_hash"),
    ];
    needed.extend(ORDER_NEEDED);
    for c in ["segment_id", "external_id_type", "external_id_value"] {
        inputs.warn_nulls(EXTERNAL_ID_MAPPING_UPDATES, c, warnings);
    }
    let updates = inputs
        .select(EXTERNAL_ID_MAPPING_UPDATES, &needed, warnings)?
        .filter(
            col("segment_id")
                .is_not_null()
                .and(col("external_id_type").is_not_null())
                .and(col("external_id_value").is_not_null()),
        )?;
    let mut latest_args = vec![named_struct(vec![
        lit("segment_id"),
        col("segment_id"),
        lit("hash"),
        col("external_id_hash"),
        lit("seq"),
        col("seq"),
        lit("timestamp"),
        col("timestamp"),
        lit("uuid_ts"),
        col("uuid_ts"),
    ])];
    latest_args.extend(order_key());
    updates
        .aggregate(
            vec![col("external_id_type"), col("external_id_value")],
            vec![psync_functions::latest().call(latest_args).alias("l")],
        )?
        .select(vec![
            get_field(col("l"), "segment_id").alias("segment_id"),
            col("external_id_type"),
            col("external_id_value"),
            get_field(col("l"), "hash").alias("external_id_hash"),
            get_field(col("l"), "seq").alias("seq"),
            get_field(col("l"), "timestamp").alias("timestamp"),
            get_field(col("l"), "uuid_ts").alias("uuid_ts"),
        ])
}

/// The view from the latest update of every identifier ([`compact`]'s rows).
pub fn finish(latest: DataFrame, id_graph: &IdGraph) -> Result<DataFrame> {
    let per_id = latest.select(vec![
        col("external_id_type"),
        col("external_id_value"),
        col("segment_id").alias("sid"),
        coalesce(vec![
            col("external_id_hash"),
            sha1_hex().call(vec![concat(vec![
                col("external_id_type"),
                col("external_id_value"),
            ])]),
        ])
        .alias("external_id_hash"),
        col("timestamp"),
    ])?;
    let graph = id_graph.df.clone().select(vec![
        col("segment_id").alias("g_sid"),
        col("canonical_segment_id").alias("g_canonical"),
    ])?;
    // The graph is the build side (see `session::views_context`).
    graph
        .join(per_id, JoinType::Right, &["g_sid"], &["sid"], None)?
        .select(vec![
            coalesce(vec![col("g_canonical"), col("sid")]).alias("canonical_segment_id"),
            col("external_id_type"),
            col("external_id_value"),
            col("external_id_hash"),
            col("timestamp"),
        ])
}

/// The view after a delta: `previous` (the published view) with the rows of every
/// identifier that has an update in `new`, or whose previous canonical is one of
/// `ends` (see [`id_graph::patch`](crate::views::id_graph::patch)), recomputed
/// from `all` (saved state plus delta) over the patched graph. Unsorted.
pub async fn patch(
    all: &Inputs<'_>,
    new: &Inputs<'_>,
    previous: DataFrame,
    graph: &IdGraph,
    ends: &DataFrame,
    warnings: &mut Warnings,
) -> Result<DataFrame> {
    let key = ["external_id_type", "external_id_value"];
    let landed = new
        .select(
            EXTERNAL_ID_MAPPING_UPDATES,
            &[id("external_id_type"), id("external_id_value")],
            warnings,
        )?
        .filter(
            col("external_id_type")
                .is_not_null()
                .and(col("external_id_value").is_not_null()),
        )?;
    let moved = ends
        .clone()
        .join(
            previous.clone(),
            JoinType::RightSemi,
            &["sid"],
            &["canonical_segment_id"],
            None,
        )?
        .select_columns(&key)?;
    let keys = landed
        .union(moved)?
        .distinct()?
        .select(vec![
            col("external_id_type").alias("k_type"),
            col("external_id_value").alias("k_value"),
        ])?
        .cache()
        .await?;
    let latest = compact(
        &all.clone()
            .only(EXTERNAL_ID_MAPPING_UPDATES, keys.clone(), &key),
        &mut Warnings::default(),
    )?
    .cache()
    .await?;
    // The graph rows of those identifiers' segment_ids.
    let owners = graph
        .restricted_to(
            latest
                .clone()
                .select(vec![col("segment_id").alias("sid")])?
                .distinct()?,
        )
        .await?;
    let recomputed = finish(latest, &owners)?;
    let kept = keys.join(
        previous,
        JoinType::RightAnti,
        &["k_type", "k_value"],
        &key,
        None,
    )?;
    in_columns_of(kept, &recomputed)?.union(recomputed)
}

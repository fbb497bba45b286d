//! `id_graph_history` (SPEC §3.6): where every segment_id pointed, over time.
//!
//! ```text
//! instants   = the distinct timestamps of id_graph_updates, numbered 1..n
//!              (a NULL timestamp is instant 0: older than any); the lake as of
//!              any T is constant between two instants
//! versions   = per segment_id and instant it has rows at, its latest update so
//!              far: rows ranked in update order, the running maximum rank
//!              (a window over instants), the row of that rank (the as-of-T latest)
//! timeline   = per segment_id, pieces [from, to) covering [0, n+1): absent
//!              before its first row, then one piece per version; a piece is an
//!              edge when its version points elsewhere
//! jumping    = pointer jumping on pieces: a piece's pointer jumps to what its
//!              pointer's overlapping pieces point at, the piece split at their
//!              bounds; done when no piece points at an edge (≈ log2 of the
//!              longest chain); stalled (no less time left pending) ⇒ cycles
//! cycles     = the pieces still pending, cut at each other's bounds into
//!              snapshots (one node per segment_id and interval) and resolved by
//!              the id graph's own resolution (oldest edge of each cycle broken)
//! rows       = adjacent pieces with one canonical merged (SCD type 2);
//!              valid_from NULL: since before any timestamp; valid_to NULL: now
//! ```
//!
//! So the rows valid at T are exactly `id_graph` as of T. The view reads every
//! id_graph_updates row in every run (incremental ones too): it is exact because
//! it is always recomputed, like the Personas views.

use std::ops::Not;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_nested::expr_fn::range;
use datafusion::functions_window::expr_fn::{dense_rank, lag, lead, row_number};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    ExprFunctionExt, JoinType, WindowFrame, WindowFunctionDefinition, cast, when,
};
use datafusion::prelude::{DataFrame, Expr, coalesce, col, concat, lit};

use psync_lake_io::schema::time_type;

use crate::inputs::{ID_GRAPH_UPDATES, Inputs, ORDER_NEEDED, Warnings, id};
use crate::views::id_graph;

/// The view's name and folder.
pub const NAME: &str = "id_graph_history";

/// The view's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment_id", DataType::Utf8, true),
        Field::new("canonical_segment_id", DataType::Utf8, true),
        Field::new("valid_from", time_type(), true),
        Field::new("valid_to", time_type(), true),
    ]))
}

fn max2(a: Expr, b: Expr) -> Result<Expr> {
    when(a.clone().gt_eq(b.clone()), a).otherwise(b)
}

fn min2(a: Expr, b: Expr) -> Result<Expr> {
    when(a.clone().lt_eq(b.clone()), a).otherwise(b)
}

/// An aggregate function as a window function.
fn over(udaf: Arc<datafusion::logical_expr::AggregateUDF>, args: Vec<Expr>) -> Expr {
    Expr::WindowFunction(Box::new(WindowFunction::new(
        WindowFunctionDefinition::AggregateUDF(udaf),
        args,
    )))
}

/// The one Int64 a query returns (0 for none or NULL).
async fn scalar(df: DataFrame) -> Result<i64> {
    let batches = df.collect().await?;
    Ok(batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Int64).ok()?;
            let v = c.as_primitive::<Int64Type>();
            v.is_valid(0).then(|| v.value(0))
        })
        .unwrap_or(0))
}

/// Plans the view: `segment_id`, `canonical_segment_id`, `valid_from`,
/// `valid_to`. Runs queries (the pointer jumping); the returned plan runs when
/// written.
pub async fn plan(inputs: &Inputs<'_>) -> Result<DataFrame> {
    let started = std::time::Instant::now();
    let mut needed = vec![id("segment_id"), id("canonical_segment_id")];
    needed.extend(ORDER_NEEDED);
    // The id graph of the same run reports NULL keys; not twice.
    let updates = inputs
        .select(ID_GRAPH_UPDATES, &needed, &mut Warnings::default())?
        .filter(
            col("segment_id")
                .is_not_null()
                .and(col("canonical_segment_id").is_not_null()),
        )?;

    let instants = updates
        .clone()
        .filter(col("timestamp").is_not_null())?
        .select(vec![col("timestamp").alias("i_ts")])?
        .distinct()?
        .window(vec![
            row_number()
                .order_by(vec![col("i_ts").sort(true, true)])
                .build()?
                .alias("i_n"),
        ])?
        .select(vec![
            col("i_ts"),
            cast(col("i_n"), DataType::Int64).alias("i_idx"),
        ])?
        .cache()
        .await?;
    let end = instants.clone().count().await? as i64 + 1;
    tracing::debug!(instants = end - 1, at = ?started.elapsed(), "id_graph_history: instants");

    let timeline = timeline(updates, &instants, end).await?.cache().await?;
    tracing::debug!(at = ?started.elapsed(), "id_graph_history: timeline");
    let (done, stuck) = jump(timeline).await?;
    tracing::debug!(cycles = stuck.is_some(), at = ?started.elapsed(), "id_graph_history: jumped");
    let pieces = match stuck {
        Some(stuck) => done.union(resolve_cycles(stuck).await?)?,
        None => done,
    };
    let rows = islands(pieces)?;
    let from = instants.clone().select(vec![
        col("i_idx").alias("f_idx"),
        col("i_ts").alias("valid_from"),
    ])?;
    let to = instants.select(vec![
        col("i_idx").alias("e_idx"),
        col("i_ts").alias("valid_to"),
    ])?;
    rows.join(from, JoinType::Left, &["t_from"], &["f_idx"], None)?
        .join(to, JoinType::Left, &["t_to"], &["e_idx"], None)?
        .select(vec![
            col("segment_id"),
            col("canonical_segment_id"),
            col("valid_from"),
            col("valid_to"),
        ])
}

/// Every segment_id's pieces: `node`, `ptr` (its target, or itself when
/// terminal), `t_from`, `t_to` (instant numbers, `to` exclusive), `edge`,
/// `exists`, and the version's `target`, `seq`, `timestamp`, `uuid_ts`.
async fn timeline(updates: DataFrame, instants: &DataFrame, end: i64) -> Result<DataFrame> {
    let rows = instants
        .clone()
        .join(updates, JoinType::Right, &["i_ts"], &["timestamp"], None)?
        .select(vec![
            col("segment_id"),
            col("canonical_segment_id"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
            coalesce(vec![col("i_idx"), lit(0i64)]).alias("t"),
        ])?;
    // Each segment_id's latest update as of each instant it has rows at: its rows
    // ranked in update order (a full tie: by target, as latest() breaks it), the
    // running maximum rank over instants, and the row of that rank. Windows: a
    // node's rows can be many (every merge of its profile re-points it), so
    // nothing here is quadratic in them.
    let rows = rows.cache().await?;
    let nulls_first = |c: &str| col(c).sort(true, true);
    let rank = dense_rank()
        .partition_by(vec![col("segment_id")])
        .order_by(vec![
            nulls_first("seq"),
            nulls_first("timestamp"),
            nulls_first("uuid_ts"),
            nulls_first("canonical_segment_id"),
        ])
        .build()?
        .alias("k");
    let ranked = rows.window(vec![rank])?.cache().await?;
    let best = over(max_udaf(), vec![col("k")])
        .partition_by(vec![col("segment_id")])
        .order_by(vec![nulls_first("t")])
        .window_frame(WindowFrame::new(Some(false)))
        .build()?
        .alias("m");
    let so_far = ranked
        .clone()
        .window(vec![best])?
        .select(vec![
            col("segment_id").alias("m_sid"),
            col("t").alias("t_from"),
            col("m"),
        ])?
        .distinct()?
        .cache()
        .await?;
    let versions = so_far
        .join(
            ranked,
            JoinType::Inner,
            &["m_sid", "m"],
            &["segment_id", "k"],
            None,
        )?
        .select(vec![
            col("m_sid").alias("node"),
            col("t_from"),
            col("canonical_segment_id").alias("target"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ])?
        // Rows equal in rank are equal in every field read here.
        .distinct()?;
    let next = lead(col("t_from"), Some(1), Some(ScalarValue::Int64(Some(end))))
        .partition_by(vec![col("node")])
        .order_by(vec![col("t_from").sort(true, true)])
        .build()?
        .alias("t_to");
    let edge = col("target").not_eq(col("node"));
    let versions = versions.window(vec![next])?.select(vec![
        col("node"),
        when(edge.clone(), col("target"))
            .otherwise(col("node"))?
            .alias("ptr"),
        col("t_from"),
        col("t_to"),
        edge.alias("edge"),
        lit(true).alias("exists"),
        col("target"),
        col("seq"),
        col("timestamp"),
        col("uuid_ts"),
    ])?;
    let null =
        |t: DataType| Ok::<_, datafusion::error::DataFusionError>(lit(ScalarValue::try_from(t)?));
    let absent = versions
        .clone()
        .aggregate(vec![col("node")], vec![min(col("t_from")).alias("first")])?
        .filter(col("first").gt(lit(0i64)))?
        .select(vec![
            col("node"),
            col("node").alias("ptr"),
            lit(0i64).alias("t_from"),
            col("first").alias("t_to"),
            lit(false).alias("edge"),
            lit(false).alias("exists"),
            col("node").alias("target"),
            null(DataType::Int64)?.alias("seq"),
            null(time_type())?.alias("timestamp"),
            null(time_type())?.alias("uuid_ts"),
        ])?;
    versions.union(absent)
}

/// The columns every piece carries through the jumping.
const CARRIED: [&str; 6] = ["edge", "exists", "target", "seq", "timestamp", "uuid_ts"];

/// One round: each piece's pointer jumps to what the pieces of its pointer
/// that overlap it point at; the piece is cut to each overlap. `hopped` says
/// the pointer was itself an edge there (the piece is not resolved yet).
fn hop(cur: DataFrame) -> Result<DataFrame> {
    let other = cur.clone().select(vec![
        col("node").alias("o_node"),
        col("ptr").alias("o_ptr"),
        col("t_from").alias("o_from"),
        col("t_to").alias("o_to"),
        col("edge").alias("o_edge"),
    ])?;
    let mut keep = vec![col("node"), col("ptr"), col("t_from"), col("t_to")];
    keep.extend(CARRIED.iter().map(|c| col(*c)));
    let overlap = col("o_from")
        .lt(col("t_to"))
        .and(col("t_from").lt(col("o_to")));
    let mut out = vec![
        col("node"),
        coalesce(vec![col("o_ptr"), col("ptr")]).alias("ptr"),
        when(col("o_node").is_null(), col("t_from"))
            .otherwise(max2(col("t_from"), col("o_from"))?)?
            .alias("t_from"),
        when(col("o_node").is_null(), col("t_to"))
            .otherwise(min2(col("t_to"), col("o_to"))?)?
            .alias("t_to"),
    ];
    out.extend(CARRIED.iter().map(|c| col(*c)));
    out.push(coalesce(vec![col("o_edge"), lit(false)]).alias("hopped"));
    cur.select(keep)?
        .join(other, JoinType::Left, &["ptr"], &["o_node"], Some(overlap))?
        .select(out)
}

/// Jumps until no piece is pending, or until a round leaves as much time
/// pending as the one before (what is left is on or leads into a cycle).
/// Returns the resolved pieces of existing segment_ids (`segment_id`,
/// `canonical_segment_id`, `t_from`, `t_to`) and the pending ones, if any.
async fn jump(timeline: DataFrame) -> Result<(DataFrame, Option<DataFrame>)> {
    let mut cur = timeline.with_column("hopped", col("edge"))?;
    let mut last = i64::MAX;
    loop {
        let next = hop(cur)?.cache().await?;
        let pending = scalar(
            next.clone()
                .filter(col("hopped"))?
                .aggregate(vec![], vec![sum(col("t_to") - col("t_from"))])?,
        )
        .await?;
        tracing::debug!(pending, "id_graph_history: round");
        cur = next;
        // Each round leaves strictly less time pending until only cycles are left.
        if pending == 0 || pending >= last {
            break;
        }
        last = pending;
    }
    let done = cur
        .clone()
        .filter(col("hopped").not().and(col("exists")))?
        .select(vec![
            col("node").alias("segment_id"),
            col("ptr").alias("canonical_segment_id"),
            col("t_from"),
            col("t_to"),
        ])?;
    let stuck = cur.filter(col("hopped"))?.cache().await?;
    let any = stuck.clone().count().await? > 0;
    Ok((done, any.then_some(stuck)))
}

/// The pending pieces resolved: cut at every bound any of them has, each
/// (segment_id, interval) becomes a node of a snapshot graph that the id
/// graph's resolution (cycles broken at their oldest edge) resolves.
async fn resolve_cycles(stuck: DataFrame) -> Result<DataFrame> {
    let bounds = stuck
        .clone()
        .select(vec![col("t_from").alias("b")])?
        .union(stuck.clone().select(vec![col("t_to").alias("b")])?)?
        .distinct()?
        .window(vec![
            row_number()
                .order_by(vec![col("b").sort(true, true)])
                .build()?
                .alias("b_n"),
        ])?
        .select(vec![
            col("b"),
            cast(col("b_n"), DataType::Int64).alias("b_idx"),
        ])?
        .cache()
        .await?;
    let lo = bounds
        .clone()
        .select(vec![col("b").alias("lo_b"), col("b_idx").alias("lo")])?;
    let hi = bounds
        .clone()
        .select(vec![col("b").alias("hi_b"), col("b_idx").alias("hi")])?;
    let snap_id = |node: Expr| concat(vec![cast(col("e"), DataType::Utf8), lit("|"), node]);
    // One row per pending segment_id and elementary interval `e` (bound numbers).
    let snapshots = stuck
        .join(lo, JoinType::Inner, &["t_from"], &["lo_b"], None)?
        .join(hi, JoinType::Inner, &["t_to"], &["hi_b"], None)?
        .select(vec![
            col("node"),
            col("target"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
            range(col("lo"), col("hi"), lit(1i64)).alias("e"),
        ])?
        .unnest_columns(&["e"])?
        .select(vec![
            col("node"),
            col("e"),
            snap_id(col("node")).alias("segment_id"),
            snap_id(col("target")).alias("target"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ])?
        .cache()
        .await?;
    let resolved = id_graph::resolve_nodes(snapshots.clone().select_columns(&[
        "segment_id",
        "target",
        "seq",
        "timestamp",
        "uuid_ts",
    ])?)
    .await?;
    let who =
        snapshots
            .clone()
            .select(vec![col("segment_id").alias("w_id"), col("node"), col("e")])?;
    let canonical = snapshots.select(vec![
        col("segment_id").alias("c_id"),
        col("node").alias("canonical_segment_id"),
    ])?;
    let from = bounds
        .clone()
        .select(vec![col("b_idx").alias("f_idx"), col("b").alias("t_from")])?;
    let to = bounds.select(vec![
        (col("b_idx") - lit(1i64)).alias("t_idx"),
        col("b").alias("t_to"),
    ])?;
    resolved
        .select(vec![
            col("segment_id").alias("r_id"),
            col("canonical_segment_id").alias("r_canonical"),
        ])?
        .join(who, JoinType::Inner, &["r_id"], &["w_id"], None)?
        .join(
            canonical,
            JoinType::Inner,
            &["r_canonical"],
            &["c_id"],
            None,
        )?
        .join(from, JoinType::Inner, &["e"], &["f_idx"], None)?
        .join(to, JoinType::Inner, &["e"], &["t_idx"], None)?
        .select(vec![
            col("node").alias("segment_id"),
            col("canonical_segment_id"),
            col("t_from"),
            col("t_to"),
        ])
}

/// Adjacent pieces of a segment_id with one canonical merged into one row.
fn islands(pieces: DataFrame) -> Result<DataFrame> {
    let order = vec![col("t_from").sort(true, true)];
    let previous = lag(col("canonical_segment_id"), Some(1), None)
        .partition_by(vec![col("segment_id")])
        .order_by(order.clone())
        .build()?
        .alias("prev");
    let starts = when(
        col("prev")
            .is_null()
            .or(col("prev").not_eq(col("canonical_segment_id"))),
        lit(1i64),
    )
    .otherwise(lit(0i64))?;
    let island = over(sum_udaf(), vec![col("start")])
        .partition_by(vec![col("segment_id")])
        .order_by(order)
        .window_frame(WindowFrame::new(Some(true)))
        .build()?
        .alias("island");
    pieces
        .window(vec![previous])?
        .with_column("start", starts)?
        .window(vec![island])?
        .aggregate(
            vec![
                col("segment_id"),
                col("canonical_segment_id"),
                col("island"),
            ],
            vec![
                min(col("t_from")).alias("t_from"),
                max(col("t_to")).alias("t_to"),
            ],
        )
}

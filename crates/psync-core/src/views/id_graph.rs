//! `id_graph` (SPEC §3.1): where every segment_id points now.
//!
//! ```text
//! id_graph_updates ─► latest update per segment_id ─► nodes (segment_id → target)
//!   edges = nodes with target ≠ segment_id
//!   pointer jumping: ptr ← ptr's ptr, one self-join per round, until every ptr
//!   is a terminal (not itself merged) ── rounds ≈ log2(longest chain)
//!   no progress while some ptr is not terminal ⇒ cycles: each is broken at its
//!   oldest edge (that node becomes terminal) and the jumping is redone
//! ```
//!
//! Recursive entries (Segment's shortcuts from every member straight to the new
//! canonical) only make the jumping finish sooner; the result never depends on them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::Result;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, JoinType, SortExpr, when};
use datafusion::prelude::SessionContext;
use datafusion::prelude::{DataFrame, Expr, coalesce, col, get_field, lit, named_struct};
use psync_lake_io::schema::time_type;

use crate::inputs::{ID_GRAPH_UPDATES, Inputs, ORDER_NEEDED, Warnings, id, order_key};

/// The view's name and folder.
pub const NAME: &str = "id_graph";

/// The resolved id graph: `segment_id`, `canonical_segment_id`, `timestamp`,
/// held in memory (the other views join it).
pub struct IdGraph {
    /// The view's rows.
    pub df: DataFrame,
    /// The latest update of every segment_id, as `id_graph_updates` rows
    /// (`segment_id`, `canonical_segment_id`, `seq`, `timestamp`, `uuid_ts`):
    /// all the view depends on, so an incremental run saves it as its state.
    pub latest: DataFrame,
    /// Cycles found and broken.
    pub cycles_broken: u64,
    /// Pointer-jumping rounds run (a measure of chain length).
    pub rounds: u32,
}

impl IdGraph {
    /// An id graph with no rows: planning a view over it gives the view's schema
    /// without reading anything.
    pub fn empty(ctx: &SessionContext) -> Result<IdGraph> {
        let schema = Schema::new(vec![
            Field::new("segment_id", DataType::Utf8, true),
            Field::new("canonical_segment_id", DataType::Utf8, true),
            Field::new("timestamp", time_type(), true),
        ]);
        let df = ctx.read_table(Arc::new(EmptyTable::new(Arc::new(schema))))?;
        Ok(IdGraph {
            latest: df.clone(),
            df,
            cycles_broken: 0,
            rounds: 0,
        })
    }
}

impl IdGraph {
    /// The graph's rows of the segment_ids in `sids` (one column, `sid`): a small
    /// hash table for a patch's joins. Its `latest` is this graph's.
    pub async fn restricted_to(&self, sids: DataFrame) -> Result<IdGraph> {
        Ok(IdGraph {
            df: sids
                .join(
                    self.df.clone(),
                    JoinType::RightSemi,
                    &["sid"],
                    &["segment_id"],
                    None,
                )?
                .cache()
                .await?,
            latest: self.latest.clone(),
            cycles_broken: 0,
            rounds: 0,
        })
    }
}

/// The latest update of every segment_id, as `id_graph_updates` rows
/// (`segment_id`, `canonical_segment_id`, `seq`, `timestamp`, `uuid_ts`).
pub fn latest(inputs: &Inputs<'_>, warnings: &mut Warnings) -> Result<DataFrame> {
    as_updates(nodes(inputs, warnings)?)
}

/// Nodes as `id_graph_updates` rows.
fn as_updates(nodes: DataFrame) -> Result<DataFrame> {
    nodes.select(vec![
        col("segment_id"),
        col("target").alias("canonical_segment_id"),
        col("seq"),
        col("timestamp"),
        col("uuid_ts"),
    ])
}

/// `segment_id`, `target`, `timestamp`, `seq`, `uuid_ts` of every segment_id's latest update.
fn nodes(inputs: &Inputs<'_>, warnings: &mut Warnings) -> Result<DataFrame> {
    let mut needed = vec![id("segment_id"), id("canonical_segment_id")];
    needed.extend(ORDER_NEEDED);
    inputs.warn_nulls(ID_GRAPH_UPDATES, "segment_id", warnings);
    inputs.warn_nulls(ID_GRAPH_UPDATES, "canonical_segment_id", warnings);
    let updates = inputs.select(ID_GRAPH_UPDATES, &needed, warnings)?.filter(
        col("segment_id")
            .is_not_null()
            .and(col("canonical_segment_id").is_not_null()),
    )?;

    let mut latest_args = vec![named_struct(vec![
        lit("target"),
        col("canonical_segment_id"),
        lit("timestamp"),
        col("timestamp"),
        lit("seq"),
        col("seq"),
        lit("uuid_ts"),
        col("uuid_ts"),
    ])];
    latest_args.extend(order_key());
    updates
        .aggregate(
            vec![col("segment_id")],
            vec![psync_functions::latest().call(latest_args).alias("l")],
        )?
        .select(vec![
            col("segment_id"),
            get_field(col("l"), "target").alias("target"),
            get_field(col("l"), "timestamp").alias("timestamp"),
            get_field(col("l"), "seq").alias("seq"),
            get_field(col("l"), "uuid_ts").alias("uuid_ts"),
        ])
}

/// Plans and runs the id graph resolution.
pub async fn build(inputs: &Inputs<'_>, warnings: &mut Warnings) -> Result<IdGraph> {
    let nodes = nodes(inputs, warnings)?.cache().await?;
    let resolved = resolve(nodes.clone(), None).await?;
    if resolved.cycles_broken > 0 {
        warn_cycles(resolved.cycles_broken, warnings);
    }
    Ok(IdGraph {
        // Held in memory: the other views join it.
        df: resolved.df.cache().await?,
        latest: as_updates(nodes)?,
        cycles_broken: resolved.cycles_broken,
        rounds: resolved.rounds,
    })
}

fn warn_cycles(count: u64, warnings: &mut Warnings) {
    warnings.push(format!(
        "{ID_GRAPH_UPDATES}: {count} merge cycles broken at their oldest edge"
    ));
}

/// Resolves `nodes` (`segment_id`, `target`, `seq`, `timestamp`, `uuid_ts`,
/// one row per node) as the view does: every chain followed to its end, each
/// cycle broken at its oldest edge. `segment_id`, `canonical_segment_id`, `timestamp`.
pub(crate) async fn resolve_nodes(nodes: DataFrame) -> Result<DataFrame> {
    Ok(resolve(nodes, None).await?.df)
}

/// The rows of an id graph for some nodes.
struct Resolved {
    /// `segment_id`, `canonical_segment_id`, `timestamp`.
    df: DataFrame,
    cycles_broken: u64,
    rounds: u32,
}

/// Follows every node's chain to its end. `outside`, when given, holds the
/// final canonical of segment_ids that are not among `nodes` (`sid`,
/// `canonical`): a chain that reaches one of them ends at its canonical.
async fn resolve(nodes: DataFrame, outside: Option<&DataFrame>) -> Result<Resolved> {
    let mut edges = nodes
        .clone()
        .filter(col("target").not_eq(col("segment_id")))?
        .select(vec![
            col("segment_id").alias("node"),
            col("target").alias("ptr"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ])?;
    if let Some(outside) = outside {
        let end = outside.clone().select(vec![
            col("sid").alias("o_sid"),
            col("canonical").alias("o_end"),
        ])?;
        edges = edges
            .join(end, JoinType::Left, &["ptr"], &["o_sid"], None)?
            .select(vec![
                col("node"),
                coalesce(vec![col("o_end"), col("ptr")]).alias("ptr"),
                col("seq"),
                col("timestamp"),
                col("uuid_ts"),
            ])?;
    }
    let edges = edges.cache().await?;

    let mut rounds = 0;
    let jump = Jump::run(edges.clone().select_columns(&["node", "ptr"])?, &mut rounds).await?;
    let mut ends = jump.resolved.clone().select_columns(&["node", "ptr"])?;
    let mut cycles_broken = 0;
    if jump.stuck > 0 {
        let breakers = break_cycles(&edges, jump.stuck_nodes()?, jump.stuck, &mut rounds).await?;
        cycles_broken = breakers.clone().count().await? as u64;
        // Without its oldest edge each cycle is a chain ending at the breaker.
        let acyclic = edges
            .clone()
            .join(
                breakers.clone().select(vec![col("node").alias("b")])?,
                JoinType::LeftAnti,
                &["node"],
                &["b"],
                None,
            )?
            .select_columns(&["node", "ptr"])?;
        // Each breaker is the end of its former cycle: it points at itself.
        ends = Jump::run(acyclic, &mut rounds)
            .await?
            .resolved
            .select_columns(&["node", "ptr"])?
            .union(breakers.select(vec![col("node"), col("node").alias("ptr")])?)?;
    }

    let df = nodes
        .join(
            ends.select(vec![col("node"), col("ptr").alias("end")])?,
            JoinType::Left,
            &["segment_id"],
            &["node"],
            None,
        )?
        .select(vec![
            col("segment_id"),
            coalesce(vec![col("end"), col("target")]).alias("canonical_segment_id"),
            col("timestamp"),
        ])?;
    Ok(Resolved {
        df,
        cycles_broken,
        rounds,
    })
}

/// The id graph after a delta, from the one published before it.
pub struct Patched {
    /// The new graph: unchanged rows plus re-resolved ones (`latest` is planned
    /// over all the state, and runs only when used: by the health tables or a
    /// consolidation).
    pub graph: IdGraph,
    /// `sid`: the segment_ids whose row was recomputed, A below.
    pub affected: DataFrame,
    /// `sid`: the ends whose chains the delta may have changed, E below.
    pub ends: DataFrame,
}

/// Patches the published id graph `previous` with the id graph updates of `new`.
///
/// ```text
/// C = segment_ids with an update in the delta
/// E = C ∪ previous canonical of each of C          (the chain ends a change can reach)
/// A = C ∪ every segment_id whose previous canonical is in E
/// ```
/// A chain runs inside one previous cluster (the segment_ids sharing a canonical)
/// until its end, so a cluster none of whose nodes changed keeps every canonical.
/// A's nodes are re-resolved from their latest updates in `all` (saved state
/// plus delta); a chain leaving A ends at the previous canonical of the node it
/// reaches, which is final. Cycles can only form inside A: those of the previous
/// graph that lie in A are found again (or not), the others stand, so the count
/// is `previous_cycles` minus A's old breakers plus A's new ones.
pub async fn patch(
    all: &Inputs<'_>,
    new: &Inputs<'_>,
    saved: &Inputs<'_>,
    previous: DataFrame,
    previous_cycles: u64,
    warnings: &mut Warnings,
) -> Result<Patched> {
    let previous = previous
        .select(vec![
            col("segment_id").alias("p_sid"),
            col("canonical_segment_id").alias("p_canonical"),
            col("timestamp").alias("p_timestamp"),
        ])?
        .cache()
        .await?;
    let touched = nodes(new, warnings)?
        .select(vec![col("segment_id").alias("sid")])?
        .distinct()?
        .cache()
        .await?;
    // Small sides first: they are the hash tables (see `session::views_context`).
    let ends = touched
        .clone()
        .join(
            previous.clone(),
            JoinType::RightSemi,
            &["sid"],
            &["p_sid"],
            None,
        )?
        .select(vec![col("p_canonical").alias("sid")])?
        .union(touched.clone())?
        .distinct()?
        .cache()
        .await?;
    let affected = ends
        .clone()
        .join(
            previous.clone(),
            JoinType::RightSemi,
            &["sid"],
            &["p_canonical"],
            None,
        )?
        .select(vec![col("p_sid").alias("sid")])?
        .union(touched)?
        .distinct()?
        .cache()
        .await?;
    let unchanged = affected
        .clone()
        .join(
            previous.clone(),
            JoinType::RightAnti,
            &["sid"],
            &["p_sid"],
            None,
        )?
        .select(vec![
            col("p_sid").alias("segment_id"),
            col("p_canonical").alias("canonical_segment_id"),
            col("p_timestamp").alias("timestamp"),
        ])?;
    let outside = unchanged.clone().select(vec![
        col("segment_id").alias("sid"),
        col("canonical_segment_id").alias("canonical"),
    ])?;

    let nodes_a = nodes(
        &all.clone()
            .only(ID_GRAPH_UPDATES, affected.clone(), &["segment_id"]),
        &mut Warnings::default(),
    )?
    .cache()
    .await?;
    let resolved = resolve(nodes_a.clone(), Some(&outside)).await?;

    // The previous graph's breakers in A: nodes that were their own canonical
    // although their latest update pointed elsewhere.
    let old_nodes = nodes(
        &saved
            .clone()
            .only(ID_GRAPH_UPDATES, affected.clone(), &["segment_id"]),
        &mut Warnings::default(),
    )?
    .filter(col("target").not_eq(col("segment_id")))?
    .select(vec![col("segment_id").alias("o_sid")])?;
    let old_breakers = old_nodes
        .join(
            previous.filter(col("p_sid").eq(col("p_canonical")))?,
            JoinType::Inner,
            &["o_sid"],
            &["p_sid"],
            None,
        )?
        .count()
        .await? as u64;
    let cycles_broken = (previous_cycles + resolved.cycles_broken).saturating_sub(old_breakers);
    if cycles_broken > 0 {
        warn_cycles(cycles_broken, warnings);
    }
    let df = unchanged.union(resolved.df)?.cache().await?;
    Ok(Patched {
        graph: IdGraph {
            df,
            latest: latest(all, &mut Warnings::default())?,
            cycles_broken,
            rounds: resolved.rounds,
        },
        affected,
        ends,
    })
}

/// The result of pointer jumping over `node → ptr` edges.
struct Jump {
    /// `node`, `ptr` (the end of its chain, for every node not stuck), `hopped`.
    resolved: DataFrame,
    /// Nodes that never reached an end: on or leading into a cycle.
    stuck: usize,
}

impl Jump {
    /// Jumps until every pointer is terminal, or until a round makes no progress
    /// (what is left is then cyclic).
    async fn run(edges: DataFrame, rounds: &mut u32) -> Result<Jump> {
        let mut cur = edges.with_column("hopped", lit(true))?.cache().await?;
        let mut last = usize::MAX;
        loop {
            *rounds += 1;
            let next = hop(cur.clone())?.cache().await?;
            let pending = next.clone().filter(col("hopped"))?.count().await?;
            cur = next;
            if pending == 0 || pending == last {
                return Ok(Jump {
                    resolved: cur,
                    stuck: pending,
                });
            }
            last = pending;
        }
    }

    fn stuck_nodes(&self) -> Result<DataFrame> {
        self.resolved
            .clone()
            .filter(col("hopped"))?
            .select_columns(&["node"])
    }
}

/// One round: every pointer that is itself an edge's node jumps to that edge's pointer.
fn hop(cur: DataFrame) -> Result<DataFrame> {
    let other = cur
        .clone()
        .select(vec![col("node").alias("o_node"), col("ptr").alias("o_ptr")])?;
    cur.select_columns(&["node", "ptr"])?
        .join(other, JoinType::Left, &["ptr"], &["o_node"], None)?
        .select(vec![
            col("node"),
            coalesce(vec![col("o_ptr"), col("ptr")]).alias("ptr"),
            col("o_node").is_not_null().alias("hopped"),
        ])
}

/// Finds the cycles among the `stuck` nodes and returns, per cycle, the node
/// whose edge is the oldest in update order (ties: smallest segment_id).
async fn break_cycles(
    edges: &DataFrame,
    stuck: DataFrame,
    count: usize,
    rounds: &mut u32,
) -> Result<DataFrame> {
    // Enough hops to walk past any tail and around any cycle among `count` nodes.
    let hops = usize::BITS - count.leading_zeros() + 1;
    let oldest_first = |c: &str| SortExpr::new(col(c), true, true);
    let ranked = edges
        .clone()
        .join(
            stuck.select(vec![col("node").alias("s")])?,
            JoinType::LeftSemi,
            &["node"],
            &["s"],
            None,
        )?
        .window(vec![
            row_number()
                .order_by(vec![
                    oldest_first("seq"),
                    oldest_first("timestamp"),
                    oldest_first("uuid_ts"),
                    oldest_first("node"),
                ])
                .build()?
                .alias("rank"),
        ])?
        .select_columns(&["node", "ptr", "rank"])?
        .cache()
        .await?;

    // After `hops` jumps every pointer sits on a cycle; those pointers are the cycle nodes.
    let mut walk = ranked.clone().select_columns(&["node", "ptr"])?;
    for _ in 0..hops {
        *rounds += 1;
        walk = hop_inner(walk)?.cache().await?;
    }
    let on_cycle = walk.select(vec![col("ptr").alias("c")])?.distinct()?;

    // The minimum rank around each cycle, by jumping with a running minimum.
    let mut m = ranked
        .clone()
        .join(on_cycle, JoinType::LeftSemi, &["node"], &["c"], None)?
        .select(vec![
            col("node"),
            col("ptr"),
            col("rank").alias("m"),
            col("rank"),
        ])?
        .cache()
        .await?;
    for _ in 0..hops {
        *rounds += 1;
        let other = m.clone().select(vec![
            col("node").alias("o_node"),
            col("ptr").alias("o_ptr"),
            col("m").alias("o_m"),
        ])?;
        m = m
            .join(other, JoinType::Inner, &["ptr"], &["o_node"], None)?
            .select(vec![
                col("node"),
                col("o_ptr").alias("ptr"),
                min2(col("m"), col("o_m"))?.alias("m"),
                col("rank"),
            ])?
            .cache()
            .await?;
    }
    m.filter(col("rank").eq(col("m")))?
        .select_columns(&["node"])
}

/// One jump inside a set where every pointer is also a node.
fn hop_inner(cur: DataFrame) -> Result<DataFrame> {
    let other = cur
        .clone()
        .select(vec![col("node").alias("o_node"), col("ptr").alias("o_ptr")])?;
    cur.join(other, JoinType::Inner, &["ptr"], &["o_node"], None)?
        .select(vec![col("node"), col("o_ptr").alias("ptr")])
}

fn min2(a: Expr, b: Expr) -> Result<Expr> {
    when(a.clone().lt_eq(b.clone()), a).otherwise(b)
}

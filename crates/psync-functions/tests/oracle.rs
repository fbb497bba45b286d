//! `last_seen`, `latest` and `last_seen_struct` checked three ways on random data:
//!
//! * grouped (`GROUP BY g`): the native `GroupsAccumulator`,
//! * ungrouped (`WHERE g = x`, no `GROUP BY`) and as a window function over
//!   `PARTITION BY g`: the per-row `Accumulator`,
//! * DataFusion built-ins as the oracle: `last_value(.. ORDER BY ..) IGNORE NULLS`
//!   for `last_seen`, `row_number() OVER (.. DESC NULLS LAST) = 1` for `latest`.
//!
//! Value and key domains are tiny so that NULL keys, NULL values and full key
//! ties are common; rows are spread over several partitions and small batches.
//! The same comparison runs with partial aggregation skipped (`convert_to_state`
//! + `merge_batch`), and a large run checks spilling under a memory limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext, col};
use psync_functions::SinglePhaseWideAggregates;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------
// Random input
// ---------------------------------------------------------------------------

/// One input row. `n` turns the struct arguments into a NULL struct, `f` is the
/// aggregate FILTER (NULL = filtered out).
#[derive(Debug, Clone)]
struct Row {
    g: i64,
    k1: Option<i64>,
    k2: Option<i32>,
    v: Option<i64>,
    s: Option<String>,
    n: bool,
    f: Option<bool>,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("k1", DataType::Int64, true),
        Field::new("k2", DataType::Int32, true),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Boolean, false),
        Field::new("f", DataType::Boolean, true),
        Field::new("st", DataType::Struct(struct_fields()), true),
    ]))
}

/// The fields of the `st` column: `st = {x: v, y: s}`, NULL where `n`.
fn struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("y", DataType::Utf8, true),
    ])
}

fn pick<T: Clone>(rng: &mut ChaCha8Rng, from: &[T]) -> T {
    from[rng.random_range(0..from.len())].clone()
}

/// Rows with small domains: NULLs and full ties of (k1, k2) are frequent, and the
/// extremes (`i64::MIN` right above NULL, `i64::MAX`) are present.
fn random_rows(rng: &mut ChaCha8Rng, rows: usize, groups: i64) -> Vec<Row> {
    const K1: [Option<i64>; 7] = [
        None,
        Some(i64::MIN),
        Some(-1),
        Some(0),
        Some(1),
        Some(2),
        Some(i64::MAX),
    ];
    const K2: [Option<i32>; 5] = [None, Some(i32::MIN), Some(0), Some(1), Some(2)];
    const V: [Option<i64>; 7] = [
        None,
        None,
        Some(i64::MIN),
        Some(-1),
        Some(0),
        Some(1),
        Some(2),
    ];
    const S: [Option<&str>; 7] = [
        None,
        None,
        Some(""),
        Some("a"),
        Some("ab"),
        Some("b"),
        Some("é"),
    ];
    const F: [Option<bool>; 4] = [None, Some(false), Some(true), Some(true)];
    // Some seeds use a narrower key domain, making full ties the rule.
    let narrow = rng.random_bool(0.3);
    (0..rows)
        .map(|_| Row {
            g: rng.random_range(0..groups),
            k1: if narrow {
                pick(rng, &K1[..2])
            } else {
                pick(rng, &K1)
            },
            k2: if narrow {
                pick(rng, &K2[..2])
            } else {
                pick(rng, &K2)
            },
            v: pick(rng, &V),
            s: pick(rng, &S).map(str::to_string),
            n: rng.random_bool(0.15),
            f: pick(rng, &F),
        })
        .collect()
}

fn batch(rows: &[Row]) -> RecordBatch {
    let v: ArrayRef = Arc::new(rows.iter().map(|r| r.v).collect::<Int64Array>());
    let s: ArrayRef = Arc::new(rows.iter().map(|r| r.s.as_deref()).collect::<StringArray>());
    // A NULL struct row keeps its children's values, as a Parquet reader may
    // hand them over: the functions must not look through the parent's NULL.
    let st = StructArray::new(
        struct_fields(),
        vec![v.clone(), s.clone()],
        Some(NullBuffer::from_iter(rows.iter().map(|r| !r.n))),
    );
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.g))),
        Arc::new(rows.iter().map(|r| r.k1).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.k2).collect::<Int32Array>()),
        v,
        s,
        Arc::new(rows.iter().map(|r| Some(r.n)).collect::<BooleanArray>()),
        Arc::new(rows.iter().map(|r| r.f).collect::<BooleanArray>()),
        Arc::new(st),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

/// Spreads `rows` over `partitions` partitions at random, each cut into batches of
/// 1..=max_batch rows. With `sorted`, every partition is sorted by `g` and the
/// table declares that order, so that `GROUP BY g` streams (`EmitTo::First`).
fn mem_table(
    rng: &mut ChaCha8Rng,
    rows: &[Row],
    partitions: usize,
    max_batch: usize,
    sorted: bool,
) -> Arc<MemTable> {
    let mut parts: Vec<Vec<Row>> = vec![vec![]; partitions];
    for r in rows {
        parts[rng.random_range(0..partitions)].push(r.clone());
    }
    if sorted {
        for p in &mut parts {
            p.sort_by_key(|r| r.g);
        }
    }
    let parts: Vec<Vec<RecordBatch>> = parts
        .iter()
        .map(|p| {
            let mut out = vec![];
            let mut rest = p.as_slice();
            while !rest.is_empty() {
                let take = rng.random_range(1..=max_batch).min(rest.len());
                out.push(batch(&rest[..take]));
                rest = &rest[take..];
            }
            out
        })
        .collect();
    let table = MemTable::try_new(schema(), parts).unwrap();
    Arc::new(if sorted {
        table.with_sort_order(vec![vec![col("g").sort(true, false)]])
    } else {
        table
    })
}

// ---------------------------------------------------------------------------
// Sessions and query helpers
// ---------------------------------------------------------------------------

/// How the grouped aggregation is planned and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// DataFusion's default: Partial -> hash repartition -> FinalPartitioned
    /// (`update_batch`, `state`, `merge_batch`).
    TwoPhase,
    /// The partial phase gives up at once and passes `convert_to_state` rows on.
    SkipPartial,
    /// Input sorted by `g`: streaming aggregation with `EmitTo::First`.
    SortedInput,
    /// With the crate's `SinglePhaseWideAggregates` rule, as the engine runs it:
    /// grouped `last_seen_struct` aggregates raw rows in one phase.
    SinglePhase,
}

fn config(mode: Mode, batch_size: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_batch_size(batch_size)
        .with_target_partitions(4);
    if mode == Mode::SkipPartial {
        let exec = &mut config.options_mut().execution;
        // datafusion.execution.skip_partial_aggregation_probe_rows_threshold
        exec.skip_partial_aggregation_probe_rows_threshold = 1;
        // datafusion.execution.skip_partial_aggregation_probe_ratio_threshold
        exec.skip_partial_aggregation_probe_ratio_threshold = 0.0;
    }
    config
}

/// A session over `table` registered as `t`, with an optional memory pool limit.
fn context(
    mode: Mode,
    batch_size: usize,
    memory_limit: Option<usize>,
    table: Arc<MemTable>,
) -> SessionContext {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = memory_limit {
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
    }
    let mut state = SessionStateBuilder::new()
        .with_config(config(mode, batch_size))
        .with_runtime_env(runtime.build_arc().unwrap())
        .with_default_features();
    if mode == Mode::SinglePhase {
        state = state.with_physical_optimizer_rule(Arc::new(SinglePhaseWideAggregates));
    }
    let ctx = SessionContext::new_with_state(state.build());
    psync_functions::register_all(&ctx);
    ctx.register_table("t", table).unwrap();
    ctx
}

/// Checks that `mode` really shaped the plan of a grouped query.
fn assert_mode(mode: Mode, out: &Output, note: &str) {
    let has = |s: &str| out.plan.contains(s);
    let ok = match mode {
        Mode::TwoPhase => has("mode=Partial") && has("mode=FinalPartitioned"),
        Mode::SkipPartial => has("mode=Partial"),
        Mode::SortedInput => has("ordering_mode=Sorted"),
        Mode::SinglePhase => has("mode=SinglePartitioned") && !has("mode=Partial"),
    };
    assert!(ok, "{note}: plan does not match {mode:?}:\n{}", out.plan);
    let skipped = out.metric("skipped_aggregation_rows");
    if mode != Mode::SkipPartial {
        assert_eq!(
            skipped, 0,
            "{note}: partial aggregation skipped unexpectedly"
        );
    }
}

/// One result cell rendered as text; `None` is SQL NULL.
type Cell = Option<String>;

fn cell(col: &ArrayRef, row: usize) -> Cell {
    let v = ScalarValue::try_from_array(col, row).unwrap();
    (!v.is_null()).then(|| v.to_string())
}

/// Every row of `batches` as text cells.
fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| b.columns().iter().map(|c| cell(c, r)).collect())
        })
        .collect()
}

/// A query's rows, the counters of its plan summed by name, and the plan itself.
struct Output {
    rows: Vec<Vec<Cell>>,
    metrics: HashMap<String, usize>,
    plan: String,
}

impl Output {
    fn metric(&self, name: &str) -> usize {
        self.metrics.get(name).copied().unwrap_or(0)
    }
}

async fn run(ctx: &SessionContext, sql: &str) -> Output {
    let plan = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"))
        .create_physical_plan()
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let batches = collect(plan.clone(), ctx.task_ctx())
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let mut metrics = HashMap::new();
    sum_metrics(plan.as_ref(), &mut metrics);
    Output {
        rows: rows_of(&batches),
        metrics,
        plan: displayable(plan.as_ref()).indent(false).to_string(),
    }
}

fn sum_metrics(plan: &dyn ExecutionPlan, out: &mut HashMap<String, usize>) {
    if let Some(set) = plan.metrics() {
        for m in set.iter() {
            // Counters only: timestamps and gauges do not add up.
            if let MetricValue::Count { .. }
            | MetricValue::SpillCount(_)
            | MetricValue::SpilledRows(_)
            | MetricValue::SpilledBytes(_) = m.value()
            {
                *out.entry(m.value().name().to_string()).or_default() += m.value().as_usize();
            }
        }
    }
    for child in plan.children() {
        sum_metrics(child.as_ref(), out);
    }
}

async fn query(ctx: &SessionContext, sql: &str) -> Vec<Vec<Cell>> {
    run(ctx, sql).await.rows
}

/// `g -> the rest of the row`, for results whose first column is `g`.
fn by_group(rows: Vec<Vec<Cell>>) -> BTreeMap<i64, Vec<Cell>> {
    rows.into_iter()
        .map(|mut r| {
            let g = r.remove(0).expect("g is never NULL").parse().unwrap();
            (g, r)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The columns under test and their oracles
// ---------------------------------------------------------------------------

/// How the expected value of a column is computed with DataFusion built-ins.
enum Oracle {
    /// `last_value(value ORDER BY keys.., value) IGNORE NULLS` (FILTER applied by
    /// folding it into `value`: a filtered-out row is a NULL value, which
    /// `last_seen` skips anyway).
    LastSeen {
        value: &'static str,
        keys: &'static [&'static str],
    },
    /// `row_number() OVER (ORDER BY keys.. DESC NULLS LAST, value DESC NULLS LAST) = 1`
    /// over the rows passing `filter`.
    Latest {
        value: &'static str,
        keys: &'static [&'static str],
        filter: Option<&'static str>,
    },
}

struct Col {
    name: &'static str,
    /// The aggregate under test; `{over}` marks where a window clause goes.
    expr: &'static str,
    /// Whether `expr` can also run as a window function (no FILTER there).
    window: bool,
    oracle: Oracle,
}

const K12: &[&str] = &["k1", "k2"];
const K1: &[&str] = &["k1"];
const V_OR_NULL: &str = "CASE WHEN n THEN NULL ELSE v END";
const S_OR_NULL: &str = "CASE WHEN n THEN NULL ELSE s END";
const V_IF_F: &str = "CASE WHEN f THEN v END";

fn columns() -> Vec<Col> {
    use Oracle::{LastSeen, Latest};
    vec![
        Col {
            name: "ls_v",
            expr: "last_seen(v, k1, k2){over}",
            window: true,
            oracle: LastSeen {
                value: "v",
                keys: K12,
            },
        },
        Col {
            name: "ls_s",
            expr: "last_seen(s, k1, k2){over}",
            window: true,
            oracle: LastSeen {
                value: "s",
                keys: K12,
            },
        },
        Col {
            name: "ls_s_view",
            expr: "last_seen(arrow_cast(s, 'Utf8View'), k1, k2){over}",
            window: true,
            oracle: LastSeen {
                value: "s",
                keys: K12,
            },
        },
        Col {
            name: "ls1_v",
            expr: "last_seen(v, k1){over}",
            window: true,
            oracle: LastSeen {
                value: "v",
                keys: K1,
            },
        },
        Col {
            name: "lt_v",
            expr: "latest(v, k1, k2){over}",
            window: true,
            oracle: Latest {
                value: "v",
                keys: K12,
                filter: None,
            },
        },
        Col {
            name: "lt_s",
            expr: "latest(s, k1, k2){over}",
            window: true,
            oracle: Latest {
                value: "s",
                keys: K12,
                filter: None,
            },
        },
        Col {
            name: "lt1_s",
            expr: "latest(s, k1){over}",
            window: true,
            oracle: Latest {
                value: "s",
                keys: K1,
                filter: None,
            },
        },
        Col {
            name: "st_x",
            expr: "get_field(last_seen_struct(named_struct('x', v, 'y', s), k1, k2){over}, 'x')",
            window: true,
            oracle: LastSeen {
                value: "v",
                keys: K12,
            },
        },
        Col {
            name: "st_y",
            expr: "get_field(last_seen_struct(named_struct('x', v, 'y', s), k1, k2){over}, 'y')",
            window: true,
            oracle: LastSeen {
                value: "s",
                keys: K12,
            },
        },
        // A NULL struct row counts as NULL in every field.
        Col {
            name: "stn_x",
            expr: "get_field(last_seen_struct(CASE WHEN n THEN NULL ELSE named_struct('x', v, 'y', s) END, k1, k2){over}, 'x')",
            window: true,
            oracle: LastSeen {
                value: V_OR_NULL,
                keys: K12,
            },
        },
        Col {
            name: "stn_y",
            expr: "get_field(last_seen_struct(CASE WHEN n THEN NULL ELSE named_struct('x', v, 'y', s) END, k1, k2){over}, 'y')",
            window: true,
            oracle: LastSeen {
                value: S_OR_NULL,
                keys: K12,
            },
        },
        // The same through a struct column whose NULL rows keep child values.
        Col {
            name: "stc_x",
            expr: "get_field(last_seen_struct(st, k1, k2){over}, 'x')",
            window: true,
            oracle: LastSeen {
                value: V_OR_NULL,
                keys: K12,
            },
        },
        Col {
            name: "stc_y",
            expr: "get_field(last_seen_struct(st, k1, k2){over}, 'y')",
            window: true,
            oracle: LastSeen {
                value: S_OR_NULL,
                keys: K12,
            },
        },
        Col {
            name: "ls_v_filtered",
            expr: "last_seen(v, k1, k2) FILTER (WHERE f)",
            window: false,
            oracle: LastSeen {
                value: V_IF_F,
                keys: K12,
            },
        },
        Col {
            name: "lt_v_filtered",
            expr: "latest(v, k1, k2) FILTER (WHERE f)",
            window: false,
            oracle: Latest {
                value: "v",
                keys: K12,
                filter: Some("f"),
            },
        },
        Col {
            name: "st_x_filtered",
            expr: "get_field(last_seen_struct(named_struct('x', v, 'y', s), k1, k2) FILTER (WHERE f), 'x')",
            window: false,
            oracle: LastSeen {
                value: V_IF_F,
                keys: K12,
            },
        },
    ]
}

fn aggregate(col: &Col, over: &str) -> String {
    col.expr.replace("{over}", over)
}

fn select_list(cols: &[Col], over: &str) -> String {
    cols.iter()
        .map(|c| format!("{} AS {}", aggregate(c, over), c.name))
        .collect::<Vec<_>>()
        .join(",\n  ")
}

fn last_seen_oracle(value: &str, keys: &[&str]) -> String {
    let order: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} ASC NULLS FIRST"))
        .chain([format!("{value} ASC NULLS FIRST")])
        .collect();
    format!(
        "last_value({value} ORDER BY {}) IGNORE NULLS",
        order.join(", ")
    )
}

fn latest_oracle_sql(value: &str, keys: &[&str], filter: Option<&str>) -> String {
    let order: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} DESC NULLS LAST"))
        .chain([format!("{value} DESC NULLS LAST")])
        .collect();
    let filter = filter.map_or(String::new(), |f| format!(" WHERE {f}"));
    format!(
        "SELECT g, x FROM (
           SELECT g, {value} AS x,
                  row_number() OVER (PARTITION BY g ORDER BY {}) AS rn
           FROM t{filter}
         ) WHERE rn = 1 ORDER BY g",
        order.join(", ")
    )
}

/// The expected value of every column for every group, from DataFusion built-ins.
async fn oracle(
    ctx: &SessionContext,
    cols: &[Col],
    groups: &BTreeSet<i64>,
) -> BTreeMap<i64, Vec<Cell>> {
    let mut out: BTreeMap<i64, Vec<Cell>> = groups
        .iter()
        .map(|&g| (g, vec![None; cols.len()]))
        .collect();
    let last_seen: Vec<(usize, String)> = cols
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.oracle {
            Oracle::LastSeen { value, keys } => Some((i, last_seen_oracle(value, keys))),
            Oracle::Latest { .. } => None,
        })
        .collect();
    let list: Vec<String> = last_seen
        .iter()
        .map(|(i, e)| format!("{e} AS o{i}"))
        .collect();
    let sql = format!("SELECT g, {} FROM t GROUP BY g ORDER BY g", list.join(", "));
    for (g, row) in by_group(query(ctx, &sql).await) {
        for ((i, _), v) in last_seen.iter().zip(row) {
            out.get_mut(&g).unwrap()[*i] = v;
        }
    }
    for (i, c) in cols.iter().enumerate() {
        if let Oracle::Latest {
            value,
            keys,
            filter,
        } = c.oracle
        {
            for (g, mut row) in by_group(query(ctx, &latest_oracle_sql(value, keys, filter)).await)
            {
                out.get_mut(&g).unwrap()[i] = row.pop().unwrap();
            }
        }
    }
    out
}

/// Compares two `g -> row` maps column by column, naming the first difference.
fn assert_same(
    what: &str,
    ctx_note: &str,
    cols: &[Col],
    got: &BTreeMap<i64, Vec<Cell>>,
    want: &BTreeMap<i64, Vec<Cell>>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what} ({ctx_note}): groups differ"
    );
    for (g, want_row) in want {
        let got_row = &got[g];
        for (i, c) in cols.iter().enumerate() {
            assert_eq!(
                got_row[i], want_row[i],
                "{what} ({ctx_note}): column {} = {} differs in group {g}",
                c.name, c.expr
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The random comparison
// ---------------------------------------------------------------------------

/// What one seed exercised, summed over seeds to check that the runs mean something.
#[derive(Default, Debug)]
struct Coverage {
    rows: usize,
    non_null_cells: usize,
    skipped_aggregation_rows: usize,
}

async fn check_seed(seed: u64, mode: Mode, cov: &mut Coverage) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = rng.random_range(1..=8);
    let n_rows = rng.random_range(1..=300);
    let rows = random_rows(&mut rng, n_rows, groups);
    let table = mem_table(&mut rng, &rows, 4, 10, mode == Mode::SortedInput);
    let ctx = context(mode, 7, None, table);
    let note = format!("seed {seed}, {mode:?}, {n_rows} rows");
    let cols = columns();
    let present: BTreeSet<i64> = rows.iter().map(|r| r.g).collect();

    // (a) grouped: the native GroupsAccumulator.
    let sql = format!(
        "SELECT g,\n  {}\nFROM t GROUP BY g ORDER BY g",
        select_list(&cols, "")
    );
    let out = run(&ctx, &sql).await;
    assert_mode(mode, &out, &note);
    cov.skipped_aggregation_rows += out.metric("skipped_aggregation_rows");
    let grouped = by_group(out.rows);

    // (c) the oracle.
    let want = oracle(&ctx, &cols, &present).await;
    assert_same(
        "GROUP BY (GroupsAccumulator)",
        &note,
        &cols,
        &grouped,
        &want,
    );

    // (b) the per-row Accumulator, ungrouped, one query per group.
    let list = select_list(&cols, "");
    let mut ungrouped = BTreeMap::new();
    for &g in &present {
        let mut rows = query(&ctx, &format!("SELECT\n  {list}\nFROM t WHERE g = {g}")).await;
        assert_eq!(rows.len(), 1, "{note}: ungrouped aggregate returns one row");
        ungrouped.insert(g, rows.pop().unwrap());
    }
    assert_same("ungrouped (Accumulator)", &note, &cols, &ungrouped, &want);

    // (b') the per-row Accumulator as a window function over each group.
    let wcols: Vec<Col> = cols.into_iter().filter(|c| c.window).collect();
    let sql = format!(
        "SELECT * EXCLUDE (rn) FROM (
           SELECT g, row_number() OVER (PARTITION BY g) AS rn,
             {}
           FROM t
         ) WHERE rn = 1 ORDER BY g",
        select_list(&wcols, " OVER (PARTITION BY g)")
    );
    let windowed = by_group(query(&ctx, &sql).await);
    let wwant = oracle(&ctx, &wcols, &present).await;
    assert_same("window (Accumulator)", &note, &wcols, &windowed, &wwant);

    cov.rows += n_rows;
    cov.non_null_cells += want.values().flatten().filter(|c| c.is_some()).count();
}

async fn check_seeds(seeds: std::ops::Range<u64>, mode: Mode) {
    let mut cov = Coverage::default();
    for seed in seeds {
        check_seed(seed, mode, &mut cov).await;
    }
    assert!(cov.rows > 1000 && cov.non_null_cells > 100, "{cov:?}");
    if mode == Mode::SkipPartial {
        assert!(
            cov.skipped_aggregation_rows > cov.rows / 2,
            "partial aggregation was not skipped: {cov:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_data_matches_oracle() {
    check_seeds(0..16, Mode::TwoPhase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_data_matches_oracle_with_partial_aggregation_skipped() {
    check_seeds(100..116, Mode::SkipPartial).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_data_matches_oracle_with_sorted_input() {
    check_seeds(200..216, Mode::SortedInput).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_data_matches_oracle_with_single_phase_rule() {
    check_seeds(300..316, Mode::SinglePhase).await;
}

// ---------------------------------------------------------------------------
// Spilling
// ---------------------------------------------------------------------------

/// 200k groups under a 20 MB pool: the grouped aggregation must spill (state ->
/// sorted spill files -> merge back with `merge_batch` and `EmitTo::First`) and
/// still agree with the oracle, which runs without a limit. Both the default
/// two-phase plan and the engine's single-phase plan are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spills_under_memory_limit_and_matches_oracle() {
    const GROUPS: i64 = 200_000;
    const LIMIT: usize = 20 << 20;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let rows = random_rows(&mut rng, 2 * GROUPS as usize, GROUPS);
    let table = mem_table(&mut rng, &rows, 4, 4096, false);
    let present: BTreeSet<i64> = rows.iter().map(|r| r.g).collect();

    let cols: Vec<Col> = columns()
        .into_iter()
        .filter(|c| ["ls_v", "lt_s", "st_y", "stn_x", "stc_y"].contains(&c.name))
        .collect();
    let unlimited = context(Mode::TwoPhase, 8192, None, table.clone());
    let want = oracle(&unlimited, &cols, &present).await;
    assert_eq!(want.len(), present.len());

    let sql = format!("SELECT g,\n  {}\nFROM t GROUP BY g", select_list(&cols, ""));
    for mode in [Mode::TwoPhase, Mode::SinglePhase] {
        let limited = context(mode, 1024, Some(LIMIT), table.clone());
        let out = run(&limited, &sql).await;
        let note = format!("200k groups, {mode:?}");
        assert_mode(mode, &out, &note);
        assert!(
            out.metric("spill_count") > 0,
            "{note}: expected the aggregation to spill under {LIMIT} bytes: {:?}",
            out.metrics
        );
        assert_same(
            "spilling GROUP BY",
            &note,
            &cols,
            &by_group(out.rows),
            &want,
        );
    }
}

// ---------------------------------------------------------------------------
// Hand-picked cases
// ---------------------------------------------------------------------------

/// `expr` over `VALUES rows AS t(columns)`, grouped (one group) and ungrouped.
async fn grouped_and_ungrouped(expr: &str, columns: &str, rows: &str) -> [Cell; 2] {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    psync_functions::register_all(&ctx);
    let values = format!("(SELECT 0 AS g, * FROM (VALUES {rows}) AS u({columns}))");
    let grouped = query(&ctx, &format!("SELECT g, {expr} FROM {values} GROUP BY g")).await;
    let ungrouped = query(&ctx, &format!("SELECT {expr} FROM {values}")).await;
    assert_eq!(grouped.len(), 1, "{expr} over {rows}");
    assert_eq!(ungrouped.len(), 1, "{expr} over {rows}");
    [grouped[0][1].clone(), ungrouped[0][0].clone()]
}

const MIN: &str = "(-9223372036854775807 - 1)";
const MAX: &str = "9223372036854775807";

#[tokio::test]
async fn hand_picked_orders_and_ties() {
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        // A NULL key is below every value, i64::MIN included, whatever the row order.
        (
            "last_seen(v, k1, k2)",
            format!("(1, NULL, 0), (2, {MIN}, 0)"),
            Some("2"),
        ),
        (
            "last_seen(v, k1, k2)",
            format!("(2, {MIN}, 0), (1, NULL, 0)"),
            Some("2"),
        ),
        (
            "latest(v, k1, k2)",
            format!("(2, {MIN}, 0), (1, NULL, {MAX})"),
            Some("2"),
        ),
        // Lexicographic: the first key decides, later keys only break its ties.
        (
            "last_seen(v, k1, k2)",
            "(1, 2, 0), (2, 1, 9)".into(),
            Some("1"),
        ),
        (
            "last_seen(v, k1, k2)",
            format!("(1, 1, NULL), (2, 1, {MIN})"),
            Some("2"),
        ),
        (
            "last_seen(v, k1, k2)",
            format!("(1, {MAX}, {MIN}), (2, {MAX}, NULL)"),
            Some("1"),
        ),
        // latest keeps a NULL from the latest row, last_seen skips it.
        ("latest(v, k1, k2)", "(1, 1, 0), (NULL, 2, 0)".into(), None),
        (
            "last_seen(v, k1, k2)",
            "(1, 1, 0), (NULL, 2, 0)".into(),
            Some("1"),
        ),
        // Full ties: the greatest value wins, NULL lowest.
        (
            "last_seen(v, k1, k2)",
            "(1, 5, 5), (3, 5, 5), (2, 5, 5)".into(),
            Some("3"),
        ),
        (
            "latest(v, k1, k2)",
            "(NULL, 5, 5), (1, 5, 5)".into(),
            Some("1"),
        ),
        (
            "latest(v, k1, k2)",
            "(1, 5, 5), (NULL, 5, 5)".into(),
            Some("1"),
        ),
        (
            "latest(v, k1, k2)",
            "(1, NULL, NULL), (3, NULL, NULL), (2, NULL, NULL)".into(),
            Some("3"),
        ),
        (
            "last_seen(v, k1, k2)",
            "(-1, NULL, NULL), (NULL, NULL, NULL)".into(),
            Some("-1"),
        ),
        // Nothing to see.
        (
            "last_seen(v, k1, k2)",
            "(NULL, 1, 1), (NULL, 2, 2)".into(),
            None,
        ),
        ("latest(v, k1, k2)", "(NULL, NULL, NULL)".into(), None),
        // Strings tie-break by byte order.
        (
            "last_seen(CAST(v AS VARCHAR) || 'x', k1, k2)",
            "(10, 1, 1), (9, 1, 1)".into(),
            Some("9x"),
        ),
    ];
    for (expr, rows, want) in cases {
        let got = grouped_and_ungrouped(expr, "v, k1, k2", &rows).await;
        let want = want.map(str::to_string);
        assert_eq!(
            got,
            [want.clone(), want],
            "{expr} over {rows} (grouped, ungrouped)"
        );
    }
}

#[tokio::test]
async fn hand_picked_order_key_types() {
    let cases = [
        "(1, DATE '2024-01-02'), (2, DATE '2024-01-01')",
        "(2, DATE '1969-12-31'), (1, DATE '1970-01-01')",
        "(2, NULL), (1, DATE '1969-12-31')",
        "(1, TIMESTAMP '2024-01-01 00:00:01'), (2, TIMESTAMP '2024-01-01 00:00:00')",
        "(2, TIMESTAMP '1969-12-31 23:59:59'), (1, TIMESTAMP '1970-01-01 00:00:00')",
        "(1, arrow_cast(TIMESTAMP '2024-01-01 00:00:01', 'Timestamp(Millisecond, Some(\"UTC\"))')), \
         (2, arrow_cast(TIMESTAMP '2024-01-01 00:00:00', 'Timestamp(Millisecond, Some(\"UTC\"))'))",
        "(1, arrow_cast(DATE '2024-01-02', 'Date64')), (2, arrow_cast(DATE '2024-01-01', 'Date64'))",
        "(1, CAST(10 AS DECIMAL(20, 0))), (2, CAST(9 AS DECIMAL(20, 0)))",
        "(1, CAST(-9 AS DECIMAL(10, 0))), (2, CAST(-10 AS DECIMAL(10, 0)))",
        "(1, arrow_cast(4000000000, 'UInt32')), (2, arrow_cast(1, 'UInt32'))",
        "(1, arrow_cast(-1, 'Int8')), (2, arrow_cast(-2, 'Int8'))",
        "(1, arrow_cast(70000, 'Int32')), (2, NULL)",
    ];
    for rows in cases {
        for f in ["last_seen", "latest"] {
            let got = grouped_and_ungrouped(&format!("{f}(v, k)"), "v, k", rows).await;
            let want = Some("1".to_string());
            assert_eq!(
                got,
                [want.clone(), want],
                "{f} over {rows} (grouped, ungrouped)"
            );
        }
    }
}

#[tokio::test]
async fn hand_picked_struct_fields_come_from_different_rows() {
    let rows = "(1, 'p', 1), (NULL, 'q', 2), (NULL, NULL, 3), (0, NULL, 0)";
    let st = "last_seen_struct(named_struct('a', a, 'b', b), k)";
    for (field, want) in [("a", "1"), ("b", "q")] {
        let got =
            grouped_and_ungrouped(&format!("get_field({st}, '{field}')"), "a, b, k", rows).await;
        let want = Some(want.to_string());
        assert_eq!(got, [want.clone(), want], "field {field}");
    }
    // The result is a struct of nullable fields named like the argument's.
    let ctx = SessionContext::new();
    psync_functions::register_all(&ctx);
    let df = ctx
        .sql(&format!(
            "SELECT {st} AS s FROM (VALUES {rows}) AS t(a, b, k)"
        ))
        .await
        .unwrap();
    let DataType::Struct(fields) = df.schema().field(0).data_type().clone() else {
        panic!("not a struct: {}", df.schema())
    };
    let names: Vec<_> = fields
        .iter()
        .map(|f| (f.name().as_str(), f.is_nullable()))
        .collect();
    assert_eq!(names, [("a", true), ("b", true)]);
}

#[tokio::test]
async fn empty_input_gives_null() {
    for expr in [
        "last_seen(v, k1, k2)",
        "latest(v, k1, k2)",
        "get_field(last_seen_struct(named_struct('x', v), k1, k2), 'x')",
    ] {
        let ctx = SessionContext::new();
        psync_functions::register_all(&ctx);
        let rows = query(
            &ctx,
            &format!("SELECT {expr} FROM (VALUES (1, 1, 1)) AS t(v, k1, k2) WHERE v > 1"),
        )
        .await;
        assert_eq!(rows, [[None]], "{expr}");
    }
}

// ---------------------------------------------------------------------------
// Plan-time errors
// ---------------------------------------------------------------------------

/// The error `sql` fails with while planning (it must not get to execution).
async fn plan_error(ctx: &SessionContext, sql: &str) -> String {
    let planned: Result<_> = async { ctx.sql(sql).await?.create_physical_plan().await }.await;
    match planned {
        Ok(_) => panic!("{sql}: planned without an error"),
        Err(e) => {
            assert!(
                matches!(e.find_root(), DataFusionError::Plan(_)),
                "{sql}: not a plan error: {e:?}"
            );
            e.to_string()
        }
    }
}

#[tokio::test]
async fn plan_time_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows = random_rows(&mut rng, 20, 3);
    let ctx = context(
        Mode::TwoPhase,
        7,
        None,
        mem_table(&mut rng, &rows, 2, 5, false),
    );
    let cases: [(&str, &[&str]); 9] = [
        (
            "SELECT last_seen(v, s) FROM t",
            &["last_seen", "order argument", "Utf8"],
        ),
        (
            "SELECT g, latest(v, k1, s) FROM t GROUP BY g",
            &["latest", "order argument", "Utf8"],
        ),
        (
            "SELECT g, last_seen_struct(named_struct('x', v), k1, s) FROM t GROUP BY g",
            &["last_seen_struct", "order argument"],
        ),
        (
            "SELECT last_seen(v, CAST(k1 AS DOUBLE)) FROM t",
            &["order argument", "Float64"],
        ),
        (
            "SELECT last_seen(v, CAST(k1 AS DECIMAL(10, 2))) FROM t",
            &["order argument", "Decimal"],
        ),
        (
            "SELECT last_seen(v, f) FROM t",
            &["order argument", "Boolean"],
        ),
        (
            "SELECT g, last_seen_struct(v, k1) FROM t GROUP BY g",
            &["last_seen_struct", "struct", "Int64"],
        ),
        (
            "SELECT last_seen_struct(s, k1, k2) FROM t",
            &["last_seen_struct", "struct", "Utf8"],
        ),
        ("SELECT last_seen(v) FROM t", &["last_seen", "order key"]),
    ];
    for (sql, needles) in cases {
        let msg = plan_error(&ctx, sql).await;
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{sql}: {needle:?} not in error: {msg}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Stored states: last_seen_state / last_seen_merge
// ---------------------------------------------------------------------------

/// States computed over parts of the rows and merged (twice, so a merge's own
/// output is merged too) give what `last_seen_struct` gives over all rows, in
/// every planning mode, grouped and ungrouped.
async fn check_state_round_trip(seed: u64, mode: Mode) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = rng.random_range(1..=8);
    let n_rows = rng.random_range(1..=300);
    let rows = random_rows(&mut rng, n_rows, groups);
    let table = mem_table(&mut rng, &rows, 4, 10, mode == Mode::SortedInput);
    let ctx = context(mode, 7, None, table);
    let note = format!("seed {seed}, {mode:?}, {n_rows} rows");
    let value = "named_struct('x', v, 'y', s)";
    let direct = by_group(
        query(
            &ctx,
            &format!(
                "SELECT g, r['x'], r['y'] FROM (
                   SELECT g, last_seen_struct({value}, k1, k2) AS r FROM t GROUP BY g
                 ) ORDER BY g"
            ),
        )
        .await,
    );
    let parts =
        format!("SELECT g, f, n, last_seen_state({value}, k1, k2) AS s FROM t GROUP BY g, f, n");
    let halves = format!("SELECT g, f, last_seen_merge(s) AS s FROM ({parts}) GROUP BY g, f");
    let merged = by_group(
        query(
            &ctx,
            &format!(
                "SELECT g, s['x'], s['y'] FROM (
                   SELECT g, last_seen_merge(s) AS s FROM ({halves}) GROUP BY g
                 ) ORDER BY g"
            ),
        )
        .await,
    );
    assert_eq!(merged, direct, "{note}: merged states differ from one pass");
    // The per-row accumulator (ungrouped) merges the same states.
    for (&g, want) in &direct {
        let got = query(
            &ctx,
            &format!(
                "SELECT s['x'], s['y'] FROM (
                   SELECT last_seen_merge(s) AS s FROM ({halves}) WHERE g = {g}
                 )"
            ),
        )
        .await;
        assert_eq!(
            &got[0], want,
            "{note}: ungrouped merge differs in group {g}"
        );
    }
    // A state carries each field's key with its value: never a key without a value.
    let wrong = query(
        &ctx,
        &format!(
            "SELECT count(*) FROM ({parts}) WHERE s['x'] IS NULL AND (s['_k0_x'] IS NOT NULL OR s['_k1_x'] IS NOT NULL)"
        ),
    )
    .await;
    assert_eq!(
        wrong[0][0].as_deref(),
        Some("0"),
        "{note}: key without a value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_states_merge_to_the_one_pass_result() {
    for (seeds, mode) in [
        (400..408, Mode::TwoPhase),
        (408..416, Mode::SkipPartial),
        (416..424, Mode::SortedInput),
        (424..432, Mode::SinglePhase),
    ] {
        for seed in seeds {
            check_state_round_trip(seed, mode).await;
        }
    }
}

#[tokio::test]
async fn merge_rejects_what_is_not_a_state() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows = random_rows(&mut rng, 10, 2);
    let ctx = context(
        Mode::TwoPhase,
        7,
        None,
        mem_table(&mut rng, &rows, 1, 10, false),
    );
    let err = plan_error(&ctx, "SELECT last_seen_merge(st) FROM t").await;
    assert!(err.contains("last_seen_merge"), "{err}");
}

//! The Personas views (`users`, `audience_membership`, `computed_traits`): the
//! seed example of Segment's docs through the real binary, the SQL shell's
//! on-demand views, and a property test of `users` and `audience_membership`
//! against a plainly written model, with shuffled landing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use proptest::prelude::*;
use psync_core::materialize::{MaterializeOptions, NoProgress};
use psync_core::{EngineOptions, View, materialize};

use crate::util::{column_names, materialize_ok, read_rows, rows, run_ok, write_parquet};

const MINUTE: i64 = 60_000_000;
/// 2024-05-01T00:00:00Z in µs.
const T0: i64 = 1_714_521_600_000_000;

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn ts(minutes: &[Option<i64>]) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            minutes
                .iter()
                .map(|m| m.map(|m| T0 + m * MINUTE))
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

fn at(minutes: i64) -> String {
    chrono::DateTime::from_timestamp_micros(T0 + minutes * MINUTE)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The example of Segment's "Engage and Warehouses" page, in a space named `personas_seed`.
fn write_seed_space(lake: &Path) {
    let space = lake.join("personas_seed");
    write_parquet(
        &space.join("identifies/day=2024-05-01/part-0.parquet"),
        vec![
            ("user_id", strs(&[Some("u123"), Some("u123"), None])),
            (
                "first_time_shopper",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            (
                "total_revenue_180_days",
                Arc::new(Float64Array::from(vec![None, Some(450.0), Some(1.0)])),
            ),
            ("timestamp", ts(&[Some(1), Some(2), Some(3)])),
            ("received_at", ts(&[Some(1), Some(2), Some(3)])),
            ("uuid_ts", ts(&[Some(1), Some(2), Some(3)])),
            ("context_library_name", strs(&[Some("engage"); 3])),
        ],
    );
    write_parquet(
        &space.join("audience_entered/part-0.parquet"),
        vec![
            ("user_id", strs(&[Some("u123")])),
            ("event", strs(&[Some("Audience Entered")])),
            ("audience_key", strs(&[Some("first_time_shopper")])),
            (
                "first_time_shopper",
                Arc::new(BooleanArray::from(vec![true])),
            ),
            ("timestamp", ts(&[Some(1)])),
            ("received_at", ts(&[Some(1)])),
            ("uuid_ts", ts(&[Some(1)])),
        ],
    );
    write_parquet(
        &space.join("audience_exited/part-0.parquet"),
        vec![
            ("user_id", strs(&[Some("u123")])),
            ("event", strs(&[Some("Audience Exited")])),
            ("audience_key", strs(&[Some("first_time_shopper")])),
            (
                "first_time_shopper",
                Arc::new(BooleanArray::from(vec![false])),
            ),
            ("timestamp", ts(&[Some(5)])),
            ("received_at", ts(&[Some(5)])),
            ("uuid_ts", ts(&[Some(5)])),
        ],
    );
    // The value sits in the column trait_key names: the 999.0 of the second row
    // is not total_revenue_180_days' value (that row computes orders_30_days).
    write_parquet(
        &space.join("trait_computed/part-0.parquet"),
        vec![
            ("user_id", strs(&[Some("u123"), Some("u123"), Some("u9")])),
            ("event", strs(&[Some("Trait Computed"); 3])),
            (
                "trait_key",
                strs(&[
                    Some("total_revenue_180_days"),
                    Some("orders_30_days"),
                    Some("orders_30_days"),
                ]),
            ),
            (
                "total_revenue_180_days",
                Arc::new(Float64Array::from(vec![Some(450.0), Some(999.0), None])),
            ),
            (
                "orders_30_days",
                Arc::new(Int64Array::from(vec![None, Some(3), Some(1)])),
            ),
            ("timestamp", ts(&[Some(2), Some(4), Some(4)])),
            ("received_at", ts(&[Some(2), Some(4), Some(4)])),
            ("uuid_ts", ts(&[Some(2), Some(4), Some(4)])),
        ],
    );
}

#[test]
fn the_seed_example_gives_users_membership_and_computed_traits() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    run_ok(&["generate", "--case-study", "--dest", lake.to_str().unwrap()]);
    write_seed_space(&lake);
    materialize_ok(&lake, &views, &["--quiet"]);
    let space = views.join("personas_seed");
    assert_eq!(
        column_names(&space.join("users")),
        ["user_id", "first_time_shopper", "total_revenue_180_days"]
    );
    assert_eq!(
        read_rows(&space.join("users")),
        rows(&[&["u123", "true", "450.0"]])
    );
    assert_eq!(
        column_names(&space.join("audience_membership")),
        [
            "user_id",
            "audience_key",
            "in_audience",
            "entered_at",
            "exited_at"
        ]
    );
    assert_eq!(
        read_rows(&space.join("audience_membership")),
        rows(&[&["u123", "first_time_shopper", "false", &at(1), &at(5)]])
    );
    assert_eq!(
        column_names(&space.join("computed_traits")),
        ["user_id", "total_revenue_180_days", "orders_30_days"]
    );
    assert_eq!(
        read_rows(&space.join("computed_traits")),
        rows(&[&["u123", "450.0", "3"], &["u9", "NULL", "1"]])
    );
    // One file per view folder, as for the core views.
    for v in ["users", "audience_membership", "computed_traits"] {
        let names: Vec<_> = std::fs::read_dir(space.join(v))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [format!("{v}.parquet")]);
    }
    // The core views are untouched by the space.
    assert_eq!(read_rows(&views.join("id_graph")).len(), 2);

    // The shell reads the published views by their space and computes them on demand alike.
    let sql = "SELECT user_id, first_time_shopper, total_revenue_180_days FROM personas_seed.users";
    for dest in [Some(views.to_str().unwrap()), None] {
        let mut args = vec!["query", "--source", lake.to_str().unwrap()];
        if let Some(d) = dest {
            args.extend(["--dest", d]);
        }
        args.extend(["--format", "csv", "-c", sql]);
        let out = run_ok(&args);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "user_id,first_time_shopper,total_revenue_180_days\nu123,true,450.0\n",
            "dest {dest:?}"
        );
    }
    let out = run_ok(&[
        "query",
        "--source",
        lake.to_str().unwrap(),
        "--format",
        "csv",
        "-c",
        "SELECT in_audience FROM personas_seed.audience_membership",
        "-c",
        "SELECT count(*) AS n FROM personas_seed.audience_exited",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in_audience\nfalse\nn\n1\n"
    );
}

#[test]
fn a_lake_without_a_space_publishes_no_personas_view() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    run_ok(&["generate", "--case-study", "--dest", lake.to_str().unwrap()]);
    let out = materialize_ok(&lake, &views, &["--views", "id_graph,users", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published: Vec<&str> = report["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["view"].as_str().unwrap())
        .collect();
    assert_eq!(published, ["id_graph"]);
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| { !w.as_str().unwrap().contains("personas") })
    );
}

// ---- property test -----------------------------------------------------------

/// `(timestamp, received_at, uuid_ts)`, each a minute or NULL.
type Key = (Option<i64>, Option<i64>, Option<i64>);

#[derive(Debug, Clone)]
struct Identify {
    user: Option<String>,
    key: Key,
    plan: Option<String>,
    score: Option<i64>,
}

#[derive(Debug, Clone)]
struct AudienceEvent {
    user: Option<String>,
    audience: String,
    entered: bool,
    key: Key,
}

#[derive(Debug, Clone)]
struct Space {
    identifies: Vec<Identify>,
    audience: Vec<AudienceEvent>,
}

fn key() -> impl Strategy<Value = Key> {
    // Few values: ties, full ties included, are common.
    let part = || prop::option::weighted(0.85, 0..4i64);
    (part(), part(), part())
}

/// A key with few values and many NULLs: enter and exit events tie often.
fn tight_key() -> impl Strategy<Value = Key> {
    (
        prop::option::weighted(0.9, 0..3i64),
        prop::option::weighted(0.4, 0..2i64),
        prop::option::weighted(0.3, 0..2i64),
    )
}

fn user() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.92, (0..3u8).prop_map(|i| format!("u{i}")))
}

fn space() -> impl Strategy<Value = Space> {
    let identifies = prop::collection::vec(
        (
            user(),
            key(),
            prop::option::of("[abc]"),
            prop::option::of(0..3i64),
        )
            .prop_map(|(user, key, plan, score)| Identify {
                user,
                key,
                plan,
                score,
            }),
        0..16,
    );
    let audience = prop::collection::vec(
        (
            user(),
            prop::sample::select(vec!["vip", "churn"]),
            any::<bool>(),
            tight_key(),
        )
            .prop_map(|(user, audience, entered, key)| AudienceEvent {
                user,
                audience: audience.into(),
                entered,
                key,
            }),
        0..20,
    );
    (identifies, audience).prop_map(|(identifies, audience)| Space {
        identifies,
        audience,
    })
}

fn text(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".into(), at)
}

/// `users` as SPEC §3.4 says: per user, each trait's last non-NULL value by
/// (timestamp, received_at, uuid_ts), NULL lowest, the greatest value on a full tie.
fn model_users(s: &Space) -> Vec<Vec<String>> {
    let mut per: BTreeMap<&str, Vec<&Identify>> = BTreeMap::new();
    for r in &s.identifies {
        if let Some(u) = &r.user {
            per.entry(u).or_default().push(r);
        }
    }
    let mut out: Vec<Vec<String>> = per
        .into_iter()
        .map(|(u, rows)| {
            let plan = rows
                .iter()
                .filter(|r| r.plan.is_some())
                .max_by(|a, b| (a.key, &a.plan).cmp(&(b.key, &b.plan)))
                .and_then(|r| r.plan.clone());
            let score = rows
                .iter()
                .filter(|r| r.score.is_some())
                .max_by(|a, b| (a.key, a.score).cmp(&(b.key, b.score)))
                .and_then(|r| r.score);
            vec![
                u.to_string(),
                plan.unwrap_or_else(|| "NULL".into()),
                score.map_or_else(|| "NULL".into(), |v| v.to_string()),
            ]
        })
        .collect();
    out.sort();
    out
}

/// `audience_membership`: the latest event decides (a full tie: entered wins),
/// with the last time of each kind.
fn model_membership(s: &Space) -> Vec<Vec<String>> {
    let mut per: BTreeMap<(&str, &str), Vec<&AudienceEvent>> = BTreeMap::new();
    for e in &s.audience {
        if let Some(u) = &e.user {
            per.entry((u, &e.audience)).or_default().push(e);
        }
    }
    let mut out: Vec<Vec<String>> = per
        .into_iter()
        .map(|((u, a), events)| {
            let latest = events
                .iter()
                .max_by(|x, y| (x.key, x.entered).cmp(&(y.key, y.entered)))
                .unwrap();
            let last = |entered: bool| {
                events
                    .iter()
                    .filter(|e| e.entered == entered)
                    .filter_map(|e| e.key.0)
                    .max()
            };
            vec![
                u.to_string(),
                a.to_string(),
                latest.entered.to_string(),
                text(last(true)),
                text(last(false)),
            ]
        })
        .collect();
    out.sort();
    out
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

/// `n` row indices shuffled and dealt into `files` groups.
fn deal(n: usize, files: usize, rng: &mut Lcg) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, rng.next() % (i + 1));
    }
    let mut out = vec![vec![]; files];
    for i in idx {
        out[rng.next() % files].push(i);
    }
    out
}

/// The key columns of some rows as file `f` encodes them (nanoseconds in
/// every third file, upper-case names in file 1).
fn key_columns(keys: &[Key], f: usize) -> Vec<(String, ArrayRef)> {
    let name = |n: &str| if f == 1 { n.to_uppercase() } else { n.into() };
    let col = |get: fn(&Key) -> Option<i64>| -> ArrayRef {
        let micros: Vec<Option<i64>> = keys
            .iter()
            .map(|k| get(k).map(|m| T0 + m * MINUTE))
            .collect();
        if f % 3 == 2 {
            Arc::new(TimestampNanosecondArray::from(
                micros
                    .iter()
                    .map(|m| m.map(|m| m * 1000))
                    .collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
        }
    };
    vec![
        (name("timestamp"), col(|k| k.0)),
        (name("received_at"), col(|k| k.1)),
        (name("uuid_ts"), col(|k| k.2)),
    ]
}

fn owned(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn land(lake: &Path, s: &Space, files: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let dir = |f: usize| lake.join(if f == 1 { "PERSONAS_P" } else { "personas_p" });
    for (f, group) in deal(s.identifies.len(), files, &mut rng)
        .into_iter()
        .enumerate()
    {
        if group.is_empty() {
            continue;
        }
        let rows: Vec<&Identify> = group.iter().map(|i| &s.identifies[*i]).collect();
        let up = |n: &str| if f == 1 { n.to_uppercase() } else { n.into() };
        let mut cols = vec![
            (
                up("user_id"),
                owned(rows.iter().map(|r| r.user.clone()).collect()),
            ),
            (
                up("plan"),
                owned(rows.iter().map(|r| r.plan.clone()).collect()),
            ),
            (
                up("score"),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.score).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
        ];
        cols.extend(key_columns(
            &rows.iter().map(|r| r.key).collect::<Vec<_>>(),
            f,
        ));
        let table = if f == 1 { "IDENTIFIES" } else { "identifies" };
        write(&dir(f).join(table).join(format!("part-{f}.parquet")), cols);
    }
    for entered in [true, false] {
        let idx: Vec<usize> = (0..s.audience.len())
            .filter(|i| s.audience[*i].entered == entered)
            .collect();
        for (f, group) in deal(idx.len(), files, &mut rng).into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let rows: Vec<&AudienceEvent> = group.iter().map(|i| &s.audience[idx[*i]]).collect();
            let mut cols = vec![
                (
                    "user_id".to_string(),
                    owned(rows.iter().map(|r| r.user.clone()).collect()),
                ),
                (
                    "audience_key".to_string(),
                    owned(rows.iter().map(|r| Some(r.audience.clone())).collect()),
                ),
            ];
            cols.extend(key_columns(
                &rows.iter().map(|r| r.key).collect::<Vec<_>>(),
                f,
            ));
            let table = if entered {
                "audience_entered"
            } else {
                "audience_exited"
            };
            write(
                &lake
                    .join("personas_p")
                    .join(table)
                    .join(format!("day=2024-05-0{f}/part-{f}.parquet")),
                cols,
            );
        }
    }
}

fn write(path: &Path, cols: Vec<(String, ArrayRef)>) {
    write_parquet(
        path,
        cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
    );
}

fn check(s: &Space, files: usize, seed: u64, batch_size: usize) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    // A table outside the space, so that the lake is never empty.
    write_parquet(
        &lake.join("tracks/part-0.parquet"),
        vec![("segment_id", strs(&[Some("s1")]))],
    );
    land(&lake, s, files, seed);
    let dest = tmp.path().join("views");
    let opts = MaterializeOptions {
        health: true,
        source_at: Default::default(),
        format: Default::default(),
        source: lake.display().to_string(),
        dest: dest.display().to_string(),
        views: vec![View::Users, View::AudienceMembership],
        lease: Default::default(),
        stop: Default::default(),
        mode: psync_core::RunMode::Full,
        engine: EngineOptions {
            threads: Some(1 + (seed % 3) as usize),
            batch_size: Some(batch_size),
            ..Default::default()
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(materialize(&opts, &NoProgress))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let space = dest.join("personas_p");
    if s.identifies.is_empty() {
        prop_assert!(read_rows(&space.join("users")).is_empty());
    } else {
        prop_assert_eq!(read_rows(&space.join("users")), model_users(s), "users");
    }
    prop_assert_eq!(
        read_rows(&space.join("audience_membership")),
        model_membership(s),
        "audience_membership"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn users_and_membership_match_the_model(
        s in space(),
        files in 1..4usize,
        seed in any::<u64>(),
        batch_size in prop::sample::select(vec![1usize, 3, 8192]),
    ) {
        check(&s, files, seed, batch_size)?;
    }
}

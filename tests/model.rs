//! Property test: random small histories, landed in random files (shuffled rows,
//! upper-case names, string seq, nanosecond timestamps here and there), read
//! with tiny batches and several partitions, against a plainly written model of
//! SPEC §3 (latest by seq/timestamp/uuid_ts with NULL lowest, greatest value on a
//! full tie; chains followed to the end; cycles broken at their oldest edge).
//!
//! The histories, the landing of one file at a time and the model are shared with
//! `incremental.rs`, which lands a history batch by batch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use proptest::prelude::*;
use psync_core::materialize::{MaterializeOptions, NoProgress};
use psync_core::{EngineOptions, View, materialize};

use crate::util::{read_rows, write_parquet};

pub(crate) type Key = (Option<i64>, Option<i64>, Option<i64>);

#[derive(Debug, Clone)]
pub(crate) struct IdRow {
    pub(crate) sid: String,
    pub(crate) canon: String,
    pub(crate) key: Key,
}

#[derive(Debug, Clone)]
pub(crate) struct ExtRow {
    pub(crate) sid: Option<String>,
    pub(crate) kind: String,
    pub(crate) value: String,
    pub(crate) hash: Option<String>,
    pub(crate) key: Key,
}

#[derive(Debug, Clone)]
pub(crate) struct TraitRow {
    pub(crate) sid: Option<String>,
    pub(crate) key: Key,
    pub(crate) name: Option<String>,
    pub(crate) score: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct History {
    pub(crate) ids: Vec<IdRow>,
    pub(crate) ext: Vec<ExtRow>,
    pub(crate) traits: Vec<TraitRow>,
}

fn sid() -> impl Strategy<Value = String> {
    (0..7u8).prop_map(|i| format!("s{i}"))
}

fn key() -> impl Strategy<Value = Key> {
    // Few distinct values so that ties, including full ties, are common.
    let part = || prop::option::weighted(0.85, 0..4i64);
    (part(), part(), part())
}

pub(crate) fn history() -> impl Strategy<Value = History> {
    let ids = prop::collection::vec(
        (sid(), sid(), key()).prop_map(|(sid, canon, key)| IdRow { sid, canon, key }),
        0..14,
    );
    let ext = prop::collection::vec(
        (
            prop::option::weighted(0.9, sid()),
            prop::sample::select(vec!["email", "anon"]),
            0..3u8,
            prop::option::of("[a-f]{2}"),
            key(),
        )
            .prop_map(|(sid, kind, v, hash, key)| ExtRow {
                sid,
                kind: kind.into(),
                value: format!("v{v}"),
                hash,
                key,
            }),
        0..10,
    );
    let traits = prop::collection::vec(
        (
            prop::option::weighted(0.95, sid()),
            key(),
            prop::option::of("[xyz]"),
            prop::option::of(0..3i64),
        )
            .prop_map(|(sid, key, name, score)| TraitRow {
                sid,
                key,
                name,
                score,
            }),
        0..14,
    );
    (ids, ext, traits).prop_map(|(ids, ext, traits)| History { ids, ext, traits })
}

/// How a history lands: file count, row order, and per-file encodings.
#[derive(Debug, Clone)]
pub(crate) struct Landing {
    pub(crate) files: usize,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
    pub(crate) threads: usize,
}

pub(crate) fn landing() -> impl Strategy<Value = Landing> {
    (
        1..4usize,
        any::<u64>(),
        prop::sample::select(vec![1usize, 2, 7]),
        1..4usize,
    )
        .prop_map(|(files, seed, batch_size, threads)| Landing {
            files,
            seed,
            batch_size,
            threads,
        })
}

// ---- the model --------------------------------------------------------------

pub(crate) fn micros(v: i64) -> i64 {
    1_700_000_000_000_000 + v * 1_000_000
}

fn ts_text(v: Option<i64>) -> String {
    match v {
        None => "NULL".into(),
        Some(v) => chrono::DateTime::from_timestamp_micros(micros(v))
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "NULL".into())
}

/// The views of a history, as sorted text rows (NULL as "NULL").
pub(crate) struct Model {
    /// segment_id, canonical_segment_id, timestamp.
    pub(crate) id_graph: Vec<Vec<String>>,
    /// canonical_segment_id, type, value, hash, timestamp.
    pub(crate) ext: Vec<Vec<String>>,
    /// canonical_segment_id, name, score, merged_to.
    pub(crate) traits: Vec<Vec<String>>,
}

pub(crate) fn model(h: &History) -> Model {
    // Latest update per segment_id; on a full key tie the greatest (target, ts, seq, uuid_ts).
    let mut latest: BTreeMap<&str, &IdRow> = BTreeMap::new();
    for r in &h.ids {
        let better = |cur: &IdRow| {
            let a = (r.key, (&r.canon, r.key.1, r.key.0, r.key.2));
            let b = (cur.key, (&cur.canon, cur.key.1, cur.key.0, cur.key.2));
            a > b
        };
        if latest.get(r.sid.as_str()).is_none_or(|cur| better(cur)) {
            latest.insert(&r.sid, r);
        }
    }
    let mut next: BTreeMap<&str, &str> = latest
        .iter()
        .filter(|(s, r)| r.canon != **s)
        .map(|(s, r)| (*s, r.canon.as_str()))
        .collect();
    // Break every cycle at its oldest edge (ties: smallest segment_id).
    loop {
        let mut cycle: Option<Vec<&str>> = None;
        'search: for start in next.keys() {
            let mut path = vec![*start];
            let mut cur = *start;
            while let Some(n) = next.get(cur) {
                if let Some(pos) = path.iter().position(|p| p == n) {
                    cycle = Some(path[pos..].to_vec());
                    break 'search;
                }
                path.push(n);
                cur = n;
            }
        }
        let Some(cycle) = cycle else { break };
        let breaker = cycle
            .iter()
            .min_by_key(|s| (latest[**s].key, **s))
            .copied()
            .unwrap();
        next.remove(breaker);
    }
    let canonical = |s: &str| -> String {
        let mut cur = s;
        while let Some(n) = next.get(cur) {
            cur = n;
        }
        cur.to_string()
    };
    let mut id_graph: Vec<Vec<String>> = latest
        .iter()
        .map(|(s, r)| vec![s.to_string(), canonical(s), ts_text(r.key.1)])
        .collect();
    id_graph.sort();
    let graph: BTreeMap<String, String> = latest
        .keys()
        .map(|s| (s.to_string(), canonical(s)))
        .collect();
    let owner = |s: &str| graph.get(s).cloned().unwrap_or_else(|| s.to_string());

    let mut per_id: BTreeMap<(&str, &str), &ExtRow> = BTreeMap::new();
    for r in h.ext.iter().filter(|r| r.sid.is_some()) {
        let k = (r.kind.as_str(), r.value.as_str());
        let better = |cur: &ExtRow| {
            (r.key, (&r.sid, &r.hash, r.key.1)) > (cur.key, (&cur.sid, &cur.hash, cur.key.1))
        };
        if per_id.get(&k).is_none_or(|cur| better(cur)) {
            per_id.insert(k, r);
        }
    }
    let mut ext: Vec<Vec<String>> = per_id
        .iter()
        .map(|((kind, value), r)| {
            let hash = r
                .hash
                .clone()
                .unwrap_or_else(|| sha1_smol::Sha1::from(format!("{kind}{value}")).hexdigest());
            vec![
                owner(r.sid.as_deref().unwrap()),
                kind.to_string(),
                value.to_string(),
                hash,
                ts_text(r.key.1),
            ]
        })
        .collect();
    ext.sort();

    let mut profiles: BTreeSet<String> = graph.keys().cloned().collect();
    profiles.extend(graph.values().cloned());
    profiles.extend(h.traits.iter().filter_map(|r| r.sid.clone()));
    let mut traits = vec![];
    for p in profiles {
        let merged_to = graph.get(&p).filter(|c| **c != p).cloned();
        let rows: Vec<&TraitRow> = h
            .traits
            .iter()
            .filter(|r| {
                merged_to.is_none() && r.sid.as_deref().map(owner).as_deref() == Some(p.as_str())
            })
            .collect();
        let name = rows
            .iter()
            .filter(|r| r.name.is_some())
            .max_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)))
            .and_then(|r| r.name.clone());
        let score = rows
            .iter()
            .filter(|r| r.score.is_some())
            .max_by(|a, b| (a.key, a.score).cmp(&(b.key, b.score)))
            .and_then(|r| r.score);
        traits.push(vec![
            p,
            opt(&name),
            score.map_or("NULL".into(), |s| s.to_string()),
            opt(&merged_to),
        ]);
    }
    traits.sort();
    Model {
        id_graph,
        ext,
        traits,
    }
}

// ---- landing ------------------------------------------------------------------

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Splits `n` shuffled rows into `files` groups.
fn deal(n: usize, files: usize, rng: &mut Lcg) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, (rng.next() as usize) % (i + 1));
    }
    let mut out = vec![vec![]; files];
    for i in idx {
        out[(rng.next() as usize) % files].push(i);
    }
    out
}

fn strs(v: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v.collect::<Vec<_>>()))
}

/// The order-key columns of some rows, encoded the way file `f` of a landing does.
fn key_columns(keys: &[Key], f: usize, upper: bool) -> Vec<(String, ArrayRef)> {
    let name = |n: &str| {
        if upper {
            n.to_uppercase()
        } else {
            n.to_string()
        }
    };
    let seq: ArrayRef = if f % 2 == 1 {
        strs(keys.iter().map(|k| k.0.map(|v| v.to_string())))
    } else {
        Arc::new(Int64Array::from(
            keys.iter().map(|k| k.0).collect::<Vec<_>>(),
        ))
    };
    let ts = |get: fn(&Key) -> Option<i64>| -> ArrayRef {
        if f % 3 == 2 {
            Arc::new(TimestampNanosecondArray::from(
                keys.iter()
                    .map(|k| get(k).map(|v| micros(v) * 1000))
                    .collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(
                TimestampMicrosecondArray::from(
                    keys.iter().map(|k| get(k).map(micros)).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )
        }
    };
    vec![
        (name("seq"), seq),
        (name("timestamp"), ts(|k| k.1)),
        (name("uuid_ts"), ts(|k| k.2)),
    ]
}

/// Where each row of a history lands: per table, the row indexes of each file.
/// File `f` of every table is written by [`land_file`], encoded as `f` says.
pub(crate) struct Dealt {
    pub(crate) ids: Vec<Vec<usize>>,
    pub(crate) ext: Vec<Vec<usize>>,
    pub(crate) traits: Vec<Vec<usize>>,
}

impl Dealt {
    /// Deals the rows of each table of `h`, shuffled, into `files` files.
    pub(crate) fn new(h: &History, files: usize, seed: u64) -> Dealt {
        let mut rng = Lcg(seed);
        let ids = deal(h.ids.len(), files, &mut rng);
        let ext = deal(h.ext.len(), files, &mut rng);
        let traits = deal(h.traits.len(), files, &mut rng);
        Dealt { ids, ext, traits }
    }

    /// Shuffles the rows of each table of `h`, then deals them round the `files`
    /// files, so that every file gets rows of every table that has enough.
    pub(crate) fn round_robin(h: &History, files: usize, seed: u64) -> Dealt {
        let mut rng = Lcg(seed);
        let mut one = |n: usize| {
            let mut out = vec![vec![]; files];
            for (k, i) in deal(n, 1, &mut rng).remove(0).into_iter().enumerate() {
                out[k % files].push(i);
            }
            out
        };
        let ids = one(h.ids.len());
        let ext = one(h.ext.len());
        let traits = one(h.traits.len());
        Dealt { ids, ext, traits }
    }
}

/// Lands `h` under `root`; returns the history as landed (trait values in files
/// that lack a column read as NULL).
pub(crate) fn land(root: &Path, h: &History, l: &Landing) -> History {
    let dealt = Dealt::new(h, l.files, l.seed);
    let mut landed = h.clone();
    for f in 0..l.files {
        land_file(root, h, &dealt, f, &mut landed);
    }
    landed
}

/// Writes file `f` of each table of `h` as `dealt` says (tables without rows in
/// it get no file), and records in `landed` the values that land as NULL: file
/// 1 has upper-case names, odd files a string seq, files 2, 5, .. nanosecond
/// times; external_id_mapping file 2 has no hash column; when later files hold
/// trait rows, trait file 0 has no `score` column (schema drift: the trait
/// first appears in a later file).
pub(crate) fn land_file(root: &Path, h: &History, dealt: &Dealt, f: usize, landed: &mut History) {
    let group = &dealt.ids[f];
    if !group.is_empty() {
        let rows: Vec<&IdRow> = group.iter().map(|i| &h.ids[*i]).collect();
        let up = f == 1;
        let n = |s: &str| if up { s.to_uppercase() } else { s.to_string() };
        let mut cols = vec![
            (
                n("segment_id"),
                strs(rows.iter().map(|r| Some(r.sid.clone()))),
            ),
            (
                n("canonical_segment_id"),
                strs(rows.iter().map(|r| Some(r.canon.clone()))),
            ),
        ];
        cols.extend(key_columns(
            &rows.iter().map(|r| r.key).collect::<Vec<_>>(),
            f,
            up,
        ));
        write(
            &root.join(format!(
                "id_graph_updates/day=2024-01-0{f}/part-{f}.parquet"
            )),
            cols,
        );
    }
    let group = &dealt.ext[f];
    if !group.is_empty() {
        let rows: Vec<&ExtRow> = group.iter().map(|i| &h.ext[*i]).collect();
        let mut cols = vec![
            (
                "segment_id".to_string(),
                strs(rows.iter().map(|r| r.sid.clone())),
            ),
            (
                "external_id_type".to_string(),
                strs(rows.iter().map(|r| Some(r.kind.clone()))),
            ),
            (
                "external_id_value".to_string(),
                strs(rows.iter().map(|r| Some(r.value.clone()))),
            ),
        ];
        // Older exports have no hash column at all.
        if f == 2 {
            for i in group {
                landed.ext[*i].hash = None;
            }
        } else {
            cols.push((
                "external_id_hash".to_string(),
                strs(rows.iter().map(|r| r.hash.clone())),
            ));
        }
        cols.extend(key_columns(
            &rows.iter().map(|r| r.key).collect::<Vec<_>>(),
            f,
            false,
        ));
        write(
            &root.join(format!("external_id_mapping_updates/part-{f}.parquet")),
            cols,
        );
    }
    let later_files = dealt.traits.iter().skip(1).any(|g| !g.is_empty());
    let group = &dealt.traits[f];
    if !group.is_empty() {
        let rows: Vec<&TraitRow> = group.iter().map(|i| &h.traits[*i]).collect();
        let mut cols = vec![(
            "segment_id".to_string(),
            strs(rows.iter().map(|r| r.sid.clone())),
        )];
        cols.extend(key_columns(
            &rows.iter().map(|r| r.key).collect::<Vec<_>>(),
            f,
            false,
        ));
        cols.push((
            "name".to_string(),
            strs(rows.iter().map(|r| r.name.clone())),
        ));
        // Schema drift: the first file predates the `score` trait.
        if f == 0 && later_files {
            for i in group {
                landed.traits[*i].score = None;
            }
        } else {
            cols.push((
                "score".to_string(),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.score).collect::<Vec<_>>(),
                )),
            ));
        }
        cols.push((
            "context_ip".to_string(),
            strs(rows.iter().map(|_| Some("1.2.3.4".to_string()))),
        ));
        write(
            &root.join(format!(
                "profile_traits_updates/nested/deeper/part-{f}.parquet"
            )),
            cols,
        );
    }
}

fn write(path: &Path, cols: Vec<(String, ArrayRef)>) {
    write_parquet(
        path,
        cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
    );
}

/// The options of a run of every core view from `source` to `dest`.
pub(crate) fn options(
    source: &Path,
    dest: &Path,
    mode: psync_core::RunMode,
    l: &Landing,
) -> MaterializeOptions {
    MaterializeOptions {
        health: true,
        source_at: Default::default(),
        format: Default::default(),
        source: source.display().to_string(),
        dest: dest.display().to_string(),
        views: View::ALL.to_vec(),
        lease: Default::default(),
        stop: Default::default(),
        mode,
        engine: EngineOptions {
            threads: Some(l.threads),
            batch_size: Some(l.batch_size),
            ..Default::default()
        },
    }
}

/// A runtime for library runs.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fails unless the views under `dest` are the model's views of `h` (as landed).
pub(crate) fn assert_model(dest: &Path, h: &History) -> Result<(), TestCaseError> {
    let m = model(h);
    prop_assert_eq!(read_rows(&dest.join("id_graph")), m.id_graph, "id_graph");
    prop_assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        m.ext,
        "external_id_mapping"
    );
    let mut expected = m.traits;
    if h.traits.is_empty() {
        // No profile_traits_updates table: no trait columns, only merged_to.
        for r in &mut expected {
            r.drain(1..3);
        }
    }
    prop_assert_eq!(
        read_rows(&dest.join("profile_traits")),
        expected,
        "profile_traits"
    );
    Ok(())
}

fn check(h: &History, l: &Landing) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let h = &land(&lake, h, l);
    let dest = tmp.path().join("views");
    let opts = options(&lake, &dest, psync_core::RunMode::Full, l);
    let run = runtime().block_on(materialize(&opts, &NoProgress));
    if h.ids.is_empty() && h.ext.is_empty() && h.traits.is_empty() {
        // Nothing landed: no table to read is a configuration error, not empty views.
        let err = run.err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(err.starts_with("no tables under"), "{err}");
        prop_assert!(!dest.join("id_graph").exists());
        return Ok(());
    }
    run.map_err(|e| TestCaseError::fail(e.to_string()))?;
    assert_model(&dest, h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn views_match_the_model(h in history(), l in landing()) {
        check(&h, &l)?;
    }
}

//! Incremental runs, as-of rebuilds and `verify` (issue 6):
//!
//! - random histories landed batch by batch (rows out of order across batches,
//!   merges before the creations they point at, schema drift): after every batch
//!   an incremental run publishes exactly what a full run does, and after the
//!   last one, what the model of `model.rs` says; the same on the S3 server for
//!   one hand-written history;
//! - a re-run with nothing new changes no file of the destination;
//! - `--as-of` before and after a merge, and a NULL timestamp counting as older;
//! - `verify` on a correct destination, a tampered row and a deleted row;
//! - a landed file changed or deleted after it was processed: rebuilt, or
//!   (`--on-change fail`) refused without touching the destination.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::SystemTime;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;
use psync_core::incremental::MAX_SEGMENTS;
use psync_core::materialize::NoProgress;
use psync_core::{OnChange, RunMode, View, materialize};

use crate::model::{
    Dealt, ExtRow, History, IdRow, Landing, TraitRow, assert_model, history, land_file, options,
    runtime,
};
use crate::util::{materialize_ok, read_batches, read_rows, run, run_ok, walk, write_parquet};

// ---- comparing destinations ------------------------------------------------------

/// A published view as readers see it: column names and types, then its rows.
type Shape = (Vec<(String, DataType)>, Vec<Vec<String>>);

/// Every core view under `dest`.
fn views(dest: &Path) -> BTreeMap<&'static str, Shape> {
    View::ALL
        .iter()
        .map(|v| {
            let dir = dest.join(v.name());
            (v.name(), (columns(&dir), read_rows(&dir)))
        })
        .collect()
}

/// The columns of the (only) Parquet file under `dir`, from its footer.
fn columns(dir: &Path) -> Vec<(String, DataType)> {
    let files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{}: {files:?}", dir.display());
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&files[0]).unwrap()).unwrap();
    builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), (bytes, mtime))
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `materialize --mode incremental` (extra arguments after), asserting success;
/// returns the run record.
fn incremental(lake: &Path, dest: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec![
        "materialize",
        "--source",
        s(lake),
        "--dest",
        s(dest),
        "--mode",
        "incremental",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = run_ok(&args);
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

/// An incremental run into `dest` that patched (or not, as `patched` says) and
/// published what a full run does.
fn incremental_equals_full(lake: &Path, dest: &Path, tmp: &Path, patched: bool) {
    let (record, _) = incremental(lake, dest, &[]);
    assert_eq!(record["patched"], patched, "{record}");
    assert_eq!(views(dest), full_views(lake, tmp));
}

/// A full run of `lake` into a fresh folder under `tmp`; its views.
fn full_views(lake: &Path, tmp: &Path) -> BTreeMap<&'static str, Shape> {
    let dest = tempfile::tempdir_in(tmp).unwrap();
    materialize_ok(lake, dest.path(), &["--quiet"]);
    views(dest.path())
}

// ---- the property test -------------------------------------------------------------

/// A landing in 1 to 4 batches (one file per table and batch, file `b` encoded
/// as `model::land_file` says), read with tiny batches and several partitions.
fn batches() -> impl Strategy<Value = Landing> {
    (
        1..=4usize,
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

/// Lands `h` batch by batch as `dealt` says; after each batch, an incremental run
/// into one destination equals a full run into another, row for row, and after
/// the last batch both equal the model. Returns the number of saved state files
/// of `id_graph_updates` after each run.
fn check_batches(h: &History, l: &Landing, dealt: &Dealt) -> Result<Vec<usize>, TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inc = tmp.path().join("incremental");
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&lake).unwrap();
    let mut landed = h.clone();
    let rt = runtime();
    let mut state = false;
    let mut segments = vec![];
    for b in 0..l.files {
        let before = walk(&lake).len();
        land_file(&lake, h, dealt, b, &mut landed);
        let new = walk(&lake).len() - before;
        if walk(&lake).is_empty() {
            continue;
        }
        // A processed file seen as changed would rebuild in full and hide a wrong
        // incremental path: here it fails the run instead.
        let mode = RunMode::Incremental {
            on_change: OnChange::Fail,
        };
        let report = rt
            .block_on(materialize(&options(&lake, &inc, mode, l), &NoProgress))
            .map_err(|e| TestCaseError::fail(format!("incremental run {b}: {e}")))?;
        let expected_mode = match (state, new) {
            (false, _) => "full",
            (true, 0) => "nothing-new",
            (true, _) => "incremental",
        };
        prop_assert_eq!(&report.mode, expected_mode, "batch {}", b);
        // Every incremental run after the first patches the views it published.
        prop_assert_eq!(
            report.patched,
            expected_mode == "incremental",
            "batch {}",
            b
        );
        prop_assert!(
            report.warnings.iter().all(|w| !w.contains("rebuild")),
            "batch {}: {:?}",
            b,
            report.warnings
        );
        state = true;
        segments.push(walk(&inc.join("_psync/state/id_graph_updates")).len());
        rt.block_on(materialize(
            &options(&lake, &full, RunMode::Full, l),
            &NoProgress,
        ))
        .map_err(|e| TestCaseError::fail(format!("full run {b}: {e}")))?;
        let (got, want) = (views(&inc), views(&full));
        for (view, shape) in &want {
            prop_assert_eq!(&got[view], shape, "{} after batch {}", view, b);
        }
    }
    if state {
        assert_model(&inc, &landed)?;
    }
    Ok(segments)
}

fn engine() -> impl Strategy<Value = (usize, usize)> {
    (prop::sample::select(vec![1usize, 2, 7]), 1..4usize)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn incremental_runs_equal_full_runs_after_every_batch(h in history(), l in batches()) {
        check_batches(&h, &l, &Dealt::new(&h, l.files, l.seed))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Enough batches, each with id_graph rows, that the saved state is consolidated
    /// once and then grows again.
    #[test]
    fn consolidated_state_equals_full_runs(
        h in history().prop_filter("an id_graph row per batch", |h| h.ids.len() >= MAX_SEGMENTS + 2),
        seed in any::<u64>(),
        (batch_size, threads) in engine(),
    ) {
        let l = Landing { files: MAX_SEGMENTS + 2, seed, batch_size, threads };
        let segments = check_batches(&h, &l, &Dealt::round_robin(&h, l.files, seed))?;
        prop_assert!(
            segments.windows(2).any(|w| w[1] < w[0]),
            "the state was never consolidated: {:?} files after each run",
            segments
        );
    }
}

// ---- one hand-written history in three batches -------------------------------------------

fn k(
    seq: Option<i64>,
    ts: Option<i64>,
    uuid_ts: Option<i64>,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    (seq, ts, uuid_ts)
}

fn same(v: i64) -> (Option<i64>, Option<i64>, Option<i64>) {
    k(Some(v), Some(v), Some(v))
}

/// A history whose batches hold every case at least once: a merge landing before
/// the creation it points at, a recursive (creation) entry landing late and older,
/// a chain across batches, a cycle closed by a later batch, a NULL key beaten by a
/// late row, late rows older than what landed before, a NULL segment_id, and a
/// trait column (`score`) first landing in batch 1.
fn three_batches() -> (History, Dealt) {
    let id = |sid: &str, canon: &str, key| IdRow {
        sid: sid.into(),
        canon: canon.into(),
        key,
    };
    let ext = |sid: Option<&str>, kind: &str, value: &str, hash: Option<&str>, key| ExtRow {
        sid: sid.map(Into::into),
        kind: kind.into(),
        value: value.into(),
        hash: hash.map(Into::into),
        key,
    };
    let tr = |sid: &str, name: Option<&str>, score: Option<i64>, key| TraitRow {
        sid: Some(sid.into()),
        key,
        name: name.map(Into::into),
        score,
    };
    let h = History {
        ids: vec![
            id("s1", "s1", same(1)),
            id("s2", "s1", same(3)),
            id("s2", "s2", same(2)),
            id("s3", "s2", same(4)),
            id("s4", "s4", k(None, None, None)),
            id("s4", "s3", k(Some(1), None, Some(2))),
            id("s5", "s6", same(2)),
            id("s6", "s5", same(3)),
        ],
        ext: vec![
            ext(Some("s1"), "email", "v0", None, same(1)),
            ext(Some("s3"), "email", "v0", None, same(2)),
            ext(None, "anon", "v1", None, same(3)),
            ext(Some("s4"), "anon", "v2", Some("ab"), same(1)),
        ],
        traits: vec![
            tr("s1", Some("x"), Some(1), same(1)),
            tr("s2", Some("y"), Some(2), same(2)),
            tr("s3", None, Some(0), same(3)),
            tr("s1", Some("z"), None, same(0)),
            tr("s6", Some("x"), Some(1), k(None, None, None)),
            tr("s4", Some("y"), Some(2), same(1)),
        ],
    };
    let dealt = Dealt {
        ids: vec![vec![1, 4, 6], vec![0, 3], vec![2, 5, 7]],
        ext: vec![vec![0], vec![2, 3], vec![1]],
        traits: vec![vec![0, 5], vec![1, 4], vec![2, 3]],
    };
    (h, dealt)
}

/// Views the manifest did not record are recomputed from the state, not patched: a
/// full run published into the destination between two incremental runs (its views
/// hold the same files, but they are not the recorded ones), and a run with other
/// `--views`. The run after each patches again; every run equals a full run.
#[test]
fn views_another_run_published_are_recomputed_then_patched_again() {
    let (h, dealt) = three_batches();
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inc = tmp.path().join("inc");
    let mut landed = h.clone();
    land_file(&lake, &h, &dealt, 0, &mut landed);
    let (record, _) = incremental(&lake, &inc, &[]);
    assert_eq!(record["mode"], "full");
    land_file(&lake, &h, &dealt, 1, &mut landed);
    materialize_ok(&lake, &inc, &["--quiet"]);
    land_file(&lake, &h, &dealt, 2, &mut landed);
    let (record, _) = incremental(&lake, &inc, &[]);
    assert_eq!(record["mode"], "incremental");
    assert_eq!(
        record["patched"], false,
        "the views were not the manifest's"
    );
    assert_eq!(views(&inc), full_views(&lake, tmp.path()));

    // Another file, an incremental run of one view, then of all three.
    let extra = lake.join("profile_traits_updates").join("late.parquet");
    std::fs::copy(
        walk(&lake.join("profile_traits_updates"))[0].clone(),
        &extra,
    )
    .unwrap();
    let (record, _) = incremental(&lake, &inc, &["--views", "id_graph"]);
    assert_eq!(record["patched"], false, "not all three views");
    std::fs::copy(
        &extra,
        lake.join("profile_traits_updates").join("later.parquet"),
    )
    .unwrap();
    let (record, _) = incremental(&lake, &inc, &[]);
    assert_eq!(
        record["patched"], false,
        "profile_traits was not published last time"
    );
    std::fs::copy(
        &extra,
        lake.join("profile_traits_updates").join("latest.parquet"),
    )
    .unwrap();
    incremental_equals_full(&lake, &inc, tmp.path(), true);
}

/// A large first segment and many small ones: at `MAX_SEGMENTS` the small ones merge
/// into one and the first stays as it was; the views equal a full run's throughout.
#[test]
fn small_segments_merge_and_the_large_one_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all");
    run_ok(&[
        "generate",
        "--dest",
        s(&all),
        "--profiles",
        "1500",
        "--traits",
        "3",
        "--rows-per-file",
        "150",
        "--no-events",
        "--seed",
        "7",
    ]);
    // The newest files of every table are held back, to land one per run.
    let lake = tmp.path().join("lake");
    let mut held: Vec<Vec<PathBuf>> = vec![];
    for table in [
        "id_graph_updates",
        "external_id_mapping_updates",
        "profile_traits_updates",
    ] {
        let mut files = walk(&all.join(table));
        files.sort();
        let split = files.len() - MAX_SEGMENTS;
        for (i, f) in files.iter().enumerate() {
            let to = lake.join(f.strip_prefix(&all).unwrap());
            if i < split {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(f, &to).unwrap();
            }
        }
        held.push(files[split..].to_vec());
    }
    let dest = tmp.path().join("dest");
    incremental(&lake, &dest, &[]);
    let state = dest.join("_psync/state/profile_traits_updates");
    let first = walk(&state);
    assert_eq!(first.len(), 1);
    for run in 0..MAX_SEGMENTS {
        for files in &held {
            let f = &files[run];
            let to = lake.join(f.strip_prefix(&all).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, &to).unwrap();
        }
        let (record, _) = incremental(&lake, &dest, &[]);
        assert_eq!(record["patched"], true, "run {run}");
        let segments = walk(&state);
        if run + 1 < MAX_SEGMENTS {
            assert_eq!(segments.len(), run + 2, "run {run}: one segment more");
        } else {
            // The eighth run found 8 segments: the 7 small ones and its new files merged.
            assert_eq!(segments.len(), 2, "run {run}: {segments:?}");
            assert!(segments.contains(&first[0]), "the large segment stays");
        }
    }
    assert_eq!(views(&dest), full_views(&lake, tmp.path()));
    // A full run publishes over the views, so the next incremental run recomputes
    // them from the whole state: the merged segment must hold all it replaced.
    materialize_ok(&lake, &dest, &["--quiet"]);
    for files in &held {
        let f = &files[0];
        std::fs::copy(
            f,
            lake.join(f.strip_prefix(&all).unwrap())
                .with_extension("again.parquet"),
        )
        .unwrap();
    }
    incremental_equals_full(&lake, &dest, tmp.path(), false);
}

/// The hand-written history through the binary on local disk, before the same on S3.
#[test]
fn three_batches_locally() {
    let (h, dealt) = three_batches();
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inc = tmp.path().join("inc");
    let mut landed = h.clone();
    for b in 0..3 {
        land_file(&lake, &h, &dealt, b, &mut landed);
        let (record, _) = incremental(&lake, &inc, &["--on-change", "fail"]);
        assert_eq!(record["mode"], if b == 0 { "full" } else { "incremental" });
        assert_eq!(
            views(&inc),
            full_views(&lake, tmp.path()),
            "after batch {b}"
        );
    }
    assert_model(&inc, &landed).unwrap();
}

// ---- S3 and Azure ---------------------------------------------------------------------

use crate::remote::{Remote, download, upload};

fn run_remote_ok(remote: &Remote, args: &[&str]) -> Output {
    let out = remote.run(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

#[test]
fn three_batches_on_s3() {
    let Some(s3) = Remote::s3() else { return };
    three_batches_on(&s3);
}

#[test]
fn three_batches_on_azure() {
    let Some(azure) = Remote::azure() else { return };
    three_batches_on(&azure);
}

/// The hand-written history landed batch by batch on a remote store: every
/// incremental run (source and destination there, ETags compared) equals a full
/// run, then the model, and `verify` over the store finds nothing.
fn three_batches_on(remote: &Remote) {
    let store = remote.store();
    let rt = runtime();
    let (h, dealt) = three_batches();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = format!(
        "incremental-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let lake = remote.url(&format!("{prefix}/lake"));
    let inc = remote.url(&format!("{prefix}/inc"));
    let mut landed = h.clone();
    for b in 0..3 {
        let batch = tmp.path().join(format!("batch-{b}"));
        land_file(&batch, &h, &dealt, b, &mut landed);
        rt.block_on(upload(store.as_ref(), &batch, &format!("{prefix}/lake")));
        let out = run_remote_ok(
            remote,
            &[
                "materialize",
                "--source",
                &lake,
                "--dest",
                &inc,
                "--mode",
                "incremental",
                "--on-change",
                "fail",
                "--json",
            ],
        );
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["mode"], if b == 0 { "full" } else { "incremental" });
        let full = remote.url(&format!("{prefix}/full-{b}"));
        run_remote_ok(
            remote,
            &["materialize", "--source", &lake, "--dest", &full, "--quiet"],
        );
        let here = tmp.path().join(format!("after-{b}"));
        rt.block_on(download(
            store.as_ref(),
            &format!("{prefix}/inc"),
            &here.join("inc"),
        ));
        rt.block_on(download(
            store.as_ref(),
            &format!("{prefix}/full-{b}"),
            &here.join("full"),
        ));
        assert_eq!(
            views(&here.join("inc")),
            views(&here.join("full")),
            "after batch {b}"
        );
        if b == 2 {
            assert_model(&here.join("inc"), &landed).unwrap();
        }
    }
    let out = remote.run(&["verify", "--source", &lake, "--dest", &inc]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

// ---- nothing new ----------------------------------------------------------------------

/// After an incremental run, a run with nothing new says so and leaves every
/// file under the destination (views, state, run records) as it was: same
/// paths, bytes and modification times.
#[test]
fn a_rerun_with_nothing_new_changes_no_file() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    let late = |p: &Path| {
        let p = p.to_string_lossy();
        p.contains("profile_traits_updates") && p.ends_with("part-00003.parquet")
            || p.contains("external_id_mapping_updates") && p.ends_with("part-00001.parquet")
    };
    for file in walk(&sample) {
        if !late(&file) {
            let to = lake.join(file.strip_prefix(&sample).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&file, to).unwrap();
        }
    }
    incremental(&lake, &dest, &[]);
    for file in walk(&sample) {
        if late(&file) {
            std::fs::copy(&file, lake.join(file.strip_prefix(&sample).unwrap())).unwrap();
        }
    }
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "incremental");

    let before = snapshot(&dest);
    assert!(
        before.keys().any(|p| p.starts_with("_psync/state")),
        "{:?}",
        before.keys()
    );
    let out = materialize_ok(&lake, &dest, &["--mode", "incremental"]);
    assert!(stderr(&out).contains("nothing new"), "{}", stderr(&out));
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "nothing-new");
    let after = snapshot(&dest);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, (bytes, mtime)) in &before {
        assert!(after[path].0 == *bytes, "{} changed", path.display());
        assert_eq!(after[path].1, *mtime, "{} was rewritten", path.display());
    }
    assert_eq!(views(&dest), full_views(&lake, tmp.path()));
}

/// A view an earlier incremental run did not publish (it had other `--views`) is
/// published by the next run, although nothing new landed.
#[test]
fn nothing_new_still_publishes_a_view_not_published_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    merge_lake(&lake);
    let (record, _) = incremental(&lake, &dest, &["--views", "id_graph"]);
    assert_eq!(record["mode"], "full");
    assert!(!dest.join("profile_traits").exists());
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "incremental");
    assert_eq!(views(&dest), full_views(&lake, tmp.path()));
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "nothing-new");
}

// ---- a hand-written lake: two profiles merging on May 5 --------------------------

/// Midnight UTC of day `d` of May 2024, in µs.
fn may(d: i64) -> i64 {
    (1_714_521_600 + (d - 1) * 86_400) * 1_000_000
}

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn ints(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

fn times(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v.to_vec()).with_timezone("UTC"))
}

/// Days of May as timestamps (`None`: NULL).
fn days(v: &[Option<i64>]) -> ArrayRef {
    times(&v.iter().map(|d| d.map(may)).collect::<Vec<_>>())
}

/// s1 (created May 1) and s2 (created May 2, plan set May 3) merge into s1 on May
/// 5; s1's name changes on May 6; a backfilled row (NULL seq and timestamp) gives
/// s1 plan "free".
fn merge_lake(lake: &Path) {
    let mut cols = vec![
        ("segment_id", strs(&[Some("s1"), Some("s2"), Some("s2")])),
        (
            "canonical_segment_id",
            strs(&[Some("s1"), Some("s2"), Some("s1")]),
        ),
    ];
    cols.extend(order(&[Some(1), Some(2), Some(5)]));
    write_parquet(&lake.join("id_graph_updates/part-0.parquet"), cols);

    let mut cols = vec![
        ("segment_id", strs(&[Some("s1"), Some("s2")])),
        ("external_id_type", strs(&[Some("email"), Some("email")])),
        ("external_id_value", strs(&[Some("ann@x"), Some("bob@x")])),
    ];
    cols.extend(order(&[Some(1), Some(2)]));
    write_parquet(
        &lake.join("external_id_mapping_updates/part-0.parquet"),
        cols,
    );
    merge_lake_traits(lake, "pro");
}

/// The order key of rows landed on these days of May (`seq` = the day).
fn order(seq: &[Option<i64>]) -> Vec<(&'static str, ArrayRef)> {
    vec![
        ("seq", ints(seq)),
        ("timestamp", days(seq)),
        ("uuid_ts", days(seq)),
    ]
}

/// The traits file of [`merge_lake`], with `plan_of_s2` as the plan s2 gets on May 3.
fn merge_lake_traits(lake: &Path, plan_of_s2: &str) {
    let mut cols = vec![(
        "segment_id",
        strs(&[Some("s1"), Some("s2"), Some("s2"), Some("s1"), Some("s1")]),
    )];
    cols.extend(order(&[Some(1), Some(2), Some(3), None, Some(6)]));
    cols.push((
        "name",
        strs(&[Some("ann"), Some("bob"), None, None, Some("anna")]),
    ));
    cols.push((
        "plan",
        strs(&[None, None, Some(plan_of_s2), Some("free"), None]),
    ));
    write_parquet(&lake.join("profile_traits_updates/part-0.parquet"), cols);
}

/// The first `n` columns of each row of a view.
fn first(dir: &Path, n: usize) -> Vec<Vec<String>> {
    read_rows(dir)
        .into_iter()
        .map(|mut r| {
            r.truncate(n);
            r
        })
        .collect()
}

fn owned(rows: &[&[&str]]) -> Vec<Vec<String>> {
    crate::util::rows(rows)
}

#[test]
fn as_of_before_a_merge_keeps_the_profiles_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    merge_lake(&lake);
    let as_of = |t: &str| {
        let dest = tmp.path().join(format!("as-of-{t}"));
        let out = materialize_ok(&lake, &dest, &["--as-of", t, "--json"]);
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["mode"], "as-of");
        dest
    };

    // May 4, before the merge: two profiles, each with its own traits; the
    // backfilled row (NULL timestamp) counts as older than May 4.
    let d = as_of("2024-05-04T00:00:00Z");
    assert_eq!(
        first(&d.join("id_graph"), 2),
        owned(&[&["s1", "s1"], &["s2", "s2"]])
    );
    assert_eq!(
        read_rows(&d.join("profile_traits")),
        owned(&[
            &["s1", "ann", "free", "NULL"],
            &["s2", "bob", "pro", "NULL"]
        ])
    );
    assert_eq!(
        first(&d.join("external_id_mapping"), 3),
        owned(&[&["s1", "email", "ann@x"], &["s2", "email", "bob@x"]])
    );

    // At the merge (the bound is inclusive) and after it: one profile, with
    // the latest value of each trait from both.
    for t in ["2024-05-05T00:00:00Z", "2024-05-05T12:00:00+02:00"] {
        let d = as_of(t);
        assert_eq!(
            first(&d.join("id_graph"), 2),
            owned(&[&["s1", "s1"], &["s2", "s1"]]),
            "{t}"
        );
        assert_eq!(
            read_rows(&d.join("profile_traits")),
            owned(&[&["s1", "bob", "pro", "NULL"], &["s2", "NULL", "NULL", "s1"]]),
            "{t}"
        );
        assert_eq!(
            first(&d.join("external_id_mapping"), 3),
            owned(&[&["s1", "email", "ann@x"], &["s1", "email", "bob@x"]]),
            "{t}"
        );
    }

    // Before every timestamp: only the backfilled row.
    let d = as_of("2024-04-30");
    assert_eq!(read_rows(&d.join("id_graph")), Vec::<Vec<String>>::new());
    assert_eq!(
        read_rows(&d.join("profile_traits")),
        owned(&[&["s1", "NULL", "free", "NULL"]])
    );

    // As of the last timestamp: a full run.
    let d = as_of("2024-05-06T00:00:00Z");
    let full = full_views(&lake, tmp.path());
    assert_eq!(views(&d), full);
    assert!(
        full["profile_traits"]
            .1
            .contains(&owned(&[&["s1", "anna", "pro", "NULL"]])[0])
    );
}

// ---- verify ------------------------------------------------------------------------

/// `verify --json`: the checks by view name, and the exit code.
fn verify_json(lake: &Path, dest: &Path) -> (BTreeMap<String, serde_json::Value>, Option<i32>) {
    let out = run(&["verify", "--source", s(lake), "--dest", s(dest), "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let by_view = checks
        .into_iter()
        .map(|c| (c["view"].as_str().unwrap().to_string(), c))
        .collect();
    (by_view, out.status.code())
}

/// Rewrites the published `profile_traits` file with `edit` applied to its rows.
fn rewrite_profile_traits(dest: &Path, edit: impl Fn(&RecordBatch) -> RecordBatch) {
    let file = dest.join("profile_traits/profile_traits.parquet");
    let batches = read_batches(&dest.join("profile_traits"));
    assert_eq!(batches.len(), 1);
    let batch = edit(&batches[0]);
    let schema = batch.schema();
    let cols: Vec<(&str, ArrayRef)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().as_str(), c.clone()))
        .collect();
    write_parquet(&file, cols);
}

/// The row of `batch` whose `canonical_segment_id` is `key`.
fn row_of(batch: &RecordBatch, key: &str) -> usize {
    let keys = cast(
        batch.column_by_name("canonical_segment_id").unwrap(),
        &DataType::Utf8,
    )
    .unwrap();
    let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
    (0..keys.len()).find(|i| keys.value(*i) == key).unwrap()
}

#[test]
fn verify_finds_a_tampered_and_a_deleted_row() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    merge_lake(&lake);
    let dest = tmp.path().join("views");
    incremental(&lake, &dest, &[]);
    let published = std::fs::read(dest.join("profile_traits/profile_traits.parquet")).unwrap();

    let out = run(&["verify", "--source", s(&lake), "--dest", s(&dest)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    for v in View::ALL {
        let line = text.lines().find(|l| l.starts_with(v.name())).unwrap();
        assert!(line.ends_with(" ok"), "{text}");
    }
    assert!(!text.contains("DIFFERS"), "{text}");

    // One trait value of s1 changed in the published file.
    rewrite_profile_traits(&dest, |batch| {
        let row = row_of(batch, "s1");
        let mut cols = batch.columns().to_vec();
        let i = batch.schema().index_of("name").unwrap();
        let names = cast(&cols[i], &DataType::Utf8).unwrap();
        let names = names.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(row), "anna");
        let changed: StringArray = (0..names.len())
            .map(|r| (!names.is_null(r)).then(|| if r == row { "mallory" } else { names.value(r) }))
            .collect();
        cols[i] = cast(&changed, cols[i].data_type()).unwrap();
        RecordBatch::try_new(batch.schema(), cols).unwrap()
    });
    let out = run(&["verify", "--source", s(&lake), "--dest", s(&dest)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("different: canonical_segment_id=s1"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("profile_traits"))
        .unwrap();
    assert!(line.ends_with("DIFFERS"), "{text}");
    let (checks, code) = verify_json(&lake, &dest);
    assert_eq!(code, Some(1));
    let c = &checks["profile_traits"];
    assert_eq!(
        (
            c["missing"].as_u64(),
            c["extra"].as_u64(),
            c["different"].as_u64()
        ),
        (Some(0), Some(0), Some(1)),
        "{c}"
    );
    assert_eq!(checks["id_graph"]["different"], 0);

    // The row of s2 deleted from the published file (restored first).
    std::fs::write(
        dest.join("profile_traits/profile_traits.parquet"),
        &published,
    )
    .unwrap();
    assert_eq!(verify_json(&lake, &dest).1, Some(0));
    rewrite_profile_traits(&dest, |batch| {
        let row = row_of(batch, "s2");
        let keep: datafusion::arrow::array::BooleanArray =
            (0..batch.num_rows()).map(|r| Some(r != row)).collect();
        filter_record_batch(batch, &keep).unwrap()
    });
    let out = run(&["verify", "--source", s(&lake), "--dest", s(&dest)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("missing: canonical_segment_id=s2"), "{text}");
    let (checks, _) = verify_json(&lake, &dest);
    let c = &checks["profile_traits"];
    assert_eq!(
        (
            c["missing"].as_u64(),
            c["extra"].as_u64(),
            c["different"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{c}"
    );
}

// ---- change detection ---------------------------------------------------------------

#[test]
fn a_changed_or_deleted_landed_file_is_rebuilt_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    merge_lake(&lake);
    incremental(&lake, &dest, &[]);
    // A second batch, processed incrementally.
    let mut cols = vec![("segment_id", strs(&[Some("s3")]))];
    cols.extend(order(&[Some(7)]));
    cols.push(("name", strs(&[Some("cy")])));
    cols.push(("plan", strs(&[None])));
    let late = lake.join("profile_traits_updates/part-1.parquet");
    write_parquet(&late, cols);
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "incremental");

    // The first traits file replaced: s2's plan (s1's after the merge) differs.
    merge_lake_traits(&lake, "enterprise");
    let before = snapshot(&dest);
    let out = run(&[
        "materialize",
        "--source",
        s(&lake),
        "--dest",
        s(&dest),
        "--mode",
        "incremental",
        "--on-change",
        "fail",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("profile_traits_updates/part-0.parquet"),
        "{err}"
    );
    assert!(
        !err.contains("id_graph_updates"),
        "only the changed file is named: {err}"
    );
    let after = snapshot(&dest);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, (bytes, mtime)) in &before {
        assert!(
            after[path].0 == *bytes && after[path].1 == *mtime,
            "{} changed",
            path.display()
        );
    }

    // By default: a warning naming the file, and a rebuild equal to a full run.
    let (record, err) = incremental(&lake, &dest, &[]);
    let warnings = record["warnings"].to_string();
    assert!(
        warnings.contains("profile_traits_updates/part-0.parquet"),
        "{warnings}"
    );
    assert!(warnings.contains("rebuilding in full"), "{warnings}");
    assert!(err.contains("part-0.parquet"), "{err}");
    let full = full_views(&lake, tmp.path());
    assert_eq!(views(&dest), full);
    assert!(
        full["profile_traits"]
            .1
            .contains(&owned(&[&["s1", "anna", "enterprise", "NULL"]])[0])
    );
    assert_eq!(verify_json(&lake, &dest).1, Some(0));
    let (record, _) = incremental(&lake, &dest, &[]);
    assert_eq!(record["mode"], "nothing-new");

    // A processed file deleted: named as deleted, and rebuilt.
    std::fs::remove_file(&late).unwrap();
    let (record, _) = incremental(&lake, &dest, &[]);
    let warnings = record["warnings"].to_string();
    assert!(warnings.contains("part-1.parquet (deleted)"), "{warnings}");
    assert_eq!(views(&dest), full_views(&lake, tmp.path()));
    assert!(
        !read_rows(&dest.join("profile_traits"))
            .iter()
            .any(|r| r[0] == "s3")
    );
}

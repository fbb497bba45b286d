//! Helpers shared by the integration tests: run the real binary, write small
//! Parquet files, read published views back as sorted text rows, copy folders
//! and read a whole location (local or S3) back.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use psync_lake_io::Location;

/// The binary under test: the one cargo built for these tests, or `PSYNC_BIN`
/// when set (as for the Python tests: a copy that another build into a shared
/// target directory cannot replace while the tests run).
pub fn bin() -> PathBuf {
    std::env::var_os("PSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_psync-lake")))
}

/// Runs the binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// Runs the binary and fails the test, showing stderr, unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "psync-lake {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `psync-lake materialize --source <source> --dest <dest> <extra...>`, asserting success.
pub fn materialize_ok(source: &Path, dest: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "materialize",
        "--source",
        source.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

/// Writes one Parquet file with the given columns, creating its folder.
pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Every row of every Parquet file under `dir`, rendered as text, sorted.
pub fn read_rows(dir: &Path) -> Vec<Vec<String>> {
    let mut rows = vec![];
    for batch in read_batches(dir) {
        let opts = FormatOptions::default().with_null("NULL");
        let fmts: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows.sort();
    rows
}

/// The batches of every Parquet file under `dir`, in path order.
pub fn read_batches(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut out = vec![];
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            out.push(b.unwrap());
        }
    }
    out
}

/// Column names of the Parquet files under `dir`.
pub fn column_names(dir: &Path) -> Vec<String> {
    read_batches(dir)
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir`, recursively, in no particular order.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Copies the folder `from` (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    for file in walk(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// Every object under `location` (through its store, so local and S3 alike), by
/// path relative to it, with its bytes.
pub async fn contents(location: &Location) -> BTreeMap<String, Vec<u8>> {
    let metas: Vec<_> = location
        .store
        .list(Some(&location.prefix))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let rel: Vec<String> = m
            .location
            .prefix_match(&location.prefix)
            .unwrap()
            .map(|p| p.as_ref().to_string())
            .collect();
        let bytes = location.store.get(&m.location).await.unwrap().bytes().await;
        out.insert(rel.join("/"), bytes.unwrap().to_vec());
    }
    out
}

/// Writes `contents` (as [`contents`] returns them) under `dir`.
pub fn write_tree(contents: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    for (rel, bytes) in contents {
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

/// Turns `&[&[&str]]` into owned sorted rows for comparisons.
pub fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
    let mut v: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
    v.sort();
    v
}

/// Compares `actual` with the snapshot `tests/snapshots/<name>`; with
/// `UPDATE_SNAPSHOTS=1` in the environment, (re)writes the snapshot instead.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}); create it with UPDATE_SNAPSHOTS=1 cargo test --test integration",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = (0..e.len().max(a.len()))
        .find(|&i| e.get(i) != a.get(i))
        .unwrap_or(0);
    panic!(
        "{} differs from the snapshot at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
         ({} expected lines, {} actual); if the change is intended, rerun with \
         UPDATE_SNAPSHOTS=1 and review `git diff tests/snapshots`",
        path.display(),
        first + 1,
        e.get(first),
        a.get(first),
        e.len(),
        a.len()
    );
}

//! SPEC §6: bad input, through the real binary. Each case is either a success
//! with a warning (and views that skip what had to be skipped) or exit code 2 with
//! one `error:` line naming the file or setting; never a panic, and never a
//! damaged destination.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};

use crate::util::{column_names, read_rows, rows, run, walk, write_parquet};

const VIEWS: [&str; 3] = ["id_graph", "external_id_mapping", "profile_traits"];

/// 2022-05-02 14:00:00 UTC, in µs.
const T0: i64 = 1_651_500_000_000_000;

fn s(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn i64s(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

/// Timestamps `minutes` after T0, µs UTC.
fn ts(minutes: &[i64]) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            minutes
                .iter()
                .map(|m| T0 + m * 60_000_000)
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

/// How a timestamp written by [`ts`] reads back.
fn t(minutes: i64) -> String {
    format!("2022-05-02T14:{minutes:02}:00Z")
}

fn sha(s: &str) -> String {
    sha1_smol::Sha1::from(s).hexdigest()
}

/// Writes `<lake>/<table>/<file>`, table and column names upper-cased when `upper`
/// (as Snowflake lands them).
fn write(
    lake: &Path,
    table: &str,
    file: &str,
    upper: bool,
    columns: Vec<(&str, ArrayRef)>,
) -> PathBuf {
    let case = |n: &str| {
        if upper {
            n.to_uppercase()
        } else {
            n.to_string()
        }
    };
    let path = lake.join(case(table)).join(file);
    let named: Vec<(String, ArrayRef)> = columns.into_iter().map(|(n, a)| (case(n), a)).collect();
    write_parquet(
        &path,
        named.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
    );
    path
}

fn write_id_graph(lake: &Path, file: &str, upper: bool) -> PathBuf {
    write(
        lake,
        "id_graph_updates",
        file,
        upper,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p2"), Some("p2")])),
            (
                "canonical_segment_id",
                s(&[Some("p1"), Some("p2"), Some("p1")]),
            ),
            ("seq", i64s(&[1, 2, 3])),
            ("timestamp", ts(&[1, 2, 3])),
            (
                "triggering_event_type",
                s(&[Some("page"), Some("page"), Some("identify")]),
            ),
        ],
    )
}

fn write_external_ids(lake: &Path, file: &str, upper: bool) -> PathBuf {
    write(
        lake,
        "external_id_mapping_updates",
        file,
        upper,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p1"), Some("p2")])),
            (
                "external_id_type",
                s(&[Some("anonymous_id"), Some("email"), Some("anonymous_id")]),
            ),
            (
                "external_id_value",
                s(&[Some("a1"), Some("jane@x.com"), Some("a2")]),
            ),
            ("seq", i64s(&[1, 2, 3])),
            ("timestamp", ts(&[1, 2, 3])),
        ],
    )
}

fn write_traits(lake: &Path, file: &str, upper: bool) -> PathBuf {
    write(
        lake,
        "profile_traits_updates",
        file,
        upper,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p2"), Some("p1")])),
            ("email", s(&[Some("jane@x.com"), None, None])),
            ("plan", s(&[None, Some("pro"), Some("free")])),
            ("seq", i64s(&[2, 2, 4])),
            ("timestamp", ts(&[2, 2, 4])),
        ],
    )
}

/// A small, complete, valid lake.
fn write_good_lake(lake: &Path, upper: bool) {
    write_id_graph(lake, "part-0.parquet", upper);
    write_external_ids(lake, "part-0.parquet", upper);
    write_traits(lake, "part-0.parquet", upper);
}

fn expected_id_graph() -> Vec<Vec<String>> {
    rows(&[&["p1", "p1", &t(1)], &["p2", "p1", &t(3)]])
}

fn expected_external_ids() -> Vec<Vec<String>> {
    rows(&[
        &["p1", "anonymous_id", "a1", &sha("anonymous_ida1"), &t(1)],
        &["p1", "email", "jane@x.com", &sha("emailjane@x.com"), &t(2)],
        &["p1", "anonymous_id", "a2", &sha("anonymous_ida2"), &t(3)],
    ])
}

/// The views of [`write_good_lake`].
fn assert_good_views(dest: &Path) {
    assert_eq!(
        column_names(&dest.join("id_graph")),
        ["segment_id", "canonical_segment_id", "timestamp"]
    );
    assert_eq!(read_rows(&dest.join("id_graph")), expected_id_graph());
    assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        expected_external_ids()
    );
    assert_eq!(
        column_names(&dest.join("profile_traits")),
        ["canonical_segment_id", "email", "plan", "merged_to"]
    );
    assert_eq!(
        read_rows(&dest.join("profile_traits")),
        rows(&[
            &["p1", "jane@x.com", "free", "NULL"],
            &["p2", "NULL", "NULL", "p1"]
        ])
    );
}

fn materialize(lake: &Path, dest: &Path) -> Output {
    run(&[
        "materialize",
        "--source",
        lake.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--quiet",
    ])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A run that must succeed: exit 0, no error line, no panic. Returns stderr.
fn succeeds(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        out.status.success(),
        "expected success, got {:?}:\n{err}",
        out.status.code()
    );
    assert!(
        !err.contains("panicked") && !err.contains("error:"),
        "stderr:\n{err}"
    );
    err
}

/// A run that must fail: exit code 2, stderr exactly one `error:` line that
/// contains every one of `names`. Returns that line.
fn fails_naming(out: &Output, names: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in names {
        assert!(
            lines[0].contains(n),
            "error line does not name {n:?}: {err}"
        );
    }
    lines[0].to_string()
}

/// The run record of the last run.
fn last_run(dest: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dest.join("_psync/last_run.json")).expect("a run record");
    serde_json::from_str(&text).expect("the run record is JSON")
}

fn warnings(dest: &Path) -> Vec<String> {
    last_run(dest)["warnings"]
        .as_array()
        .expect("warnings is an array")
        .iter()
        .map(|w| w.as_str().expect("a warning is a string").to_string())
        .collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The views of every view folder under `dest`, as sorted rows.
fn all_views(dest: &Path) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    VIEWS
        .iter()
        .map(|v| (column_names(&dest.join(v)), read_rows(&dest.join(v))))
        .collect()
}

/// Publishes the good lake's views into `dest`, then lets `damage` break a copy of
/// that lake; the run on the broken lake must fail with one line naming the file
/// `damage` returns (and whatever else is in `names`), and leave `dest` exactly as
/// the good run left it, byte for byte.
fn fails_and_keeps_previous_views(damage: impl FnOnce(&Path) -> PathBuf, names: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write_good_lake(&lake, false);
    succeeds(&materialize(&lake, &dest));
    assert_good_views(&dest);
    let before = snapshot(&dest);
    assert!(
        before.len() >= 4,
        "views and a run record: {:?}",
        before.keys()
    );

    let bad = damage(&lake);
    let out = materialize(&lake, &dest);
    let mut all = vec![bad.to_str().unwrap()];
    all.extend_from_slice(names);
    let line = fails_naming(&out, &all);

    let after = snapshot(&dest);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files under the destination changed"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
    assert_good_views(&dest);
    line
}

#[test]
fn missing_tables_are_read_as_empty_and_named_in_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write_id_graph(&lake, "part-0.parquet", false);
    let out = materialize(&lake, &dest);
    let err = succeeds(&out);
    // --quiet keeps warnings off stderr; they are in the run record.
    assert!(!err.contains("warn"), "{err}");
    let all = warnings(&dest).join("\n");
    assert!(
        all.contains("external_id_mapping_updates") && all.contains("profile_traits_updates"),
        "{all}"
    );

    let w = warnings(&dest);
    for table in ["external_id_mapping_updates", "profile_traits_updates"] {
        assert!(
            w.iter()
                .any(|m| m.contains(&format!("'{table}'")) && m.contains("not found")),
            "{table} not named: {w:?}"
        );
    }
    assert!(!w.iter().any(|m| m.contains("'id_graph_updates'")), "{w:?}");

    for v in VIEWS {
        assert!(
            dest.join(v).join(format!("{v}.parquet")).is_file(),
            "{v} was not published"
        );
    }
    assert_eq!(read_rows(&dest.join("id_graph")), expected_id_graph());
    assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        Vec::<Vec<String>>::new()
    );
    assert_eq!(last_run(&dest)["views"][1]["view"], "external_id_mapping");
    assert_eq!(last_run(&dest)["views"][1]["rows"], 0);
    // Every profile of the id graph, no trait columns.
    assert_eq!(
        read_rows(&dest.join("profile_traits")),
        rows(&[&["p1", "NULL"], &["p2", "p1"]])
    );
}

#[test]
fn an_empty_table_file_is_read_as_no_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write_id_graph(&lake, "part-0.parquet", false);
    write_external_ids(&lake, "part-0.parquet", false);
    write(
        &lake,
        "profile_traits_updates",
        "part-0.parquet",
        false,
        vec![
            ("segment_id", s(&[])),
            ("email", s(&[])),
            ("seq", i64s(&[])),
            ("timestamp", ts(&[])),
        ],
    );
    let err = succeeds(&materialize(&lake, &dest));
    assert!(err.trim().is_empty(), "nothing to warn about:\n{err}");
    assert!(warnings(&dest).is_empty(), "{:?}", warnings(&dest));

    assert_eq!(read_rows(&dest.join("id_graph")), expected_id_graph());
    assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        expected_external_ids()
    );
    // The trait column is known from the schema but has no value.
    assert_eq!(
        column_names(&dest.join("profile_traits")),
        ["canonical_segment_id", "email", "merged_to"]
    );
    assert_eq!(
        read_rows(&dest.join("profile_traits")),
        rows(&[&["p1", "NULL", "NULL"], &["p2", "NULL", "p1"]])
    );
}

#[test]
fn rows_with_null_keys_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write(
        &lake,
        "id_graph_updates",
        "part-0.parquet",
        false,
        vec![
            (
                "segment_id",
                s(&[Some("p1"), None, Some("p2"), None, Some("p2")]),
            ),
            (
                "canonical_segment_id",
                s(&[Some("p1"), Some("p9"), Some("p2"), Some("p1"), Some("p1")]),
            ),
            ("seq", i64s(&[1, 5, 2, 6, 3])),
            ("timestamp", ts(&[1, 5, 2, 6, 3])),
        ],
    );
    write_external_ids(&lake, "part-0.parquet", false);
    write_traits(&lake, "part-0.parquet", false);
    succeeds(&materialize(&lake, &dest));
    assert!(
        warnings(&dest)
            .iter()
            .any(|w| w.contains("2 rows with NULL segment_id"))
    );

    let w = warnings(&dest);
    assert!(
        w.iter()
            .any(|m| m.contains("id_graph_updates") && m.contains("2 rows with NULL segment_id")),
        "{w:?}"
    );
    assert_eq!(w.len(), 1, "{w:?}");
    // The NULL rows are gone: no NULL segment_id, no p9.
    assert_good_views(&dest);
}

#[test]
fn duplicate_rows_in_two_files_give_the_same_views_as_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write_good_lake(&lake, false);
    write_id_graph(&lake, "day=2024-05-03/part-0.parquet", false);
    write_external_ids(&lake, "day=2024-05-03/part-0.parquet", false);
    write_traits(&lake, "day=2024-05-03/part-0.parquet", false);
    succeeds(&materialize(&lake, &dest));
    assert_good_views(&dest);
    let inputs = &last_run(&dest)["inputs"];
    assert_eq!(inputs.as_array().unwrap().len(), 3);
    for i in inputs.as_array().unwrap() {
        assert_eq!(i["files"], 2, "{i}");
    }
}

#[test]
fn unknown_extra_columns_are_ignored_except_as_traits() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    write(
        &lake,
        "id_graph_updates",
        "part-0.parquet",
        false,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p2"), Some("p2")])),
            (
                "canonical_segment_id",
                s(&[Some("p1"), Some("p2"), Some("p1")]),
            ),
            ("seq", i64s(&[1, 2, 3])),
            ("timestamp", ts(&[1, 2, 3])),
            ("mystery", i64s(&[7, 8, 9])),
            ("_loaded_by", s(&[Some("x"), Some("y"), Some("z")])),
        ],
    );
    write(
        &lake,
        "external_id_mapping_updates",
        "part-0.parquet",
        false,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p1"), Some("p2")])),
            (
                "external_id_type",
                s(&[Some("anonymous_id"), Some("email"), Some("anonymous_id")]),
            ),
            (
                "external_id_value",
                s(&[Some("a1"), Some("jane@x.com"), Some("a2")]),
            ),
            ("seq", i64s(&[1, 2, 3])),
            ("timestamp", ts(&[1, 2, 3])),
            ("mystery", s(&[Some("m"), None, Some("n")])),
        ],
    );
    // An older file without the new trait and a newer one with it (SPEC §2: read by
    // column name, missing columns are NULL).
    write_traits(&lake, "part-0.parquet", false);
    write(
        &lake,
        "profile_traits_updates",
        "part-1.parquet",
        false,
        vec![
            ("segment_id", s(&[Some("p1")])),
            ("favorite_color", s(&[Some("teal")])),
            ("context_ip", s(&[Some("10.0.0.1")])),
            ("_sdc_batched_at", s(&[Some("x")])),
            ("seq", i64s(&[5])),
            ("timestamp", ts(&[5])),
        ],
    );
    succeeds(&materialize(&lake, &dest));

    assert_eq!(
        column_names(&dest.join("id_graph")),
        ["segment_id", "canonical_segment_id", "timestamp"]
    );
    assert_eq!(read_rows(&dest.join("id_graph")), expected_id_graph());
    assert_eq!(
        column_names(&dest.join("external_id_mapping")),
        [
            "canonical_segment_id",
            "external_id_type",
            "external_id_value",
            "external_id_hash",
            "timestamp"
        ]
    );
    assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        expected_external_ids()
    );
    // An extra column of profile_traits_updates is a trait; context_* and _* are not.
    assert_eq!(
        column_names(&dest.join("profile_traits")),
        [
            "canonical_segment_id",
            "email",
            "plan",
            "favorite_color",
            "merged_to"
        ]
    );
    assert_eq!(
        read_rows(&dest.join("profile_traits")),
        rows(&[
            &["p1", "jane@x.com", "free", "teal", "NULL"],
            &["p2", "NULL", "NULL", "NULL", "p1"]
        ])
    );
}

/// Cuts `file` to half its bytes.
fn truncate_to_half(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.set_len(len / 2).unwrap();
}

#[test]
fn a_truncated_parquet_file_is_named_and_the_previous_views_stay() {
    let line = fails_and_keeps_previous_views(
        |lake| {
            let f = write_traits(lake, "day=2024-05-03/part-1.parquet", false);
            truncate_to_half(&f);
            f
        },
        &["not a readable Parquet file"],
    );
    assert!(
        line.contains("profile_traits_updates/day=2024-05-03/part-1.parquet"),
        "{line}"
    );
}

#[test]
fn a_truncated_id_graph_file_is_named_and_the_previous_views_stay() {
    fails_and_keeps_previous_views(
        |lake| {
            let f = lake.join("id_graph_updates/part-0.parquet");
            truncate_to_half(&f);
            f
        },
        &["not a readable Parquet file"],
    );
}

#[test]
fn a_garbage_parquet_file_is_named_and_the_previous_views_stay() {
    fails_and_keeps_previous_views(
        |lake| {
            let f = lake.join("external_id_mapping_updates/part-1.parquet");
            // Deterministic garbage: not Parquet at either end.
            let bytes: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            std::fs::write(&f, bytes).unwrap();
            f
        },
        &["not a readable Parquet file"],
    );
}

#[test]
fn a_tiny_or_empty_parquet_file_is_named() {
    // Shorter than a Parquet footer, and zero bytes (an interrupted upload).
    for bytes in [&b"PAR1"[..], &b""[..]] {
        fails_and_keeps_previous_views(
            |lake| {
                let f = lake.join("id_graph_updates/part-1.parquet");
                std::fs::write(&f, bytes).unwrap();
                f
            },
            &["not a readable Parquet file"],
        );
    }
}

#[test]
fn a_key_column_of_the_wrong_type_is_named_with_its_file() {
    fails_and_keeps_previous_views(
        |lake| {
            write(
                lake,
                "id_graph_updates",
                "part-1.parquet",
                false,
                vec![
                    ("segment_id", i64s(&[4])),
                    ("canonical_segment_id", s(&[Some("p4")])),
                    ("seq", i64s(&[4])),
                    ("timestamp", ts(&[4])),
                ],
            )
        },
        &["'segment_id'", "Int64"],
    );
}

#[test]
fn a_numeric_string_seq_is_read_as_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dest = tmp.path().join("views");
    // Numerically "12" > "9" (as text it would be the other way round); the
    // timestamps disagree with seq, so only a numeric seq gives p2 → p1.
    write(
        &lake,
        "id_graph_updates",
        "part-0.parquet",
        false,
        vec![
            ("segment_id", s(&[Some("p1"), Some("p2"), Some("p2")])),
            (
                "canonical_segment_id",
                s(&[Some("p1"), Some("p2"), Some("p1")]),
            ),
            ("seq", s(&[Some("1"), Some("9"), Some("12")])),
            ("timestamp", ts(&[1, 3, 2])),
        ],
    );
    write_external_ids(&lake, "part-0.parquet", false);
    write_traits(&lake, "part-0.parquet", false);
    succeeds(&materialize(&lake, &dest));
    assert_eq!(
        read_rows(&dest.join("id_graph")),
        rows(&[&["p1", "p1", &t(1)], &["p2", "p1", &t(2)]])
    );
    assert_eq!(
        read_rows(&dest.join("external_id_mapping")),
        expected_external_ids()
    );
}

#[test]
fn a_non_numeric_string_seq_in_id_graph_updates_is_named_with_its_file() {
    fails_and_keeps_previous_views(
        |lake| {
            write(
                lake,
                "id_graph_updates",
                "part-1.parquet",
                false,
                vec![
                    ("segment_id", s(&[Some("p3"), Some("p4")])),
                    ("canonical_segment_id", s(&[Some("p3"), Some("p4")])),
                    ("seq", s(&[Some("7"), Some("abc")])),
                    ("timestamp", ts(&[7, 8])),
                ],
            )
        },
        &[],
    );
}

#[test]
fn a_non_numeric_string_seq_in_profile_traits_updates_is_named_with_its_file() {
    // This one fails while a view is being written, after the id graph is resolved.
    fails_and_keeps_previous_views(
        |lake| {
            write(
                lake,
                "profile_traits_updates",
                "part-1.parquet",
                false,
                vec![
                    ("segment_id", s(&[Some("p1")])),
                    ("email", s(&[Some("jane@y.com")])),
                    ("seq", s(&[Some("abc")])),
                    ("timestamp", ts(&[9])),
                ],
            )
        },
        &[],
    );
}

#[test]
fn a_nonexistent_source_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("no-such-lake");
    let dest = tmp.path().join("views");
    let line = fails_naming(
        &materialize(&lake, &dest),
        &[lake.to_str().unwrap(), "no such directory"],
    );
    assert!(line.contains("invalid lake location"), "{line}");
    assert!(
        !dest.exists(),
        "nothing is written for a run that cannot start"
    );
}

#[test]
fn an_upper_case_lake_gives_the_same_views_as_a_lower_case_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    let (lower_views, upper_views) = (
        tmp.path().join("lower_views"),
        tmp.path().join("upper_views"),
    );
    write_good_lake(&lower, false);
    write_good_lake(&upper, true);
    assert!(upper.join("ID_GRAPH_UPDATES/part-0.parquet").is_file());
    succeeds(&materialize(&lower, &lower_views));
    let err = succeeds(&materialize(&upper, &upper_views));
    assert!(err.trim().is_empty(), "no table is missing:\n{err}");
    assert_good_views(&upper_views);
    assert_eq!(all_views(&upper_views), all_views(&lower_views));
    let tables: Vec<_> = last_run(&upper_views)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["table"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        tables,
        [
            "external_id_mapping_updates",
            "id_graph_updates",
            "profile_traits_updates"
        ]
    );
}

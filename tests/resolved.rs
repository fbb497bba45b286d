//! Events resolved to the person: the `<table>_resolved` views and the shell's
//! `resolved('<table>')` equal a join written by hand here, on lakes with merges
//! (chains without their recursive entries included).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

use crate::util::{column_names, materialize_ok, read_rows, run, run_ok, write_parquet};

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// Rows of the events under `lake/<table>` joined by hand with the published
/// id graph: every landed column, then the canonical of the event's segment_id
/// (the segment_id itself when the id graph does not know it).
fn joined_by_hand(lake: &Path, views: &Path, table: &str) -> Vec<Vec<String>> {
    let graph: BTreeMap<String, String> = read_rows(&views.join("id_graph"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let columns = column_names(&lake.join(table));
    let sid = columns.iter().position(|c| c == "segment_id").unwrap();
    let mut rows: Vec<Vec<String>> = read_rows(&lake.join(table))
        .into_iter()
        .map(|mut r| {
            let canonical = match r[sid].as_str() {
                "NULL" => "NULL".to_string(),
                s => graph.get(s).cloned().unwrap_or_else(|| s.to_string()),
            };
            r.push(canonical);
            r
        })
        .collect();
    rows.sort();
    rows
}

fn write_small_lake(lake: &Path) {
    // s2 merged into s1, then s3 into s2 with no recursive entry: s3's one hop
    // lands on s2, its canonical is s1. s4 alone.
    write_parquet(
        &lake.join("id_graph_updates/part-0.parquet"),
        vec![
            (
                "segment_id",
                strs(&[
                    Some("s1"),
                    Some("s2"),
                    Some("s3"),
                    Some("s4"),
                    Some("s2"),
                    Some("s3"),
                ]),
            ),
            (
                "canonical_segment_id",
                strs(&[
                    Some("s1"),
                    Some("s2"),
                    Some("s3"),
                    Some("s4"),
                    Some("s1"),
                    Some("s2"),
                ]),
            ),
            (
                "seq",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])) as ArrayRef,
            ),
        ],
    );
    write_parquet(
        &lake.join("tracks/day=2024-05-01/part-0.parquet"),
        vec![
            (
                "segment_id",
                strs(&[
                    Some("s1"),
                    Some("s2"),
                    Some("s3"),
                    Some("s9"),
                    None,
                    Some("s4"),
                ]),
            ),
            (
                "event_id",
                strs(&[
                    Some("e1"),
                    Some("e2"),
                    Some("e3"),
                    Some("e4"),
                    Some("e5"),
                    Some("e6"),
                ]),
            ),
            (
                "event",
                strs(&[
                    Some("Signed Up"),
                    Some("Order Completed"),
                    Some("Order Completed"),
                    Some("Cart Viewed"),
                    Some("Cart Viewed"),
                    Some("Signed Up"),
                ]),
            ),
        ],
    );
}

#[test]
fn resolved_views_equal_a_hand_written_join() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    write_small_lake(&lake);
    materialize_ok(
        &lake,
        &views,
        &["--views", "id_graph,tracks_resolved", "--quiet"],
    );
    assert_eq!(
        column_names(&views.join("tracks_resolved")),
        ["segment_id", "event_id", "event", "canonical_segment_id"]
    );
    let got = read_rows(&views.join("tracks_resolved"));
    assert_eq!(got, joined_by_hand(&lake, &views, "tracks"));
    // Spelled out: merged ids resolve through the chain, unknown ids keep themselves.
    let canonical: BTreeMap<String, String> =
        got.iter().map(|r| (r[1].clone(), r[3].clone())).collect();
    let expect = [
        ("e1", "s1"),
        ("e2", "s1"),
        ("e3", "s1"),
        ("e4", "s9"),
        ("e5", "NULL"),
        ("e6", "s4"),
    ];
    for (event, c) in expect {
        assert_eq!(canonical[event], c, "{event}");
    }

    // The shell's table function gives the same rows.
    let out = run_ok(&[
        "query",
        "--source",
        lake.to_str().unwrap(),
        "--format",
        "csv",
        "-c",
        "SELECT event_id, canonical_segment_id FROM resolved('tracks') ORDER BY event_id",
    ]);
    let csv: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        csv,
        [
            "event_id,canonical_segment_id",
            "e1,s1",
            "e2,s1",
            "e3,s1",
            "e4,s9",
            "e5,",
            "e6,s4"
        ]
    );

    // An unknown table is named with the event tables there are.
    let out = run(&[
        "materialize",
        "--source",
        lake.to_str().unwrap(),
        "--dest",
        views.to_str().unwrap(),
        "--views",
        "pages_resolved",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'pages'") && err.contains("tracks"), "{err}");
    let out = run(&[
        "query",
        "--source",
        lake.to_str().unwrap(),
        "-c",
        "SELECT * FROM resolved('id_graph_updates')",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("resolved('tracks')"),
        "{err}"
    );
}

#[test]
fn resolved_views_of_a_generated_lake_with_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    run_ok(&[
        "generate",
        "--dest",
        lake.to_str().unwrap(),
        "--profiles",
        "400",
        "--rows-per-file",
        "300",
        "--drop-recursive",
        "0.5",
        "--seed",
        "7",
        "--no-personas",
    ]);
    let out = materialize_ok(
        &lake,
        &views,
        &[
            "--views",
            "id_graph,identifies_resolved,tracks_resolved",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["views"].as_array().unwrap().len(), 3);
    let graph = read_rows(&views.join("id_graph"));
    assert!(
        graph.iter().filter(|r| r[0] != r[1]).count() > 10,
        "the lake has merges"
    );
    for table in ["identifies", "tracks"] {
        let view = views.join(format!("{table}_resolved"));
        let got = read_rows(&view);
        assert!(!got.is_empty());
        assert_eq!(got, joined_by_hand(&lake, &views, table), "{table}");
        // Some events sit on ids merged away since: the join matters.
        assert!(got.iter().any(|r| r[0] != *r.last().unwrap()), "{table}");
    }
    // Off by default.
    let plain = tmp.path().join("plain");
    materialize_ok(&lake, &plain, &["--quiet"]);
    assert!(!plain.join("tracks_resolved").exists());
}

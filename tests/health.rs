//! The identity health report: its Parquet tables on a lake with known merges,
//! a cycle, a missing recursive entry and identifiers above their limits; then
//! `psync-lake report`, whose page is parsed and must hold every chart and the
//! numbers (and, when Chromium is installed, is screenshotted as a test artifact).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::util::{materialize_ok, read_rows, rows, run, run_ok, write_parquet};

const DAY: i64 = 86_400_000_000;
/// 2024-03-01T00:00:00Z in µs.
const MARCH_1: i64 = 1_709_251_200_000_000;

fn strs(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn opt_strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// Day `d` of March 2024, plus `minutes`.
fn ts(v: &[(i64, i64)]) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from(
            v.iter()
                .map(|(d, m)| MARCH_1 + (d - 1) * DAY + m * 60_000_000)
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    )
}

/// a..h created on March 1; b→a (m1, March 2); a→d with its recursive entry
/// b→d (m2, March 3); c→e (m3, March 3); e→f without the recursive entry for c
/// (m4, March 4); g→h and h→g, a cycle (m5, m6, March 4).
fn write_lake(lake: &Path) {
    // (segment_id, canonical_segment_id, triggering_event_id, seq, (day, minute))
    type IdRow = (&'static str, &'static str, &'static str, i64, (i64, i64));
    let ids: Vec<IdRow> = vec![
        ("a", "a", "c_a", 1, (1, 1)),
        ("b", "b", "c_b", 2, (1, 2)),
        ("c", "c", "c_c", 3, (1, 3)),
        ("d", "d", "c_d", 4, (1, 4)),
        ("e", "e", "c_e", 5, (1, 5)),
        ("f", "f", "c_f", 6, (1, 6)),
        ("g", "g", "c_g", 7, (1, 7)),
        ("h", "h", "c_h", 8, (1, 8)),
        ("b", "a", "m1", 10, (2, 0)),
        ("a", "d", "m2", 11, (3, 0)),
        ("b", "d", "m2", 12, (3, 0)),
        ("c", "e", "m3", 13, (3, 5)),
        ("e", "f", "m4", 14, (4, 0)),
        ("g", "h", "m5", 20, (4, 1)),
        ("h", "g", "m6", 21, (4, 2)),
    ];
    write_parquet(
        &lake.join("id_graph_updates/part-0.parquet"),
        vec![
            (
                "segment_id",
                strs(&ids.iter().map(|r| r.0).collect::<Vec<_>>()),
            ),
            (
                "canonical_segment_id",
                strs(&ids.iter().map(|r| r.1).collect::<Vec<_>>()),
            ),
            ("triggering_event_type", strs(&vec!["identify"; ids.len()])),
            (
                "triggering_event_id",
                strs(&ids.iter().map(|r| r.2).collect::<Vec<_>>()),
            ),
            (
                "seq",
                Arc::new(Int64Array::from(
                    ids.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ),
            (
                "timestamp",
                ts(&ids.iter().map(|r| r.4).collect::<Vec<_>>()),
            ),
            ("uuid_ts", ts(&ids.iter().map(|r| r.4).collect::<Vec<_>>())),
        ],
    );
    // d's profile: two user_ids (limit 1). f's profile: six emails (limit 5). g: one email.
    let mut ext: Vec<(&str, &str, String)> = vec![
        ("a", "user_id", "u1".into()),
        ("b", "user_id", "u2".into()),
        ("g", "email", "g@example.com".into()),
    ];
    for (i, sid) in ["c", "e", "f", "c", "e", "f"].iter().enumerate() {
        ext.push((sid, "email", format!("f{i}@example.com")));
    }
    write_parquet(
        &lake.join("external_id_mapping_updates/part-0.parquet"),
        vec![
            (
                "segment_id",
                strs(&ext.iter().map(|r| r.0).collect::<Vec<_>>()),
            ),
            (
                "external_id_type",
                strs(&ext.iter().map(|r| r.1).collect::<Vec<_>>()),
            ),
            (
                "external_id_value",
                strs(&ext.iter().map(|r| r.2.as_str()).collect::<Vec<_>>()),
            ),
            (
                "seq",
                Arc::new(Int64Array::from((1..=ext.len() as i64).collect::<Vec<_>>())),
            ),
        ],
    );
    // d's profile has an email trait (landed on a); f's only row has no value.
    write_parquet(
        &lake.join("profile_traits_updates/part-0.parquet"),
        vec![
            ("segment_id", strs(&["a", "c"])),
            ("email", opt_strs(&[Some("a@example.com"), None])),
            ("seq", Arc::new(Int64Array::from(vec![30, 31]))),
        ],
    );
}

fn health(views: &Path, table: &str) -> Vec<Vec<String>> {
    read_rows(&views.join("_psync/health").join(table))
}

/// The page's `<figure id>`s holding an `<svg>`, its `data-key` numbers, and
/// its text, read with an XML parser (the page is well-formed).
struct Page {
    charts: BTreeSet<String>,
    numbers: BTreeMap<String, String>,
    text: String,
}

fn parse(html: &str) -> Page {
    let mut reader = Reader::from_str(html);
    let mut page = Page {
        charts: BTreeSet::new(),
        numbers: BTreeMap::new(),
        text: String::new(),
    };
    let mut figure: Option<String> = None;
    let mut key: Option<String> = None;
    let attr = |e: &quick_xml::events::BytesStart, name: &[u8]| {
        e.attributes()
            .map(|a| a.unwrap())
            .find(|a| a.key.as_ref() == name)
            .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
    };
    loop {
        match reader.read_event().expect("the page is well-formed") {
            Event::Start(e) => match e.name().as_ref() {
                b"figure" => figure = attr(&e, b"id"),
                b"svg" => {
                    if let Some(f) = figure.take() {
                        page.charts.insert(f);
                    }
                }
                b"td" => key = attr(&e, b"data-key"),
                _ => {}
            },
            Event::Text(t) => {
                let t = t.decode().unwrap().into_owned();
                if let Some(k) = key.take() {
                    page.numbers.insert(k, t.clone());
                }
                page.text.push_str(&t);
            }
            Event::GeneralRef(r) => {
                // Entities (&amp; ...) split the text; keep a placeholder.
                let _ = r;
                page.text.push('&');
            }
            Event::End(e) if e.name().as_ref() == b"td" => key = None,
            Event::Eof => break,
            _ => {}
        }
    }
    page
}

#[test]
fn health_tables_and_the_report_page_hold_the_known_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    write_lake(&lake);
    materialize_ok(&lake, &views, &["--quiet"]);
    assert_eq!(
        read_rows(&views.join("id_graph"))
            .into_iter()
            .map(|r| format!("{}>{}", r[0], r[1]))
            .collect::<Vec<_>>(),
        ["a>d", "b>d", "c>f", "d>d", "e>f", "f>f", "g>g", "h>g"]
    );

    let summary = health(&views, "summary");
    assert_eq!(summary.len(), 1);
    // After run_id and computed_at: segment_ids, profiles, merged_away,
    // merged_profiles, largest_profile, creations, merges, cycles_broken,
    // missing_recursive_entries, profiles_without_traits, profiles_over_identifier_limits.
    assert_eq!(
        summary[0][2..],
        ["8", "3", "5", "3", "3", "8", "6", "1", "1", "2", "2"]
    );
    assert_eq!(
        health(&views, "daily"),
        rows(&[
            &["2024-03-01", "8", "0"],
            &["2024-03-02", "0", "1"],
            &["2024-03-03", "0", "2"],
            &["2024-03-04", "0", "3"],
        ])
    );
    assert_eq!(
        health(&views, "profile_sizes"),
        rows(&[&["2", "1"], &["3", "2"]])
    );
    assert_eq!(
        health(&views, "identifier_limits"),
        rows(&[
            &["email", "5", "2", "1", "6"],
            &["user_id", "1", "1", "1", "2"]
        ])
    );
    assert_eq!(
        health(&views, "identifier_counts"),
        rows(&[
            &["email", "1", "1"],
            &["email", "6", "1"],
            &["user_id", "2", "1"]
        ])
    );
    assert_eq!(
        health(&views, "missing_recursive"),
        rows(&[&["c", "e", "f"]])
    );

    // The page.
    let html_path = tmp.path().join("report.html");
    let out = run_ok(&[
        "report",
        "--dest",
        views.to_str().unwrap(),
        "--out",
        html_path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 merge cycles were broken"), "{stderr}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    let page = parse(&html);
    assert_eq!(
        page.charts,
        psync_report::CHARTS
            .iter()
            .map(|c| c.to_string())
            .collect::<BTreeSet<_>>()
    );
    let expected: BTreeMap<String, String> = [
        ("segment_ids", "8"),
        ("profiles", "3"),
        ("merged_away", "5"),
        ("merged_profiles", "3"),
        ("largest_profile", "3"),
        ("creations", "8"),
        ("merges", "6"),
        ("cycles_broken", "1"),
        ("missing_recursive_entries", "1"),
        ("profiles_without_traits", "2"),
        ("profiles_over_identifier_limits", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(page.numbers, expected);
    for needle in [
        "8 segment_ids resolve to 3 profiles",
        "the busiest day, 2024-03-04, had 3 merges",
        "1 recursive entries are missing",
        "2 profiles hold more identifiers",
        "user_id",
        "email",
    ] {
        assert!(page.text.contains(needle), "page lacks {needle:?}");
    }
    // The page loads nothing: no script, no external reference.
    for banned in ["<script", "src=\"http", "href=\"http", "@import"] {
        assert!(!html.contains(banned), "{banned}");
    }
    // The chart axes carry the days.
    assert!(html.contains("2024-03-01"));

    let out = run_ok(&[
        "report",
        "--dest",
        views.to_str().unwrap(),
        "--summary-only",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("8 segment_ids resolve to 3 profiles")
    );

    screenshot(&html_path);
}

#[test]
fn a_destination_without_a_report_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "report",
        "--dest",
        tmp.path().to_str().unwrap(),
        "--out",
        tmp.path().join("r.html").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no health report under") && err.contains("materialize"),
        "{err}"
    );
}

#[test]
fn an_incremental_run_writes_the_same_health_as_a_full_one() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    write_lake(&lake);
    let full = tmp.path().join("full");
    let inc = tmp.path().join("inc");
    for (dest, mode) in [(&full, "full"), (&inc, "incremental")] {
        materialize_ok(&lake, dest, &["--mode", mode, "--quiet"]);
    }
    for table in psync_core::health::TABLES {
        let (mut a, mut b) = (health(&full, table), health(&inc, table));
        if table == "summary" {
            // run_id and computed_at differ.
            a[0].drain(..2);
            b[0].drain(..2);
        }
        assert_eq!(a, b, "{table}");
    }
}

/// Opens the page in headless Chromium when one is installed and keeps a
/// screenshot under the target folder: an artifact, never a condition (CI has
/// no Chromium, and a Chromium that cannot start here only says so).
fn screenshot(html: &Path) {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|b| PathBuf::from("/usr/bin").join(b))
        .find(|p| p.is_file())
    else {
        eprintln!("no Chromium in /usr/bin: report screenshot skipped");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("health-report.png");
    let _ = std::fs::remove_file(&png);
    let child = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,2050",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", html.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("Chromium did not start: report screenshot skipped");
        return;
    };
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if png.is_file() {
        eprintln!("report screenshot: {}", png.display());
    } else {
        eprintln!("Chromium wrote no screenshot: skipped");
    }
}

//! The query pack (`queries/`, `\run`, `--run`, `-v` / `\set`) on the sample lake
//! and on a generated lake with other trait names; and the shell habits: `\o FILE`
//! in every format, a file path as a table, the progress line in a terminal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_snapshot, bin, copy_dir, read_batches, run, run_ok};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> String {
    root().join("data/sample").to_str().unwrap().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The pack's files, sorted.
fn pack_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "queries/ holds {} files", files.len());
    files
}

fn stem(f: &Path) -> String {
    f.file_stem().unwrap().to_str().unwrap().to_string()
}

/// `query --source LAKE -f FILE -v ... --format csv`.
fn run_file(lake: &str, file: &Path, vars: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec![
        "query".to_string(),
        "--source".into(),
        lake.into(),
        "-f".into(),
        file.to_str().unwrap().into(),
        "--format".into(),
        "csv".into(),
    ];
    for (k, v) in vars {
        args.push("-v".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

/// `query --source LAKE --format csv ARGS`, which must succeed: its stdout.
fn csv(lake: &str, args: &[&str]) -> String {
    let mut all = vec!["query", "--source", lake, "--format", "csv"];
    all.extend_from_slice(args);
    text(&run_ok(&all).stdout)
}

/// One CSV line per row after the header.
fn csv_rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Runs every pack file at once (one process each): (name, output).
fn run_pack(lake: &str, vars: &[(&str, &str)]) -> Vec<(String, std::process::Output)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pack_files()
            .into_iter()
            .map(|f| s.spawn(move || (stem(&f), run_file(lake, &f, vars))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The one-line error of a failed run.
fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{err}");
    lines[0].to_string()
}

// ---------------------------------------------------------------------------
// The pack

#[test]
fn every_pack_query_matches_its_snapshot_on_the_sample_lake() {
    let vars = [("profile", "sid_000000b4"), ("trait", "plan")];
    for (name, out) in run_pack(&sample(), &vars) {
        if name == "person_pages" {
            // The sample lake lands no `pages`: one clear line, not an SQL error.
            let line = one_line_error(&out);
            assert!(line.contains("this lake has no table 'pages'"), "{line}");
            continue;
        }
        assert!(
            out.status.success(),
            "{name} failed on data/sample: {}",
            text(&out.stderr)
        );
        let csv = text(&out.stdout);
        assert!(csv.lines().count() >= 2, "{name} returns no rows:\n{csv}");
        assert_snapshot(&format!("queries/{name}.csv"), &csv);
    }
}

#[test]
fn every_pack_query_runs_on_a_lake_with_other_trait_names() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let traits = ["tier", "score", "region", "vip", "joined_at"];
    run_ok(&[
        "generate",
        "--dest",
        lake.to_str().unwrap(),
        "--profiles",
        "300",
        "--traits",
        "5",
        "--trait-names",
        &traits.join(","),
        "--seed",
        "11",
        "--rows-per-file",
        "300",
        "--drop-recursive",
        "0.5",
        "--merge-rate",
        "0.4",
    ]);
    // A `pages` table: the generated tracks under another name (same columns).
    copy_dir(&lake.join("tracks"), &lake.join("pages"));
    let source = lake.to_str().unwrap();
    // The person with the most merged segment_ids.
    let who = csv(
        source,
        &[
            "-c",
            "SELECT canonical_segment_id FROM id_graph GROUP BY 1 \
         ORDER BY count(*) DESC, 1 LIMIT 1",
        ],
    );
    let who = who.lines().nth(1).unwrap().to_string();
    let results: std::collections::BTreeMap<String, String> =
        run_pack(source, &[("profile", &who), ("trait", "tier")])
            .into_iter()
            .map(|(name, out)| {
                assert!(
                    out.status.success(),
                    "{name} failed on a lake with traits {traits:?}: {}",
                    text(&out.stderr)
                );
                let csv = text(&out.stdout);
                assert!(csv.lines().count() >= 2, "{name} returns no rows:\n{csv}");
                (name, csv)
            })
            .collect();
    // The trait-generic answers name exactly this lake's traits.
    let want: BTreeSet<String> = traits.iter().map(|t| t.to_string()).collect();
    let completeness: BTreeSet<String> = csv_rows(&results["trait_completeness"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(completeness, want);
    for row in csv_rows(&results["trait_completeness"]) {
        let (with, of): (u64, u64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        assert!(with <= of && of > 0, "{row:?}");
    }
    let provenance: BTreeSet<String> = csv_rows(&results["trait_provenance"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(
        provenance.is_subset(&want) && !provenance.is_empty(),
        "{provenance:?}"
    );
    assert!(
        results["customers"]
            .lines()
            .next()
            .unwrap()
            .contains("tier")
    );
    // trait_history: the current value is among the person's updates.
    let history = csv_rows(&results["trait_history"]);
    assert!(
        history.iter().any(|r| r.last().unwrap() == "true"),
        "{history:?}"
    );
    // person_pages reads `pages`, a copy of `tracks`: the person's track events.
    let events = csv_rows(&results["person_events"])
        .into_iter()
        .filter(|r| r[3] != "identify")
        .count();
    assert_eq!(csv_rows(&results["person_pages"]).len(), events);
    // Every identifier of the person resolves to the person.
    for row in csv_rows(&results["person_identifiers"]) {
        let id = format!("{}:{}", row[0], row[1]);
        let out = run_ok(&["explain", "--source", source, &id, "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["canonical_segment_id"], who.as_str(), "{id}");
    }
}

#[test]
fn a_missing_parameter_a_missing_table_and_an_unknown_query_each_give_one_line() {
    let s = sample();
    let line = one_line_error(&run(&["query", "--source", &s, "--run", "person_events"]));
    assert!(
        line.contains("needs the parameter 'profile'") && line.contains("-v profile="),
        "{line}"
    );
    let line = one_line_error(&run(&["query", "--source", &s, "-c", "SELECT :who"]));
    assert!(line.contains("'who'"), "{line}");
    let line = one_line_error(&run(&[
        "query",
        "--source",
        &s,
        "-c",
        "SELECT * FROM pages",
    ]));
    assert!(line.contains("this lake has no table 'pages'"), "{line}");
    let line = one_line_error(&run(&["query", "--source", &s, "--run", "nope"]));
    assert!(line.contains("merges_per_hour"), "{line}");
}

#[test]
fn run_and_set_in_the_shell_equal_the_command_line() {
    let s = sample();
    let flags = csv(
        &s,
        &[
            "--run",
            "trait_history",
            "-v",
            "profile=sid_000000b4",
            "-v",
            "trait=plan",
        ],
    );
    let set = csv(
        &s,
        &[
            "-c",
            "\\set profile sid_000000b4",
            "-c",
            "\\run trait_history trait=plan",
        ],
    );
    assert_eq!(flags, set);
    assert!(flags.lines().count() >= 2);
    // An ID given as type:value resolves to the same person.
    let by_email = csv(
        &s,
        &[
            "-c",
            "\\run person_identifiers profile=email:user193@example.com",
        ],
    );
    let by_sid = csv(
        &s,
        &["--run", "person_identifiers", "-v", "profile=sid_000000b4"],
    );
    assert_eq!(by_email, by_sid);
    // `\run` alone and `--run list` list the pack, with parameters.
    let list = text(&run_ok(&["query", "--source", &s, "-c", "\\run"]).stdout);
    for f in pack_files() {
        assert!(
            list.contains(&stem(&f)),
            "{} missing from:\n{list}",
            stem(&f)
        );
    }
    assert!(
        list.contains("trait_history profile=... trait=..."),
        "{list}"
    );
    let list2 = text(&run_ok(&["query", "--source", &s, "--run", "list"]).stdout);
    assert_eq!(list, list2);
}

// ---------------------------------------------------------------------------
// Shell habits

#[test]
fn o_writes_each_format_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let q = "SELECT segment_id, canonical_segment_id FROM id_graph ORDER BY segment_id";
    let path = |ext: &str| dir.path().join(format!("out.{ext}"));
    let mut args = vec!["query".to_string(), "--source".into(), sample()];
    for ext in ["csv", "json", "ndjson", "parquet"] {
        args.extend(["-c".into(), format!("\\o {}", path(ext).display())]);
        args.extend(["-c".into(), q.into()]);
    }
    // A second result with the same columns appends to the Parquet file.
    args.extend(["-c".into(), q.into(), "-c".into(), "\\o".into()]);
    args.extend([
        "-c".into(),
        "SELECT 1 AS after".into(),
        "--format".into(),
        "csv".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = text(&run_ok(&args).stdout);
    let n = text(
        &run_ok(&[
            "query",
            "--source",
            &sample(),
            "--format",
            "csv",
            "-c",
            "SELECT count(*) FROM id_graph",
        ])
        .stdout,
    )
    .lines()
    .nth(1)
    .unwrap()
    .parse::<usize>()
    .unwrap();
    assert!(n > 100);
    // The terminal gets one line per result written, then results again after `\o`.
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with(&format!("{n} rows written to")))
            .count(),
        5,
        "{out}"
    );
    assert!(out.ends_with("after\n1\n"), "{out}");
    let csv = std::fs::read_to_string(path("csv")).unwrap();
    assert_eq!(csv.lines().count(), n + 1);
    assert_eq!(csv.lines().next(), Some("segment_id,canonical_segment_id"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), n);
    let ndjson = std::fs::read_to_string(path("ndjson")).unwrap();
    assert_eq!(ndjson.lines().count(), n);
    for l in ndjson.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["segment_id"].is_string());
    }
    let parquet_dir = dir.path().join("pq");
    std::fs::create_dir(&parquet_dir).unwrap();
    std::fs::copy(path("parquet"), parquet_dir.join("out.parquet")).unwrap();
    let rows: usize = read_batches(&parquet_dir)
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 2 * n);
    // pyarrow reads it too (the venv's, when the suite runs under .ci/run).
    if let Some(python) = std::env::var_os("PSYNC_PYTHON") {
        let out = Command::new(python)
            .args([
                "-c",
                "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
                 print(t.num_rows, ','.join(t.column_names))",
                path("parquet").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).trim(),
            format!("{} segment_id,canonical_segment_id", 2 * n)
        );
    }
    // Other columns into the same Parquet file: one line, the file stays readable.
    let bad = path("other.parquet");
    let out = run(&[
        "query",
        "--source",
        &sample(),
        "-c",
        &format!("\\o {}", bad.display()),
        "-c",
        "SELECT 1 AS a",
        "-c",
        "SELECT 'x' AS b",
    ]);
    let line = one_line_error(&out);
    assert!(line.contains("other columns"), "{line}");
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    std::fs::copy(&bad, bad_dir.join("x.parquet")).unwrap();
    assert_eq!(
        read_batches(&bad_dir)
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        1
    );
    // An extension that names no format.
    let line = one_line_error(&run(&[
        "query",
        "--source",
        &sample(),
        "-c",
        "\\o out.xlsx",
    ]));
    assert!(
        line.contains("out.xlsx") && line.contains(".parquet"),
        "{line}"
    );
}

#[test]
fn a_file_path_or_glob_is_a_table() {
    let glob = root().join("data/sample/tracks/**/*.parquet");
    let by_path = csv(
        &sample(),
        &[
            "-c",
            &format!(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM '{}'",
                glob.display()
            ),
        ],
    );
    let by_name = csv(
        &sample(),
        &[
            "-c",
            "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM tracks",
        ],
    );
    assert_eq!(by_path, by_name);
    let one = walk_first_parquet(&root().join("data/sample/id_graph_updates"));
    let out = csv(
        &sample(),
        &[
            "-c",
            &format!("SELECT count(*) AS n FROM '{}'", one.display()),
        ],
    );
    let n: usize = out.lines().nth(1).unwrap().parse().unwrap();
    assert!(n > 0);
}

fn walk_first_parquet(dir: &Path) -> PathBuf {
    crate::util::walk(dir)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap()
}

/// A statement that keeps the engine busy for a few seconds.
const SLOW: &str = "SELECT count(*) AS n FROM generate_series(1, 1500000000)";

#[test]
fn the_progress_line_shows_in_a_terminal_and_never_in_script_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["query", "--source", &sample()])
        .env("PSYNC_HISTORY", dir.path().join("history"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let opts = rexpect::session::Options::new()
        .timeout_ms(Some(120_000))
        .strip_ansi_escape_codes(true);
    let mut p = rexpect::spawn_with_options(cmd, opts).unwrap();
    p.exp_string("psync> ").unwrap();
    p.send_line(&format!("{SLOW};")).unwrap();
    // (rexpect reads bytes one by one: the `·` between arrives as two characters)
    p.exp_regex(r"[0-9]+ rows, [0-9.]+ [KMGT]?B scanned .+ [0-9.]+ s")
        .unwrap();
    p.exp_string("1500000000").unwrap();
    p.exp_string("psync> ").unwrap();
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
    // Script mode, with stderr a pipe: the rows and nothing else.
    let out = run_ok(&[
        "query",
        "--source",
        &sample(),
        "--format",
        "csv",
        "-c",
        SLOW,
    ]);
    assert_eq!(text(&out.stdout), "n\n1500000000\n");
    assert!(
        !text(&out.stderr).contains("scanned"),
        "{}",
        text(&out.stderr)
    );
}

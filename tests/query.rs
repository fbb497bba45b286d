//! `psync-lake query`: the sample queries of `queries/`, script mode, views on
//! demand against published ones, and the interactive prompt through a pseudo-terminal.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{bin, run, run_ok};

const VIEWS: [&str; 3] = ["id_graph", "external_id_mapping", "profile_traits"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> String {
    root().join("data/sample").to_str().unwrap().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `query --source data/sample` with `args`, which must succeed; its stdout.
fn query_ok(args: &[&str]) -> String {
    let source = sample();
    let mut all = vec!["query", "--source", &source];
    all.extend_from_slice(args);
    stdout(&run_ok(&all))
}

/// Runs `query --source data/sample` with `args` and `input` on stdin (a pipe).
fn query_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["query", "--source", &sample()])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------
// Script mode

#[test]
fn repeated_c_runs_in_order_and_backslash_commands_mix_with_sql() {
    let out = query_ok(&[
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a",
        "-c",
        "SELECT 2 AS b; SELECT 3 AS c;",
        "-c",
        "\\d id_graph",
    ]);
    assert_eq!(
        out,
        "a\n1\nb\n2\nc\n3\nid_graph (view (on demand))\n  \
         segment_id                       Utf8\n  \
         canonical_segment_id             Utf8\n  \
         timestamp                        Timestamp(µs, \"UTC\")\n"
    );
    // \d lists every landed table and view.
    let list = query_ok(&["-c", "\\d"]);
    for name in [
        "id_graph_updates",
        "external_id_mapping_updates",
        "profile_traits_updates",
        "identifies",
        "tracks",
    ]
    .iter()
    .chain(&VIEWS)
    {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{list}"
        );
    }
}

#[test]
fn a_file_of_several_statements_runs_them_all() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("several.sql");
    std::fs::write(
        &f,
        "-- three statements\nSELECT count(*) AS n FROM id_graph;\n\
         SELECT count(*) AS m\n  FROM tracks\n  WHERE event = 'Order Completed';\n\
         SELECT 'a;b' AS s;\n",
    )
    .unwrap();
    let out = query_ok(&["--format", "csv", "-f", f.to_str().unwrap()]);
    assert_eq!(out, "n\n300\nm\n307\ns\na;b\n");
    // -c statements run before -f files.
    let out = query_ok(&[
        "--format",
        "csv",
        "-f",
        f.to_str().unwrap(),
        "-c",
        "SELECT 0 AS first",
    ]);
    assert!(out.starts_with("first\n0\nn\n300\n"), "{out}");
}

#[test]
fn piped_stdin_runs_statements_and_commands() {
    let out = query_stdin(
        &["--format", "csv"],
        "SELECT count(*) AS n\nFROM id_graph;\n\\format ndjson\nSELECT 1 AS one;\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "n\n300\noutput format is Ndjson\n{\"one\":1}\n"
    );
}

#[test]
fn every_format() {
    let sql = "SELECT segment_id, canonical_segment_id FROM id_graph \
               WHERE canonical_segment_id = 'sid_000000b4' ORDER BY segment_id";
    // table: aligned, with a row count.
    let table = query_ok(&["--format", "table", "-c", sql]);
    assert!(
        table.contains("| segment_id   | canonical_segment_id |"),
        "{table}"
    );
    assert!(
        table.contains("| sid_000000c1 | sid_000000b4         |"),
        "{table}"
    );
    assert!(table.contains("\n6 rows in "), "{table}");
    let one = query_ok(&["-c", "SELECT 1"]);
    assert!(one.contains("\n1 row in "), "{one}");
    // table truncates past --max-rows and says so.
    let cut = query_ok(&["--max-rows", "2", "-c", sql]);
    assert!(cut.contains("6 rows (showing the first 2"), "{cut}");
    assert_eq!(
        cut.lines().filter(|l| l.starts_with("| sid_")).count(),
        2,
        "{cut}"
    );

    // csv: a header, then one line per row.
    let csv = query_ok(&["--format", "csv", "-c", sql]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "segment_id,canonical_segment_id");
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[1], "sid_00000007,sid_000000b4");
    // ... and a header even with no rows.
    let empty = query_ok(&[
        "--format",
        "csv",
        "-c",
        "SELECT * FROM id_graph WHERE false",
    ]);
    assert_eq!(empty, "segment_id,canonical_segment_id,timestamp\n");

    // json: one array of objects.
    let json = query_ok(&["--format", "json", "-c", sql]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 6);
    assert_eq!(arr[5]["segment_id"], "sid_000000c1");
    assert_eq!(arr[5]["canonical_segment_id"], "sid_000000b4");
    let none = query_ok(&["--format", "json", "-c", "SELECT 1 AS a WHERE false"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&none).unwrap(),
        serde_json::json!([])
    );

    // ndjson: one object per line.
    let nd = query_ok(&["--format", "ndjson", "-c", sql]);
    let objs: Vec<serde_json::Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 6);
    assert!(
        objs.iter()
            .all(|o| o["canonical_segment_id"] == "sid_000000b4")
    );
}

#[test]
fn an_sql_error_exits_non_zero_with_one_line_on_stderr() {
    let source = sample();
    let out = run(&[
        "query",
        "--source",
        &source,
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS ok",
        "-c",
        "SELECT no_such_column FROM id_graph",
        "-c",
        "SELECT 2 AS never",
    ]);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(2));
    // The statement before ran; nothing of the failing one or after it.
    assert_eq!(stdout(&out), "ok\n1\n");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("no_such_column"), "{err}");

    // A syntax error, and an unknown table, from stdin and from a file.
    let out = query_stdin(&[], "SELEC 1;\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.sql");
    std::fs::write(&f, "SELECT * FROM no_such_table;\n").unwrap();
    let out = run(&["query", "--source", &source, "-f", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.sql") && err.contains("no_such_table"),
        "{err}"
    );
    // An unknown backslash command.
    let out = run(&["query", "--source", &source, "-c", "\\nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unknown command"));
}

#[test]
fn a_closed_pipe_exits_quietly() {
    // `psync-lake query ... | head -1` on a large result (1.4 million rows).
    for format in ["table", "csv", "json", "ndjson"] {
        let mut child = Command::new(bin())
            .args(["query", "--source", &sample(), "--format", format])
            // Tables print at the end: 20,000 rows are far more than a pipe buffers.
            .args(["--max-rows", "20000"])
            .args([
                "-c",
                "SELECT a.*, b.event_id AS b_event FROM tracks a, tracks b",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{format}: no output");
        drop(reader);
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{format}: {:?} {err}", out.status);
        assert!(!err.contains("panicked"), "{format}: {err}");
        assert!(err.is_empty(), "{format}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Views on demand vs published

fn sorted_csv(csv: &str) -> (String, Vec<String>) {
    let mut lines = csv.lines().map(str::to_string);
    let header = lines.next().unwrap_or_default();
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    (header, rows)
}

#[test]
fn views_on_demand_equal_published_views() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let dest = dest.to_str().unwrap();
    let source = sample();
    run_ok(&["materialize", "--source", &source, "--dest", dest]);

    let listed = query_ok(&["--dest", dest, "-c", "\\d"]);
    for v in VIEWS {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{v} ")))
            .unwrap();
        assert!(line.contains("view (published)"), "{listed}");
        let sql = format!("SELECT * FROM {v}");
        let on_demand = sorted_csv(&query_ok(&["--format", "csv", "-c", &sql]));
        let published = sorted_csv(&query_ok(&["--dest", dest, "--format", "csv", "-c", &sql]));
        assert!(!on_demand.1.is_empty(), "{v} is empty");
        assert_eq!(on_demand.0, published.0, "{v}: columns differ");
        assert_eq!(
            on_demand.1.len(),
            published.1.len(),
            "{v}: row counts differ"
        );
        assert!(on_demand == published, "{v}: rows differ");
    }
    assert_eq!(
        query_ok(&[
            "--dest",
            dest,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM id_graph"
        ]),
        "n\n300\n"
    );
}

// ---------------------------------------------------------------------------
// Interactive mode, through a pseudo-terminal

const PROMPT: &str = "psync> ";

fn interactive(history: &Path) -> rexpect::session::PtySession {
    let mut cmd = Command::new(bin());
    cmd.args(["query", "--source", &sample()])
        .env("PSYNC_HISTORY", history)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let opts = rexpect::session::Options::new()
        .timeout_ms(Some(15_000))
        .strip_ansi_escape_codes(true);
    let mut p = rexpect::spawn_with_options(cmd, opts).unwrap();
    p.exp_string("\\d lists them").unwrap();
    p.exp_string(PROMPT).unwrap();
    p
}

/// The process whose environment holds `needle` (`VAR=value`), from /proc (Linux).
fn pid_with_env(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        env.split(|&b| b == 0)
            .any(|v| v == needle.as_bytes())
            .then_some(pid)
    })
}

/// User plus system CPU time of a process, in seconds (Linux, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the name: state is field 0, utime 11, stime 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Sends `\q` and checks the shell exits with status 0.
fn quit(mut p: rexpect::session::PtySession) {
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
    let status = p.process().wait().unwrap();
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[test]
fn interactive_session() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    let mut p = interactive(&history);

    // A statement over two lines runs at its ';'.
    p.send_line("SELECT count(*) AS n").unwrap();
    p.send_line("FROM id_graph;").unwrap();
    p.exp_string("| 300 |").unwrap();
    p.exp_string("1 row in").unwrap();
    p.exp_string(PROMPT).unwrap();

    // \d lists the tables and the views.
    p.send_line("\\d").unwrap();
    for v in VIEWS {
        p.exp_string(&format!("{v} ")).unwrap();
    }
    p.exp_string(PROMPT).unwrap();
    p.send_line("\\d profile_traits").unwrap();
    p.exp_string("merged_to").unwrap();
    p.exp_string(PROMPT).unwrap();

    // A bad statement prints an error and the prompt comes back.
    p.send_line("SELECT nope FROM id_graph;").unwrap();
    p.exp_string("error: ").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_line("\\format bogus").unwrap();
    p.exp_string("error: unknown format").unwrap();
    p.exp_string(PROMPT).unwrap();

    // Ctrl-C cancels a long query (hours when left alone); the shell keeps working.
    // (A cross join of tracks would do for the prompt, but DataFusion's join checks
    // for cancellation only between multi-second steps; a scan of `range` yields often.)
    p.send_line("SELECT sum(value % 7) FROM range(1000000000000);")
        .unwrap();
    // Let the line reach the shell and the query start before the interrupt.
    std::thread::sleep(Duration::from_millis(700));
    p.send_control('c').unwrap();
    p.exp_string("cancelled").unwrap();
    p.exp_string(PROMPT).unwrap();
    // ... and the query stopped: the shell idles at its prompt.
    if let Some(pid) = pid_with_env(&format!("PSYNC_HISTORY={}", history.display())) {
        std::thread::sleep(Duration::from_millis(300));
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        let busy = cpu_seconds(pid) - before;
        assert!(
            busy < 0.4,
            "the cancelled query still runs ({busy:.2} CPU s in 1 s)"
        );
    }
    p.send_line("SELECT 41 + 1 AS answer;").unwrap();
    p.exp_string("| 42     |").unwrap();
    p.exp_string(PROMPT).unwrap();

    // \format switches the output of later statements.
    p.send_line("\\format csv").unwrap();
    p.exp_string("output format is Csv").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_line("SELECT 7 AS seven;").unwrap();
    p.exp_string("seven\r\n7").unwrap();
    p.exp_string(PROMPT).unwrap();

    quit(p);

    // History persists, multi-line statements included.
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("FROM id_graph;"), "{saved}");
    assert!(saved.contains("SELECT 41 + 1 AS answer;"), "{saved}");

    // A second session recalls the first one's statements (Up arrow) and appends its own.
    let mut p = interactive(&history);
    p.send("\x1b[A").unwrap(); // Up: the last line of the previous session (\q)
    p.send("\x1b[A").unwrap(); // ... and the one before it
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_string("seven").unwrap(); // ran again (still as a table: settings don't persist)
    p.exp_string("| 7     |").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_line("SELECT 'second session' AS s;").unwrap();
    p.exp_string("second session").unwrap();
    p.exp_string(PROMPT).unwrap();
    quit(p);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains("FROM id_graph;"), "{saved}");
    assert!(saved.contains("SELECT 'second session' AS s;"), "{saved}");
}

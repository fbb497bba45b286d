//! `psync-lake status`: its output (snapshots, with run ids, times and paths
//! masked) and exit codes on an empty destination, after a good run, with a
//! live lock, with a stale lock, and after a run stopped between two views.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use psync_core::materialize::{NoProgress, materialize_at};

use crate::faults::{Fault, Op, faulty, options, plain, runtime, sample};
use crate::lease::foreign_lock;
use crate::util::{assert_snapshot, bin, materialize_ok};

const HOST: &str = "status-test-host";

/// `psync-lake status --dest <dest>` as if on [`HOST`].
fn status(dest: &Path, json: bool) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["status", "--dest", dest.to_str().unwrap()])
        .env("PSYNC_HOST_NAME", HOST)
        .env("NO_COLOR", "1");
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

/// The text output with what changes from run to run masked.
fn masked(out: &Output, dest: &Path) -> String {
    let text = String::from_utf8_lossy(&out.stdout).replace(dest.to_str().unwrap(), "<dest>");
    let rules = [
        (r"\d{8}T\d{6}\.\d{3}Z-\d+-\d+", "<run>"),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)",
            "<time>",
        ),
        (r"took \d+\.\d\ds", "took <s>"),
        (r"pid \d+", "pid <pid>"),
        (r"\d+(\.\d)?s ago", "<age> ago"),
    ];
    rules.iter().fold(text, |t, (pattern, with)| {
        regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&t, *with)
            .into_owned()
    })
}

fn check(name: &str, dest: &Path, code: i32) {
    let out = status(dest, false);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_snapshot(&format!("status/{name}.txt"), &masked(&out, dest));
    let json = status(dest, true);
    assert_eq!(json.status.code(), Some(code));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json parses");
    let health = match code {
        0 => "ok",
        3 => "locked",
        _ => "needs-attention",
    };
    assert_eq!(parsed["health"], health, "{name}");
}

fn write_lock(dest: &Path, pid: u32) {
    std::fs::write(
        dest.join("_psync/lock"),
        foreign_lock("holder-run", HOST, pid),
    )
    .unwrap();
}

#[test]
fn status_tells_an_empty_a_good_a_locked_and_a_stale_destination_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    check("empty", &dest, 0);

    materialize_ok(&sample(), &dest, &["--quiet", "--no-health"]);
    check("after-a-run", &dest, 0);

    // A live process of this host holds it.
    let mut holder = Command::new("sleep").arg("60").spawn().unwrap();
    write_lock(&dest, holder.id());
    check("live-lock", &dest, 3);
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The same lock once its process is gone.
    check("stale-lock", &dest, 4);
    // The next run (of the same host) takes it over at once.
    let next = Command::new(bin())
        .args([
            "materialize",
            "--source",
            sample().to_str().unwrap(),
            "--dest",
        ])
        .arg(&dest)
        .args(["--quiet", "--no-health"])
        .env("PSYNC_HOST_NAME", HOST)
        .output()
        .unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    check("after-a-run", &dest, 0);
}

/// A run stopped between its first and its second view (the second rename
/// fails) leaves one view that the last run record does not name.
#[test]
fn status_names_views_a_stopped_run_published() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    materialize_ok(&sample(), &dest, &["--quiet", "--no-health"]);
    let case_study = tmp.path().join("case-study");
    crate::util::run_ok(&[
        "generate",
        "--case-study",
        "--dest",
        case_study.to_str().unwrap(),
    ]);
    let mut opts = options(
        &case_study.display().to_string(),
        &dest.display().to_string(),
        Duration::from_secs(60),
    );
    opts.health = false;
    // Renames are copies through this store: the second one fails.
    let broken = faulty(&plain(&dest), Fault::FailNth(Op::Copy, 2));
    let result = runtime().block_on(materialize_at(
        &opts,
        plain(&case_study),
        broken,
        &NoProgress,
    ));
    assert!(result.is_err(), "the second rename fails the run");
    check("stopped-between-views", &dest, 4);
}

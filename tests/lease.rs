//! The destination's lease (SPEC §4): a dead run's claim goes at once (same host)
//! or after the lease timeout (another host), a live run's claim is renewed and
//! never taken, two runs racing for one stale claim give one winner, a run whose
//! lease is taken over stops before it publishes more, and `status` tells which.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use psync_core::CoreError;
use psync_core::materialize::{NoProgress, materialize_at};
use psync_lake_io::Location;

use crate::faults::{
    Fault, Meeting, Op, faulty, normal_run_rows, options, plain, runtime, sample, two_runs_meeting,
};
use crate::remote::{Remote, unique};
use crate::util::{materialize_ok, run};

/// A lock as a run on `host` (pid `pid`) writes it.
pub(crate) fn foreign_lock(run_id: &str, host: &str, pid: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "run_id": run_id,
        "host": host,
        "pid": pid,
        "acquired_at": "2001-01-01T00:00:00Z",
        // Its own clock says "long ago": only the store's clock counts.
        "renewed_at": "2001-01-01T00:00:00Z",
    }))
    .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn materialize_args<'a>(source: &'a str, dest: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["materialize", "--source", source, "--dest", dest, "--quiet"];
    args.extend_from_slice(extra);
    args
}

/// Writes another host's lock into `dest` (through `put`), then checks that a run
/// with a 3 s lease timeout stops with the Locked error at once, and that one
/// started after 3 s of no renewal takes the lease over and publishes.
fn another_hosts_lease(
    mut run_with: impl FnMut(&[&str]) -> std::process::Output,
    put: impl Fn(Vec<u8>),
    source: &str,
    dest: &str,
) {
    put(foreign_lock("elsewhere-run", "another-host", 4242));
    let written = Instant::now();
    let args = materialize_args(source, dest, &["--lease-timeout", "3s"]);
    let out = run_with(&args);
    let message = stderr(&out);
    assert!(
        written.elapsed() < Duration::from_secs(3),
        "the first try ran within the timeout"
    );
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains("locked by run elsewhere-run")
            && message.contains("host another-host")
            && message.lines().count() == 1,
        "{message}"
    );
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(written.elapsed()) + Duration::from_millis(1200),
    );
    let out = run_with(&args);
    assert!(out.status.success(), "after the timeout: {}", stderr(&out));
}

#[test]
fn another_hosts_lease_is_taken_over_after_the_timeout_never_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    materialize_ok(&sample(), &dest, &["--quiet"]);
    let before = std::fs::read(dest.join("id_graph/id_graph.parquet")).unwrap();
    let lock = dest.join("_psync/lock");
    let source = sample().display().to_string();
    let dest_s = dest.display().to_string();
    let mut checked_before = false;
    another_hosts_lease(
        |args| {
            let out = run(args);
            if !checked_before {
                // The refused run wrote nothing.
                assert_eq!(
                    std::fs::read(dest.join("id_graph/id_graph.parquet")).unwrap(),
                    before
                );
                checked_before = true;
            }
            out
        },
        |body| std::fs::write(&lock, body).unwrap(),
        &source,
        &dest_s,
    );
    assert!(!lock.exists(), "the run released the lease");
}

/// [`another_hosts_lease`] on a remote store.
fn another_hosts_lease_on(remote: &Remote) {
    let prefix = unique("lease-foreign");
    let store = remote.store();
    let lock = ObjPath::from(format!("{prefix}/_psync/lock"));
    let rt = runtime();
    another_hosts_lease(
        |args| remote.run(args),
        |body| {
            rt.block_on(store.put(&lock, PutPayload::from(body)))
                .unwrap();
        },
        &sample().display().to_string(),
        &remote.url(&prefix),
    );
    assert!(
        rt.block_on(store.head(&lock)).is_err(),
        "the run released the lease"
    );
}

#[test]
fn another_hosts_lease_on_s3_is_taken_over_after_the_timeout_never_before() {
    let Some(s3) = Remote::s3() else { return };
    another_hosts_lease_on(&s3);
}

#[test]
fn another_hosts_lease_on_azure_is_taken_over_after_the_timeout_never_before() {
    let Some(azure) = Remote::azure() else { return };
    another_hosts_lease_on(&azure);
}

#[test]
fn a_killed_runs_lease_is_taken_over_at_once_on_this_host() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_ok_generate(&lake, 20_000);
    let dest = tmp.path().join("views");
    let lock = dest.join("_psync/lock");
    let mut child = Command::new(crate::util::bin())
        .args(materialize_args(
            lake.to_str().unwrap(),
            dest.to_str().unwrap(),
            &[],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the run never took the lease");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(lock.exists(), "a killed run cannot release its lease");
    let started = Instant::now();
    materialize_ok(&lake, &dest, &["--quiet"]);
    eprintln!("the next run after a SIGKILL took {:?}", started.elapsed());
    assert!(!lock.exists());
    assert!(
        !dest.join("_psync/tmp").exists()
            || std::fs::read_dir(dest.join("_psync/tmp"))
                .unwrap()
                .next()
                .is_none(),
        "the killed run's staging was removed"
    );
}

fn run_ok_generate(lake: &Path, profiles: u32) {
    crate::util::run_ok(&[
        "generate",
        "--dest",
        lake.to_str().unwrap(),
        "--profiles",
        &profiles.to_string(),
        "--seed",
        "4",
    ]);
}

/// A run slowed down in its commit (each rename takes 700 ms) holds its lease for
/// many lease timeouts of 1 s: it renews it, and a run of "another host" started
/// meanwhile is refused, naming it.
#[test]
fn a_live_holder_renews_its_lease_and_a_second_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let lock = dest.join("_psync/lock");
    let opts = options(
        &sample().display().to_string(),
        &dest.display().to_string(),
        Duration::from_secs(1),
    );
    let slow = faulty(
        &plain(&dest),
        Fault::Delay(Op::Copy, Duration::from_millis(700)),
    );
    let rt = runtime();
    let holder =
        rt.spawn(async move { materialize_at(&opts, plain(&sample()), slow, &NoProgress).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock.exists() {
        assert!(
            Instant::now() < deadline,
            "the slow run never took the lease"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let read =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap() };
    let first = read();
    std::thread::sleep(Duration::from_millis(2500));
    let later = read();
    assert!(
        later["renewals"].as_u64().unwrap() >= first["renewals"].as_u64().unwrap() + 3,
        "renewed: {first} then {later}"
    );
    let out = Command::new(crate::util::bin())
        .args(materialize_args(
            sample().to_str().unwrap(),
            dest.to_str().unwrap(),
            &["--lease-timeout", "1s"],
        ))
        .env("PSYNC_HOST_NAME", "another-host")
        .output()
        .unwrap();
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    let report = rt
        .block_on(holder)
        .unwrap()
        .expect("the slow run completes");
    assert!(
        message.contains(&format!("locked by run {}", report.run_id)),
        "the refusal names the holder: {message}"
    );
    assert!(!lock.exists(), "released at the end");
}

/// Two runs find the same stale lock and race to take it over (they meet at the
/// conditional overwrite): exactly one proceeds.
fn two_runs_take_over_one_stale_lock(dest: &Location) {
    let expected = normal_run_rows();
    let rt = runtime();
    rt.block_on(dest.store.put(
        &dest.child(&["_psync", "lock"]),
        PutPayload::from(foreign_lock("dead-run", "another-host", 4242)),
    ))
    .unwrap();
    // A zero timeout: the foreign lock is stale for both.
    two_runs_meeting(
        &sample(),
        dest,
        &expected,
        Meeting::at_takeover(2),
        Duration::ZERO,
    );
}

#[test]
fn two_runs_racing_for_one_stale_lock_on_local_disk_exactly_one_proceeds() {
    let tmp = tempfile::tempdir().unwrap();
    two_runs_take_over_one_stale_lock(&plain(&tmp.path().join("views")));
}

#[test]
fn two_runs_racing_for_one_stale_lock_on_s3_exactly_one_proceeds() {
    let Some(s3) = Remote::s3() else { return };
    two_runs_take_over_one_stale_lock(&s3.location(&unique("lease-race")));
}

#[test]
fn two_runs_racing_for_one_stale_lock_on_azure_exactly_one_proceeds() {
    let Some(azure) = Remote::azure() else { return };
    two_runs_take_over_one_stale_lock(&azure.location(&unique("lease-race")));
}

/// A run whose lease is taken over (`--break-lock` by another run) while it
/// commits stops before its next file, with the LeaseLost error; the other
/// run's views are the ones left.
#[test]
fn a_run_whose_lease_is_taken_over_stops_before_publishing_more() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("views");
    let opts = options(
        &sample().display().to_string(),
        &dest.display().to_string(),
        Duration::from_secs(60),
    );
    let slow = faulty(
        &plain(&dest),
        Fault::Delay(Op::Copy, Duration::from_millis(1500)),
    );
    let rt = runtime();
    let first =
        rt.spawn(async move { materialize_at(&opts, plain(&sample()), slow, &NoProgress).await });
    // Wait until it commits its first file.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dest.join("id_graph/id_graph.parquet").exists() {
        assert!(Instant::now() < deadline, "the first run never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&materialize_args(
        sample().to_str().unwrap(),
        dest.to_str().unwrap(),
        &["--break-lock"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("_psync/last_run.json")).unwrap()).unwrap();
    match rt.block_on(first).unwrap() {
        Err(CoreError::LeaseLost { why, .. }) => assert!(
            // The taker may have finished (and released) before this run looked.
            why.contains(second["run_id"].as_str().unwrap()) || why.contains("removed"),
            "names the run that took over, or that it is gone: {why}"
        ),
        other => panic!("the first run must stop with LeaseLost, not {other:?}"),
    }
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("_psync/last_run.json")).unwrap()).unwrap();
    assert_eq!(
        last["run_id"], second["run_id"],
        "the first run recorded nothing"
    );
    assert!(!dest.join("_psync/lock").exists());
}

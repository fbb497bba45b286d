//! Bounded memory: a run under a memory limit far below its aggregation state
//! spills to disk and publishes exactly the views of an unlimited run; the same
//! limit without spilling fails, which shows the limit really binds.

use std::path::Path;

use crate::util::{read_rows, run, run_ok};

const VIEWS: [&str; 3] = ["id_graph", "external_id_mapping", "profile_traits"];

fn materialize(lake: &Path, dest: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "materialize",
        "--source",
        lake.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--threads",
        "2",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_run_far_over_its_memory_limit_spills_and_equals_an_unlimited_run() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // ~60k profiles, 20 traits: the trait pivot's state alone is tens of MB.
    run_ok(&[
        "generate",
        "--dest",
        lake.to_str().unwrap(),
        "--profiles",
        "60000",
        "--traits",
        "20",
        "--seed",
        "11",
        "--no-events",
    ]);
    let free = tmp.path().join("free");
    let out = materialize(&lake, &free, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spill = tmp.path().join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let limited = tmp.path().join("limited");
    let limit = ["--memory-limit", "32M", "--batch-size", "1024"];
    let mut args = limit.to_vec();
    args.extend(["--spill-dir", spill.to_str().unwrap()]);
    let out = materialize(&lake, &limited, &args);
    assert!(
        out.status.success(),
        "the limited run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for view in VIEWS {
        let a = read_rows(&free.join(view));
        let b = read_rows(&limited.join(view));
        assert!(!a.is_empty(), "{view} is empty");
        assert_eq!(a, b, "{view} differs under the memory limit");
    }

    // Without spilling, the same limit is not enough: the limit binds.
    let mut args = limit.to_vec();
    args.push("--no-spill");
    let out = materialize(&lake, &tmp.path().join("nospill"), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a run without spilling fit in the limit"
    );
    assert!(
        err.to_lowercase().contains("resources exhausted") || err.contains("memory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

//! The benchmark end to end on a tiny lake: every system runs, and every system's
//! views hold the same rows as psync-lake's (timings are not asserted).
//!
//! Needs a psync-lake binary in `PSYNC_BIN` (`.ci/run` sets it to the one `cargo test`
//! builds) and a Python with duckdb, polars and pyarrow (`PSYNC_PYTHON`, or the
//! default venv). Without `PSYNC_BIN` the test is skipped, except under CI, where
//! it fails.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn tiny_lake_every_system_agrees_with_psync_lake() {
    let Some(bin) = std::env::var_os("PSYNC_BIN") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PSYNC_BIN is not set: point it at the psync-lake binary (.ci/run does)"
        );
        eprintln!("skipped: set PSYNC_BIN to a psync-lake binary to run the benchmark smoke test");
        return;
    };
    let out: PathBuf =
        std::env::temp_dir().join(format!("psync-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_psync-bench"))
        .args(["--profiles", "2000", "--traits", "10", "--reps", "1"])
        .args(["--threads", "2", "--delta", "0.05"])
        .arg("--out")
        .arg(&out)
        .arg("--bin")
        .arg(&bin)
        .output()
        .expect("psync-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "psync-bench failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Vec<Value> = serde_json::from_str(&text).expect("results.json is JSON");
    let systems: Vec<&str> = results
        .iter()
        .map(|r| r["system"].as_str().unwrap())
        .collect();
    for s in [
        "psync-lake",
        "psync-lake-delta",
        "duckdb-best",
        "duckdb-dbt",
        "datafusion-sql",
        "polars",
        "scan-floor",
    ] {
        assert!(systems.contains(&s), "{s} missing from {systems:?}");
    }
    for r in &results {
        assert!(r.get("error").is_none(), "{r:#}");
        assert!(r["seconds"].as_f64().is_some_and(|s| s > 0.0), "{r:#}");
        if r["system"] == "scan-floor" {
            assert!(r["rows_equal"].is_null(), "{r:#}");
        } else {
            assert_eq!(r["rows_equal"], Value::Bool(true), "{r:#}\n{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

//! Delta output (`--format delta`, issue 14 point 4): every view is a Delta table
//! that our own Delta reader reads back as exactly the Parquet output's rows; each
//! run commits one new version per view, named by the run record and by
//! `_psync/views.json`; combinations that are not supported are refused in one line.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use psync_lake_io::{Lake, Location};

use crate::util::{materialize_ok, read_rows, run};

/// The views of the sample lake that a default run publishes at the top of the dest.
const VIEWS: [&str; 3] = ["id_graph", "external_id_mapping", "profile_traits"];

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

/// Every row of every Delta table under `dest` as our reader (the kernel's log
/// replay, then our Parquet scan) reads it at its latest version, by table name.
fn delta_rows(dest: &Path) -> std::collections::BTreeMap<String, Vec<Vec<String>>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        let location = Location::parse(&dest.display().to_string()).unwrap();
        location.register(&ctx);
        let lake = Lake::open(&ctx.state(), location).await.unwrap();
        let mut out = std::collections::BTreeMap::new();
        for view in VIEWS {
            let table = lake.table(view).unwrap_or_else(|| panic!("{view} is read"));
            assert!(table.delta_version().is_some(), "{view} is read as Delta");
            let batches = ctx
                .read_table(Arc::new(table.clone()))
                .unwrap()
                .collect()
                .await
                .unwrap();
            let opts = FormatOptions::default().with_null("NULL");
            let mut rows = vec![];
            for b in batches {
                let fmts: Vec<_> = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                    .collect();
                for r in 0..b.num_rows() {
                    rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
                }
            }
            rows.sort();
            out.insert(view.to_string(), rows);
        }
        out
    })
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The Delta version the run record names for `view`.
/// The error of a Delta run of the sample into `dest` whose store suffers `fault`.
fn failed_delta_run(dest: &Path, fault: crate::faults::Fault) -> String {
    use crate::faults::{faulty, options, plain, runtime};
    let mut opts = options(
        sample().to_str().unwrap(),
        dest.to_str().unwrap(),
        std::time::Duration::from_secs(60),
    );
    opts.format = psync_core::publish::OutputFormat::Delta;
    runtime()
        .block_on(psync_core::materialize::materialize_at(
            &opts,
            plain(&sample()),
            faulty(&plain(dest), fault),
            &psync_core::materialize::NoProgress,
        ))
        .unwrap_err()
        .to_string()
}

fn recorded_version(dest: &Path, view: &str) -> u64 {
    let record = json(&dest.join("_psync/last_run.json"));
    assert_eq!(record["format"], "delta");
    record["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["view"] == view)
        .and_then(|v| v["delta_version"].as_u64())
        .unwrap_or_else(|| panic!("the run record names the version of {view}"))
}

#[test]
fn delta_output_reads_back_as_the_parquet_views_one_version_per_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (parquet, delta) = (tmp.path().join("parquet"), tmp.path().join("delta"));
    materialize_ok(&sample(), &parquet, &["--quiet"]);
    materialize_ok(&sample(), &delta, &["--quiet", "--format", "delta"]);
    for view in VIEWS {
        assert!(
            delta
                .join(view)
                .join("_delta_log/00000000000000000000.json")
                .exists(),
            "{view} has its first commit"
        );
        assert!(!delta.join(view).join(format!("{view}.parquet")).exists());
        assert_eq!(recorded_version(&delta, view), 0);
    }
    let first = delta_rows(&delta);
    for view in VIEWS {
        let expected = read_rows(&parquet.join(view));
        assert!(!expected.is_empty(), "{view} has rows");
        assert_eq!(first[view], expected, "{view} read as Delta");
    }
    let names = json(&delta.join("_psync/views.json"));
    for view in VIEWS {
        assert_eq!(names["views"][view]["version"], 0, "{view} in views.json");
        assert_eq!(names["views"][view]["table"], view);
    }

    // A second run: version 1 of every view, the same rows (the removed files are
    // still there for time travel, and not read).
    materialize_ok(&sample(), &delta, &["--quiet", "--format", "delta"]);
    for view in VIEWS {
        assert!(
            delta
                .join(view)
                .join("_delta_log/00000000000000000001.json")
                .exists()
        );
        assert_eq!(recorded_version(&delta, view), 1);
    }
    assert_eq!(delta_rows(&delta), first);
    let names = json(&delta.join("_psync/views.json"));
    let record = json(&delta.join("_psync/last_run.json"));
    assert_eq!(names["run_id"], record["run_id"]);
    for view in VIEWS {
        assert_eq!(names["views"][view]["version"], 1, "{view} in views.json");
    }
}

#[test]
fn delta_output_incremental_runs_commit_versions_equal_to_a_full_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (parquet, delta) = (tmp.path().join("parquet"), tmp.path().join("delta"));
    materialize_ok(&sample(), &parquet, &["--quiet"]);
    let incremental = ["--quiet", "--format", "delta", "--mode", "incremental"];
    materialize_ok(&sample(), &delta, &incremental);
    // Nothing new: no new version.
    materialize_ok(&sample(), &delta, &incremental);
    assert!(
        !delta
            .join("id_graph/_delta_log/00000000000000000001.json")
            .exists()
    );
    let rows = delta_rows(&delta);
    for view in VIEWS {
        assert_eq!(rows[view], read_rows(&parquet.join(view)), "{view}");
    }
}

#[test]
fn delta_output_refuses_a_destination_of_the_other_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (parquet, delta) = (tmp.path().join("parquet"), tmp.path().join("delta"));
    materialize_ok(&sample(), &parquet, &["--quiet"]);
    materialize_ok(&sample(), &delta, &["--quiet", "--format", "delta"]);
    let before = read_rows(&parquet.join("id_graph"));
    for (dest, format, says) in [
        (&parquet, "delta", "published as Parquet"),
        (&delta, "parquet", "is a Delta table"),
    ] {
        let out = run(&[
            "materialize",
            "--source",
            sample().to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--quiet",
            "--format",
            format,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(read_rows(&parquet.join("id_graph")), before);
    // Nothing was written into the Parquet view folders.
    for view in VIEWS {
        assert_eq!(
            std::fs::read_dir(parquet.join(view)).unwrap().count(),
            1,
            "{view}"
        );
    }
    assert!(
        !delta
            .join("id_graph/_delta_log/00000000000000000001.json")
            .exists()
    );
    assert_eq!(delta_rows(&delta)["id_graph"], before);
}

/// A run whose commit of one view fails (the store refuses the put of its log
/// entry) leaves the views it committed before at their new version, that view and
/// the ones after it at the previous one, and `_psync/views.json` naming the
/// previous complete set; the next run completes the set.
#[test]
fn delta_output_a_failed_commit_leaves_views_json_at_the_last_complete_set() {
    use crate::faults::Fault;

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("delta");
    materialize_ok(&sample(), &dest, &["--quiet", "--format", "delta"]);
    let first = json(&dest.join("_psync/views.json"));
    let rows = delta_rows(&dest);
    let data_files = |view: &str| {
        std::fs::read_dir(dest.join(view))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".parquet")
            })
            .count()
    };

    let err = failed_delta_run(&dest, Fault::FailPutAt("profile_traits/_delta_log/".into()));
    assert!(err.contains("profile_traits"), "{err}");
    let log = |view: &str, v: u64| dest.join(view).join(format!("_delta_log/{v:020}.json"));
    // Committed in order: id_graph, external_id_mapping, then profile_traits failed.
    assert!(log("id_graph", 1).exists());
    assert!(log("external_id_mapping", 1).exists());
    assert!(!log("profile_traits", 1).exists());
    // The file whose commit failed stays (the put of its commit may have landed for
    // all the run knows): no version names it, no reader sees it.
    assert_eq!(data_files("profile_traits"), 2);
    assert_eq!(json(&dest.join("_psync/views.json")), first);
    assert_eq!(delta_rows(&dest), rows);
    // `status` names the views the stopped run committed.
    let status = run(&["status", "--dest", dest.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(4), "{text}");
    assert!(
        text.contains("id_graph: its Delta table is at version 1, _psync/views.json names 0"),
        "{text}"
    );
    assert!(!text.contains("profile_traits: its Delta table"), "{text}");

    materialize_ok(&sample(), &dest, &["--quiet", "--format", "delta"]);
    let names = json(&dest.join("_psync/views.json"));
    assert_eq!(names["views"]["id_graph"]["version"], 2);
    assert_eq!(names["views"]["profile_traits"]["version"], 1);
    assert_eq!(delta_rows(&dest), rows);
    let status = run(&["status", "--dest", dest.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0));
}

/// Every tenth version is followed by a checkpoint; the table reads the same through it.
#[test]
fn delta_output_writes_a_checkpoint_every_ten_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("delta");
    let args = ["--quiet", "--format", "delta", "--no-health"];
    for _ in 0..11 {
        materialize_ok(&sample(), &dest, &args);
    }
    let log = dest.join("id_graph/_delta_log");
    assert!(log.join("00000000000000000010.checkpoint.parquet").exists());
    assert!(log.join("_last_checkpoint").exists());
    assert!(!log.join("00000000000000000000.checkpoint.parquet").exists());
    assert_eq!(recorded_version(&dest, "id_graph"), 10);
    // `status`: the checkpoint is no view file, and a file that no commit names (as
    // a killed run leaves) is not the last run's view: healthy.
    std::fs::write(
        dest.join("id_graph/part-00000-killed-run.parquet"),
        b"partial",
    )
    .unwrap();
    let status = run(&["status", "--dest", dest.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{text}");
    let parquet = tmp.path().join("parquet");
    materialize_ok(&sample(), &parquet, &["--quiet"]);
    let rows = delta_rows(&dest);
    for view in VIEWS {
        assert_eq!(rows[view], read_rows(&parquet.join(view)), "{view}");
    }
}

/// `_psync/views.json` is written with a conditional put: when another writer
/// changed it since the run took the lease (created it, for a first run), the run
/// fails naming it, its versions committed and named by the run record.
#[test]
fn delta_output_views_json_is_a_conditional_put() {
    use crate::faults::Fault;

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("delta");
    for version in [0, 1] {
        let err = failed_delta_run(&dest, Fault::WriteBeforePutAt("_psync/views.json".into()));
        assert!(
            err.contains("views.json") && err.contains("changed by another writer"),
            "{err}"
        );
        assert_eq!(recorded_version(&dest, "id_graph"), version);
        assert_eq!(json(&dest.join("_psync/views.json")), serde_json::json!({}));
    }
}

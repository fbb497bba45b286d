//! `id_graph_history` (SPEC §3.6): the rows valid at T are `id_graph --as-of T`,
//! for every T: against the plain model over random histories, against real
//! `--as-of` runs of the sample lake, and after incremental runs.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use psync_core::materialize::NoProgress;
use psync_core::{View, materialize};

use crate::model::{Dealt, History, IdRow, Landing, land, land_file, micros, model, options};
use crate::util::{materialize_ok, read_rows, run_ok};

const VIEWS: &str = "id_graph,external_id_mapping,profile_traits,id_graph_history";

/// µs since the epoch of a view's timestamp text; `None` for NULL.
fn instant(text: &str) -> Option<i64> {
    (text != "NULL").then(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    })
}

/// The (segment_id, canonical) rows of `history` (view rows) valid at `t`.
fn valid_at(history: &[Vec<String>], t: i64) -> BTreeSet<(String, String)> {
    history
        .iter()
        .filter(|r| {
            instant(&r[2]).is_none_or(|from| from <= t) && instant(&r[3]).is_none_or(|to| t < to)
        })
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

/// The model's id graph of `h` as of `t`.
fn model_as_of(h: &History, t: i64) -> BTreeSet<(String, String)> {
    let mut past = h.clone();
    past.ids.retain(|r| r.key.1.is_none_or(|v| micros(v) <= t));
    model(&past)
        .id_graph
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

/// Instants around every timestamp a model history can have (0..4 seconds).
fn instants() -> Vec<i64> {
    (-1..=4)
        .flat_map(|v| [micros(v), micros(v) + 500_000])
        .collect()
}

/// Fails unless `history` (view rows) agrees with the model at every instant,
/// and no segment_id has two rows valid at once.
fn check_history(history: &[Vec<String>], h: &History) -> Result<(), TestCaseError> {
    for t in instants() {
        let at = valid_at(history, t);
        prop_assert_eq!(&at, &model_as_of(h, t), "at {}", t);
        let sids: BTreeSet<&String> = at.iter().map(|(s, _)| s).collect();
        prop_assert_eq!(sids.len(), at.len(), "two rows of one segment_id at {}", t);
    }
    // SCD type 2: a segment_id's rows follow each other, each a change.
    for pair in history.windows(2) {
        if pair[0][0] == pair[1][0] {
            prop_assert_eq!(
                &pair[0][3],
                &pair[1][2],
                "rows of {} not adjacent",
                &pair[0][0]
            );
            prop_assert!(
                pair[0][1] != pair[1][1],
                "{} repeats a canonical",
                &pair[0][0]
            );
        }
    }
    Ok(())
}

fn history_of(dest: &Path) -> Vec<Vec<String>> {
    let mut rows = read_rows(&dest.join("id_graph_history"));
    // By segment_id, then valid_from (NULL first).
    rows.sort_by_key(|r| (r[0].clone(), instant(&r[2])));
    rows
}

fn run_history(h: &History, l: &Landing) -> Result<Vec<Vec<String>>, TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let landed = land(&lake, h, l);
    let dest = tmp.path().join("views");
    let mut opts = options(&lake, &dest, psync_core::RunMode::Full, l);
    opts.views = vec![View::IdGraph, View::IdGraphHistory];
    opts.health = false;
    crate::model::runtime()
        .block_on(materialize(&opts, &NoProgress))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rows = history_of(&dest);
    check_history(&rows, &landed)?;
    Ok(rows)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn id_graph_history_agrees_with_as_of_at_every_instant(
        h in crate::model::history(),
        l in crate::model::landing(),
    ) {
        // A history with no id_graph_updates row lands no table: nothing to compare.
        prop_assume!(!h.ids.is_empty());
        run_history(&h, &l)?;
    }
}

fn id_row(sid: &str, canon: &str, seq: i64, ts: Option<i64>) -> IdRow {
    IdRow {
        sid: sid.into(),
        canon: canon.into(),
        key: (Some(seq), ts, ts),
    }
}

/// A chain that grows over time, a backfilled row without a timestamp, a
/// re-merge, and a cycle that forms at 3 s and is broken at its oldest edge.
fn changing() -> History {
    History {
        ids: vec![
            id_row("s0", "s0", 1, None),
            id_row("s1", "s1", 1, Some(0)),
            id_row("s1", "s0", 2, Some(1)),
            id_row("s2", "s1", 3, Some(2)),
            id_row("s2", "s3", 4, Some(3)),
            id_row("s3", "s4", 1, Some(1)),
            id_row("s4", "s5", 2, Some(2)),
            id_row("s5", "s3", 5, Some(3)),
        ],
        ext: vec![],
        traits: vec![],
    }
}

#[test]
fn id_graph_history_of_chains_a_backfill_a_re_merge_and_a_cycle() {
    let l = Landing {
        files: 2,
        seed: 3,
        batch_size: 2,
        threads: 2,
    };
    let rows = run_history(&changing(), &l).unwrap();
    let text: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
    // s2 pointed at s1 (hence s0) from 2 s, then at s3, on the cycle broken at s3's edge.
    let s2: Vec<&String> = text.iter().filter(|r| r.starts_with("s2 ")).collect();
    assert_eq!(s2.len(), 2, "{text:#?}");
    assert!(s2[0].starts_with("s2 s0 "), "{text:#?}");
    assert!(
        s2[1].starts_with("s2 s3 ") && s2[1].ends_with(" NULL"),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|r| r.starts_with("s0 s0 NULL NULL")),
        "{text:#?}"
    );
}

/// The sample lake: the history against real `--as-of` runs, and the shell's
/// on-demand view against the published one.
#[test]
fn id_graph_history_agrees_with_as_of_runs_of_the_sample_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let dest = tmp.path().join("views");
    materialize_ok(&sample, &dest, &["--quiet", "--views", VIEWS]);
    let history = history_of(&dest);
    assert!(history.len() > 300, "{} rows", history.len());
    // Instants around merges: a canonical that changed, and the days between.
    let changes: BTreeSet<i64> = history.iter().filter_map(|r| instant(&r[3])).collect();
    let picks: Vec<i64> = changes
        .iter()
        .step_by(changes.len() / 3 + 1)
        .copied()
        .collect();
    for (i, t) in picks.iter().flat_map(|t| [*t - 1, *t]).enumerate() {
        let at = tmp.path().join(format!("as-of-{i}"));
        let iso = chrono::DateTime::from_timestamp_micros(t)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        materialize_ok(
            &sample,
            &at,
            &[
                "--quiet",
                "--no-health",
                "--views",
                "id_graph",
                "--as-of",
                &iso,
            ],
        );
        let want: BTreeSet<(String, String)> = read_rows(&at.join("id_graph"))
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        assert_eq!(valid_at(&history, t), want, "as of {iso}");
    }
    let source = sample.to_str().unwrap();
    let count = |extra: &[&str]| {
        let mut args = vec!["query", "--source", source, "--format", "csv"];
        args.extend_from_slice(extra);
        args.extend([
            "-c",
            "SELECT count(*) AS n, count(valid_to) AS closed FROM id_graph_history",
        ]);
        String::from_utf8(run_ok(&args).stdout).unwrap()
    };
    assert_eq!(count(&[]), count(&["--dest", dest.to_str().unwrap()]));
}

/// Incremental runs publish the history a full run does, batch after batch.
#[test]
fn incremental_runs_keep_id_graph_history_exact() {
    let h = changing();
    let dealt = Dealt::new(&h, 3, 11);
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inc = tmp.path().join("inc");
    let mut landed = h.clone();
    for b in 0..3 {
        land_file(&lake, &h, &dealt, b, &mut landed);
        if crate::util::walk(&lake).is_empty() {
            continue;
        }
        run_ok(&[
            "materialize",
            "--source",
            lake.to_str().unwrap(),
            "--dest",
            inc.to_str().unwrap(),
            "--mode",
            "incremental",
            "--quiet",
            "--views",
            VIEWS,
        ]);
        let full = tempfile::tempdir_in(tmp.path()).unwrap();
        materialize_ok(&lake, full.path(), &["--quiet", "--views", VIEWS]);
        assert_eq!(history_of(&inc), history_of(full.path()), "after batch {b}");
        // The model of what has landed so far.
        let mut so_far = landed.clone();
        let have: BTreeSet<usize> = dealt.ids[..=b].iter().flatten().copied().collect();
        so_far.ids = (0..h.ids.len())
            .filter(|i| have.contains(i))
            .map(|i| landed.ids[i].clone())
            .collect();
        check_history(&history_of(&inc), &so_far).unwrap();
    }
}

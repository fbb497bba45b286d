//! `psync-lake explain` and the shell's `merge_tree`, `identifiers`,
//! `trait_sources`: the case study exactly, a lake with a chain, a missing
//! recursive entry and a cycle against the plain model, and random histories.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use psync_core::explain::{Explainer, column_texts, explain_context};
use psync_core::{EngineOptions, locate, new_context};
use psync_lake_io::Lake;

use datafusion::arrow::array::RecordBatch;

use crate::model::{ExtRow, History, IdRow, Landing, TraitRow, land, landing, model};
use crate::util::{assert_snapshot, run, run_ok};

fn case_study(dir: &Path) -> String {
    let lake = dir.join("lake");
    run_ok(&["generate", "--case-study", "--dest", lake.to_str().unwrap()]);
    lake.to_str().unwrap().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn explain_prints_the_case_study() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = case_study(tmp.path());
    let text = stdout(&run_ok(&[
        "explain",
        "--source",
        &lake,
        "email:jane.kim@segment.com",
    ]));
    // The tree and the trait's source, exactly (the snapshot holds the whole text).
    assert!(
        text.contains(
            "merge tree: 2 segment_ids\n  \
             profile_1  created 2022-05-02T14:01:00Z by page event_1 (seq 1)\n  \
             └── profile_2  merged 2022-06-22T10:48:00Z by identify event_4 (seq 5)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  email  jane.kim@segment.com  profile_1  7    2022-06-22T10:48:00Z\n"),
        "{text}"
    );
    assert_snapshot("explain/case_study.txt", &text);

    // The merged-away profile explains the same person; so does a segment_id.
    let by_sid = stdout(&run_ok(&["explain", "--source", &lake, "profile_2"]));
    assert!(by_sid.starts_with("profile_1\n  asked for profile_2, merged into it\n"));
    assert_eq!(
        by_sid.split_once("\n\n").unwrap().1,
        text.split_once("\n\n").unwrap().1
    );
}

#[test]
fn explain_with_dest_compares_the_published_id_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = case_study(tmp.path());
    let views = tmp.path().join("views");
    crate::util::materialize_ok(Path::new(&lake), &views, &["--quiet"]);
    let dest = views.to_str().unwrap();
    let text = stdout(&run_ok(&[
        "explain",
        "--source",
        &lake,
        "--dest",
        dest,
        "profile_2",
    ]));
    assert!(
        text.contains("  the published id_graph agrees: profile_2 -> profile_1\n"),
        "{text}"
    );
    let json = stdout(&run_ok(&[
        "explain",
        "--source",
        &lake,
        "--dest",
        dest,
        "--json",
        "profile_1",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["published_canonical_segment_id"], "profile_1");
}

#[test]
fn explain_json_parses_and_agrees_with_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = case_study(tmp.path());
    let out = stdout(&run_ok(&[
        "explain",
        "--source",
        &lake,
        "--json",
        "anonymous_id:b50e18a5-1b8d-451c",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["canonical_segment_id"], "profile_1");
    assert_eq!(v["segment_id"], "profile_2");
    assert_eq!(v["identifier"]["type"], "anonymous_id");
    assert_eq!(
        v["segment_ids"],
        serde_json::json!(["profile_1", "profile_2"])
    );
    let tree = v["merge_tree"].as_array().unwrap();
    assert_eq!(tree.len(), 2);
    assert_eq!(tree[1]["segment_id"], "profile_2");
    assert_eq!(tree[1]["parent"], "profile_1");
    assert_eq!(tree[1]["triggering_event_id"], "event_4");
    assert_eq!(tree[0]["parent"], serde_json::Value::Null);
    assert_eq!(v["identifiers"].as_array().unwrap().len(), 3);
    let traits = v["traits"].as_array().unwrap();
    assert_eq!(traits.len(), 1);
    assert_eq!(traits[0]["trait"], "email");
    assert_eq!(traits[0]["value"], "jane.kim@segment.com");
    assert_eq!(traits[0]["seq"], 7);
    assert_eq!(traits[0]["segment_id"], "profile_1");
}

#[test]
fn explain_an_unknown_id_says_so_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = case_study(tmp.path());
    for id in ["profile_9", "email:nobody@example.com"] {
        let out = run(&["explain", "--source", &lake, id]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: no profile or identifier '{id}'")),
            "{err}"
        );
    }
}

#[test]
fn shell_table_functions_return_the_sections() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = case_study(tmp.path());
    let out = stdout(&run_ok(&[
        "query",
        "--source",
        &lake,
        "--format",
        "csv",
        "-c",
        "SELECT segment_id, parent, triggering_event_id FROM merge_tree('email:jane.kim@segment.com')",
        "-c",
        "SELECT external_id_value, segment_id FROM identifiers('profile_2') ORDER BY 1",
        "-c",
        "SELECT \"trait\", value, seq FROM trait_sources('profile_1')",
    ]));
    assert_eq!(
        out,
        "segment_id,parent,triggering_event_id\nprofile_1,,event_1\nprofile_2,profile_1,event_4\n\
         external_id_value,segment_id\n5285bc35-05ef-4d21,profile_1\nb50e18a5-1b8d-451c,profile_2\n\
         jane.kim@segment.com,profile_1\n\
         trait,value,seq\nemail,jane.kim@segment.com,7\n"
    );
    let bad = run(&[
        "query",
        "--source",
        &lake,
        "-c",
        "SELECT * FROM merge_tree('nobody')",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("no profile or identifier 'nobody'"), "{err}");
}

// ---- against the model ---------------------------------------------------------

fn k(seq: i64, ts: i64) -> (Option<i64>, Option<i64>, Option<i64>) {
    (Some(seq), Some(ts), Some(ts))
}

fn id_row(sid: &str, canon: &str, key: (Option<i64>, Option<i64>, Option<i64>)) -> IdRow {
    IdRow {
        sid: sid.into(),
        canon: canon.into(),
        key,
    }
}

fn trait_row(
    sid: &str,
    key: (Option<i64>, Option<i64>, Option<i64>),
    name: Option<&str>,
    score: Option<i64>,
) -> TraitRow {
    TraitRow {
        sid: Some(sid.into()),
        key,
        name: name.map(str::to_string),
        score,
    }
}

/// s2 → s1 → s0 (s2's recursive entry to s0 never landed), s3 → s0 directly;
/// s4 → s5 → s6 → s4, a cycle; traits on all of them.
fn chains_and_a_cycle() -> History {
    History {
        ids: vec![
            id_row("s0", "s0", k(1, 1)),
            id_row("s1", "s1", k(1, 1)),
            id_row("s2", "s2", k(1, 1)),
            id_row("s2", "s1", k(2, 2)),
            id_row("s1", "s0", k(3, 3)),
            id_row("s3", "s0", k(3, 3)),
            id_row("s4", "s5", k(1, 2)),
            id_row("s5", "s6", k(2, 2)),
            id_row("s6", "s4", k(3, 3)),
        ],
        ext: vec![
            ExtRow {
                sid: Some("s2".into()),
                kind: "email".into(),
                value: "v1".into(),
                hash: None,
                key: k(1, 1),
            },
            ExtRow {
                sid: Some("s5".into()),
                kind: "anon".into(),
                value: "v2".into(),
                hash: None,
                key: k(1, 1),
            },
        ],
        traits: vec![
            trait_row("s2", k(5, 3), Some("x"), Some(1)),
            trait_row("s1", k(4, 3), Some("y"), None),
            trait_row("s0", k(5, 3), None, Some(2)),
            trait_row("s5", k(1, 1), Some("z"), Some(0)),
            trait_row("s6", k(2, 1), None, Some(1)),
        ],
    }
}

/// What `explain` finds for `id` in the lake at `root`: members, merge tree
/// rows (segment_id, note) and trait sources (trait, value, segment_id, seq).
type Sections = (Vec<String>, Vec<(String, String)>, Vec<Vec<String>>);

fn explain_lib(root: &Path, id: &str) -> Option<(String, Sections)> {
    crate::model::runtime().block_on(async {
        let opts = EngineOptions {
            threads: Some(2),
            ..Default::default()
        };
        let ctx = explain_context(&new_context(&opts).unwrap());
        let lake = Lake::open(
            &ctx.state(),
            locate(&ctx, root.to_str().unwrap(), &opts).unwrap(),
        )
        .await
        .unwrap();
        let e = Explainer::new(&ctx, &lake);
        let found = e.find(id).await.unwrap()?;
        let tree = e.merge_tree(&found).unwrap().collect().await.unwrap();
        let traits = e
            .trait_sources(&found)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = |b: &[RecordBatch], c: &str| -> Vec<String> {
            column_texts(b, c)
                .into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                .collect()
        };
        let tree_rows = text(&tree, "segment_id")
            .into_iter()
            .zip(text(&tree, "note"))
            .collect();
        let cols: Vec<Vec<String>> = ["trait", "value", "segment_id", "seq"]
            .iter()
            .map(|c| text(&traits, c))
            .collect();
        let trait_rows = (0..cols[0].len())
            .map(|i| cols.iter().map(|c| c[i].clone()).collect())
            .collect();
        Some((
            found.person.canonical_segment_id.clone(),
            (found.person.members.clone(), tree_rows, trait_rows),
        ))
    })
}

/// Fails unless `explain` of every segment_id of `h` (landed at `root`) agrees
/// with the model: the person, its members, and each trait's value and source.
fn check_against_model(root: &Path, h: &History) -> Result<(), TestCaseError> {
    let m = model(h);
    let canonical: BTreeMap<String, String> = m
        .id_graph
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let traits: BTreeMap<String, Vec<String>> =
        m.traits.iter().map(|r| (r[0].clone(), r.clone())).collect();
    let mut sids: BTreeSet<String> = canonical.keys().cloned().collect();
    sids.extend(h.traits.iter().filter_map(|r| r.sid.clone()));
    for sid in &sids {
        let Some((c, (members, tree, sources))) = explain_lib(root, sid) else {
            return Err(TestCaseError::fail(format!("{sid} not found")));
        };
        let want = canonical.get(sid).cloned().unwrap_or_else(|| sid.clone());
        prop_assert_eq!(&c, &want, "canonical of {}", sid);
        let mut want_members: BTreeSet<String> = canonical
            .iter()
            .filter(|(_, v)| **v == want)
            .map(|(s, _)| s.clone())
            .collect();
        want_members.insert(want.clone());
        prop_assert_eq!(
            members.iter().cloned().collect::<BTreeSet<_>>(),
            want_members.clone()
        );
        prop_assert_eq!(
            tree.iter().map(|r| r.0.clone()).collect::<BTreeSet<_>>(),
            want_members.clone()
        );
        let Some(row) = traits.get(&want) else {
            return Err(TestCaseError::fail(format!("no model row for {want}")));
        };
        if h.traits.is_empty() {
            prop_assert!(sources.is_empty());
            continue;
        }
        for (t, idx) in [("name", 1), ("score", 2)] {
            let Some(s) = sources.iter().find(|r| r[0] == t) else {
                return Err(TestCaseError::fail(format!("no source row for {t}")));
            };
            prop_assert_eq!(&s[1], &row[idx], "{} of {}", t, want);
            if s[1] == "NULL" {
                prop_assert_eq!(&s[2], "NULL");
                continue;
            }
            // The source row holds the value, on a member, with the winning key.
            let value = |r: &TraitRow| match t {
                "name" => r.name.clone(),
                _ => r.score.map(|v| v.to_string()),
            };
            let on_members = h.traits.iter().filter(|r| {
                r.sid.as_ref().is_some_and(|s| want_members.contains(s)) && value(r).is_some()
            });
            let best = on_members.clone().map(|r| r.key).max();
            let holds = on_members.clone().any(|r| {
                r.sid.as_deref() == Some(s[2].as_str())
                    && value(r).as_deref() == Some(s[1].as_str())
                    && Some(r.key) == best
                    && r.key.0.map_or("NULL".into(), |v| v.to_string()) == s[3]
            });
            prop_assert!(
                holds,
                "{} source {:?} is not a winning row of {}",
                t,
                s,
                want
            );
        }
    }
    Ok(())
}

#[test]
fn explain_matches_the_model_on_chains_a_missing_recursive_entry_and_a_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let l = Landing {
        files: 2,
        seed: 7,
        batch_size: 2,
        threads: 2,
    };
    let h = land(&root, &chains_and_a_cycle(), &l);
    check_against_model(&root, &h).unwrap();
    // The notes name the missing recursive entry and the broken cycle.
    let (_, (_, tree, _)) = explain_lib(&root, "s2").unwrap();
    assert!(tree.contains(&("s2".into(), "recursive entry missing".into())));
    let (c, (_, tree, _)) = explain_lib(&root, "s5").unwrap();
    assert_eq!(c, "s4", "the oldest edge of the cycle is s4's");
    assert!(tree.contains(&("s4".into(), "cycle broken here".into())));
    // Through the binary: the same person, the notes in the text.
    let text = stdout(&run_ok(&[
        "explain",
        "--source",
        root.to_str().unwrap(),
        "s6",
    ]));
    assert!(
        text.contains("[cycle broken here: its latest row points to s5"),
        "{text}"
    );
    assert!(text.contains("1 merge cycle(s) broken"), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn explain_matches_the_model(h in crate::model::history(), l in landing()) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lake");
        std::fs::create_dir_all(&root).unwrap();
        let h = land(&root, &h, &l);
        check_against_model(&root, &h)?;
    }
}

//! SPEC §3.5: the smallest test that must pass, through the real binary.

use crate::util::{column_names, materialize_ok, read_rows, rows, run_ok};

#[test]
fn case_study_gives_exactly_the_expected_views() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views");
    run_ok(&["generate", "--case-study", "--dest", lake.to_str().unwrap()]);
    materialize_ok(&lake, &views, &["--quiet"]);

    assert_eq!(
        column_names(&views.join("id_graph")),
        ["segment_id", "canonical_segment_id", "timestamp"]
    );
    assert_eq!(
        read_rows(&views.join("id_graph")),
        rows(&[
            &["profile_1", "profile_1", "2022-05-02T14:01:00Z"],
            &["profile_2", "profile_1", "2022-06-22T10:48:00Z"],
        ])
    );
    let sha = |s: &str| sha1_smol::Sha1::from(s).hexdigest();
    let (a1, e1, a2) = (
        sha("anonymous_id5285bc35-05ef-4d21"),
        sha("emailjane.kim@segment.com"),
        sha("anonymous_idb50e18a5-1b8d-451c"),
    );
    assert_eq!(
        read_rows(&views.join("external_id_mapping")),
        rows(&[
            &[
                "profile_1",
                "anonymous_id",
                "5285bc35-05ef-4d21",
                &a1,
                "2022-05-02T14:01:00Z"
            ],
            &[
                "profile_1",
                "email",
                "jane.kim@segment.com",
                &e1,
                "2022-05-02T14:01:47Z"
            ],
            &[
                "profile_1",
                "anonymous_id",
                "b50e18a5-1b8d-451c",
                &a2,
                "2022-06-22T10:48:00Z"
            ],
        ])
    );
    assert_eq!(
        column_names(&views.join("profile_traits")),
        ["canonical_segment_id", "email", "merged_to"]
    );
    assert_eq!(
        read_rows(&views.join("profile_traits")),
        rows(&[
            &["profile_1", "jane.kim@segment.com", "NULL"],
            &["profile_2", "NULL", "profile_1"]
        ])
    );
    // Run metadata lives beside the views, never inside a view folder.
    assert!(views.join("_psync/last_run.json").is_file());
    for v in ["id_graph", "external_id_mapping", "profile_traits"] {
        let names: Vec<_> = std::fs::read_dir(views.join(v))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [format!("{v}.parquet")],
            "{v} folder holds only the view file"
        );
    }
}

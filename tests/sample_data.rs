//! The committed sample lakes are exactly what their documented commands generate.

use std::path::Path;

use crate::util::{read_rows, run_ok};

fn same_tables(committed: &Path, fresh: &Path) {
    let mut tables: Vec<_> = std::fs::read_dir(committed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    tables.sort();
    assert!(!tables.is_empty());
    for t in tables {
        assert_eq!(
            read_rows(&committed.join(&t)),
            read_rows(&fresh.join(&t)),
            "{t:?} differs from a fresh generation"
        );
    }
}

#[test]
fn sample_lake_regenerates_identically() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("sample");
    // The command documented in data/README.md.
    run_ok(&[
        "generate",
        "--dest",
        fresh.to_str().unwrap(),
        "--profiles",
        "300",
        "--traits",
        "8",
        "--seed",
        "1",
        "--rows-per-file",
        "400",
        "--drop-recursive",
        "0.2",
    ]);
    same_tables(&root.join("sample"), &fresh);
    let fresh_cs = tmp.path().join("case_study");
    run_ok(&[
        "generate",
        "--case-study",
        "--dest",
        fresh_cs.to_str().unwrap(),
    ]);
    same_tables(&root.join("case_study"), &fresh_cs);
}

//! Incremental runs: what was processed before, what is new, and the saved state.
//!
//! ```text
//! <dest>/_psync/state/
//!   manifest.json                          every landed file processed: path, size, ETag, mtime
//!   id_graph_updates/<run>.parquet         segments: latest update per segment_id   (id_graph_updates rows)
//!   external_id_mapping_updates/<run>.parquet        latest update per identifier   (external_id_mapping_updates rows)
//!   profile_traits_updates/<run>.parquet             per segment_id, the rows holding each trait's winner
//! ```
//!
//! Each segment is a compacted history of some landed files: landed-shape rows
//! holding, per key, what the views depend on (the latest update of a segment_id
//! or identifier; for traits, one row per distinct winning order key, carrying the
//! traits that won with it, found with `last_seen_state`). Winners of a union are
//! the winners of the winners, so the segments together stand for every file
//! processed so far, and a row that a newer segment supersedes changes nothing.
//! A run adds one segment: its new files compacted. At [`MAX_SEGMENTS`] segments
//! it merges the small ones instead (or, once they are large, everything): see
//! [`plan_segment`].
//!
//! The views are patched (see `views::id_graph::patch`): only the rows the new
//! files can change are recomputed, by the unchanged view code run over the
//! segments plus the new files restricted to the keys involved; every other row
//! is the published view's. So an incremental run equals a full run on the same
//! landed files, merges, late rows and ties included. When the published views
//! are not the ones the manifest recorded (a full or as-of run published since,
//! or other `--views`), the views are recomputed from all the segments instead.
//!
//! Re-reading files a segment already holds changes nothing, so the commit order is
//! simple: views, then segments, then the manifest. A run killed in between leaves
//! segments at least as new as the manifest, and the next run re-reads the files
//! the manifest lacks.

use std::collections::{BTreeMap, BTreeSet};

use object_store::ObjectStoreExt;
use psync_lake_io::{Lake, LakeFile, Location};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result, publish_err};

/// The manifest's name under `<dest>/_psync/state/`.
pub const MANIFEST: &str = "manifest.json";
/// The tables an incremental run saves, compacted, under `<dest>/_psync/state/`.
pub const STATE_TABLES: [&str; 3] = [
    crate::inputs::ID_GRAPH_UPDATES,
    crate::inputs::EXTERNAL_ID_MAPPING_UPDATES,
    crate::inputs::PROFILE_TRAITS_UPDATES,
];
/// Segments per state table before a run merges them (see [`plan_segment`]).
pub const MAX_SEGMENTS: usize = 8;
/// The manifest format this version writes and reads.
const FORMAT: u32 = 1;

/// The landed files an incremental state was built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// The run that wrote it.
    pub run_id: String,
    /// The source it was built from (as given).
    pub source: String,
    /// Files per table, by path relative to the source root.
    pub files: BTreeMap<String, Vec<FileEntry>>,
    /// The core views this run published, by view name (paths relative to the
    /// destination). The next incremental run patches them only while each is
    /// still this file; otherwise it recomputes the views from the saved state.
    #[serde(default)]
    pub views: BTreeMap<String, FileEntry>,
    /// Merge cycles broken in the published id graph.
    #[serde(default)]
    pub cycles_broken: u64,
    /// The version read of each Delta table (its files are the ones listed above).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta_versions: BTreeMap<String, u64>,
}

/// One processed landed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the source root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The store's ETag, when it gives one.
    pub e_tag: Option<String>,
    /// Last modification time (RFC 3339).
    pub last_modified: String,
}

impl FileEntry {
    fn of(lake: &Lake, file: &LakeFile) -> FileEntry {
        FileEntry::at(&relative(lake.location(), file), &file.meta)
    }

    /// The entry of the file at `path` (relative to its root) as `meta` describes it.
    pub fn at(path: &str, meta: &object_store::ObjectMeta) -> FileEntry {
        FileEntry {
            path: path.to_string(),
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified.to_rfc3339(),
        }
    }

    /// Why `now` is not the file this entry recorded, if it is not.
    pub fn changed(&self, now: &FileEntry) -> Option<String> {
        if self.size != now.size {
            return Some(format!("size {} -> {}", self.size, now.size));
        }
        // Azure quotes an ETag in a HEAD response's header but not in a listing
        // (S3 quotes both), and entries come from either: quotes do not count.
        let bare = |t: &String| t.trim_matches('"').to_string();
        match (&self.e_tag, &now.e_tag) {
            // psync_lake_io tags a Delta file with its deletion vector's digest.
            (Some(a), Some(b)) if bare(a) != bare(b) && b.contains("+dv:") => {
                Some("rows deleted by a Delta deletion vector".into())
            }
            (Some(a), Some(b)) if bare(a) != bare(b) => Some(format!("ETag {a} -> {b}")),
            (Some(_), Some(_)) => None,
            _ if self.last_modified != now.last_modified => Some(format!(
                "modified {} -> {}",
                self.last_modified, now.last_modified
            )),
            _ => None,
        }
    }
}

fn relative(location: &Location, file: &LakeFile) -> String {
    match file.meta.location.prefix_match(&location.prefix) {
        Some(parts) => parts
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/"),
        None => file.meta.location.to_string(),
    }
}

impl Manifest {
    /// The manifest of every file of `lake`.
    pub fn of(lake: &Lake, run_id: &str, source: &str) -> Manifest {
        let files = lake
            .tables()
            .map(|t| {
                let entries = t.files().iter().map(|f| FileEntry::of(lake, f)).collect();
                (t.name().to_string(), entries)
            })
            .collect();
        Manifest {
            format: FORMAT,
            run_id: run_id.to_string(),
            source: source.to_string(),
            files,
            views: BTreeMap::new(),
            cycles_broken: 0,
            delta_versions: lake
                .tables()
                .filter_map(|t| Some((t.name().to_string(), t.delta_version()?)))
                .collect(),
        }
    }

    /// Reads `<dest>/_psync/state/manifest.json`; `None` when there is none.
    pub async fn read(dest: &Location) -> Result<Option<Manifest>> {
        let path = dest.child(&["_psync", "state", MANIFEST]);
        let url = dest.url_of(&path);
        let bytes = match dest.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(|e| publish_err(&url, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(publish_err(&url, e)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            CoreError::Config(format!("{url}: not a psync-lake state manifest: {e}"))
        })?;
        if manifest.format != FORMAT {
            return Err(CoreError::Config(format!(
                "{url}: state format {} is not the one this version reads ({FORMAT}); run with --mode full once",
                manifest.format
            )));
        }
        Ok(Some(manifest))
    }
}

/// What changed in the lake since a manifest.
#[derive(Debug, Default)]
pub struct Delta {
    /// Files not processed before, per table.
    pub new: BTreeMap<String, Vec<LakeFile>>,
    /// Processed files that changed or vanished since: `(url, what changed)`.
    pub changed: Vec<(String, String)>,
}

impl Delta {
    /// Compares the lake as listed now with what `manifest` processed.
    pub fn between(manifest: &Manifest, lake: &Lake) -> Delta {
        let mut delta = Delta::default();
        // Every (table, path) listed now, to find processed files that are gone.
        let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
        for table in lake.tables() {
            let before: BTreeMap<&str, &FileEntry> = manifest
                .files
                .get(table.name())
                .map(|v| v.iter().map(|e| (e.path.as_str(), e)).collect())
                .unwrap_or_default();
            for file in table.files() {
                let now = FileEntry::of(lake, file);
                match before.get(now.path.as_str()) {
                    None => delta
                        .new
                        .entry(table.name().to_string())
                        .or_default()
                        .push(file.clone()),
                    Some(old) => {
                        if let Some(why) = old.changed(&now) {
                            delta
                                .changed
                                .push((lake.location().url_of(&file.meta.location), why));
                        }
                    }
                }
                listed.insert((table.name().to_string(), now.path));
            }
        }
        for (table, entries) in &manifest.files {
            // A Delta table's file leaves its log (a delete, an OPTIMIZE) but usually
            // stays on storage until a VACUUM.
            let gone = match lake.table(table).and_then(|t| t.delta_version()) {
                Some(version) => format!(
                    "removed from the Delta log (version {} -> {version})",
                    manifest
                        .delta_versions
                        .get(table)
                        .map_or("?".to_string(), u64::to_string)
                ),
                None => "deleted".to_string(),
            };
            for e in entries {
                if !listed.contains(&(table.clone(), e.path.clone())) {
                    let parts: Vec<&str> = e.path.split('/').collect();
                    let url = lake.location().url_of(&lake.location().child(&parts));
                    delta.changed.push((url, gone.clone()));
                }
            }
        }
        delta
    }

    /// Whether nothing landed since.
    pub fn is_empty(&self) -> bool {
        self.new.values().all(Vec::is_empty) && self.changed.is_empty()
    }

    /// `lake` restricted to the new files (tables keep their schema).
    pub fn restrict(&self, lake: &Lake) -> Lake {
        lake.with_files(|table, _| self.new.get(table).cloned().unwrap_or_default())
    }
}

/// What a run's new state segment of one table holds.
#[derive(Debug, Clone)]
pub enum Segment {
    /// The new files only; it joins the saved segments.
    New,
    /// The new files and these saved segments, which it replaces.
    Merge(Vec<LakeFile>),
    /// Everything: it replaces every saved segment.
    All,
}

/// Chooses a table's new segment from its saved segments: below [`MAX_SEGMENTS`]
/// a run adds one; at [`MAX_SEGMENTS`] it merges all but the largest (work in
/// proportion to what they hold, as with the runs that wrote them), unless
/// together they reach half the largest (in rows): then everything, so the state stays
/// close to its compacted size.
pub fn plan_segment(saved: &[LakeFile]) -> Segment {
    if saved.len() < MAX_SEGMENTS {
        return Segment::New;
    }
    // Rows (from the footers), not bytes: a small file's bytes are mostly footer.
    let mut by_size: Vec<&LakeFile> = saved.iter().collect();
    by_size.sort_by_key(|f| std::cmp::Reverse(f.rows));
    let base = by_size[0].rows;
    let rest: u64 = by_size[1..].iter().map(|f| f.rows).sum();
    if rest * 2 >= base {
        Segment::All
    } else {
        Segment::Merge(by_size[1..].iter().map(|f| (*f).clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(rows: &[u64]) -> Vec<LakeFile> {
        rows.iter()
            .enumerate()
            .map(|(i, &n)| LakeFile {
                meta: object_store::ObjectMeta {
                    location: format!("s/{i}.parquet").into(),
                    last_modified: chrono::Utc::now(),
                    size: 1000,
                    e_tag: None,
                    version: None,
                },
                rows: n,
                null_counts: BTreeMap::new(),
                columns: vec![],
                partition_values: vec![],
                selection: None,
            })
            .collect()
    }

    fn merged(plan: Segment) -> Option<Vec<String>> {
        match plan {
            Segment::Merge(files) => {
                Some(files.iter().map(|f| f.meta.location.to_string()).collect())
            }
            _ => None,
        }
    }

    #[test]
    fn below_the_limit_a_run_adds_a_segment() {
        assert!(matches!(
            plan_segment(&segments(&[100; MAX_SEGMENTS - 1])),
            Segment::New
        ));
        assert!(matches!(plan_segment(&[]), Segment::New));
    }

    #[test]
    fn at_the_limit_small_segments_merge_and_the_base_stays() {
        let mut sizes = vec![10u64; MAX_SEGMENTS];
        sizes[3] = 1000;
        let files = merged(plan_segment(&segments(&sizes))).expect("a merge");
        assert_eq!(files.len(), MAX_SEGMENTS - 1);
        assert!(!files.contains(&"s/3.parquet".to_string()));
    }

    #[test]
    fn small_segments_as_large_as_half_the_base_merge_with_it() {
        let mut sizes = vec![100u64; MAX_SEGMENTS];
        sizes[0] = 2 * 100 * (MAX_SEGMENTS as u64 - 1);
        assert!(matches!(plan_segment(&segments(&sizes)), Segment::All));
        sizes[0] += 1;
        assert!(merged(plan_segment(&segments(&sizes))).is_some());
    }

    #[test]
    fn an_etag_is_the_same_quoted_or_not() {
        let entry = |e_tag: &str, size| FileEntry {
            path: "v/v.parquet".into(),
            size,
            e_tag: Some(e_tag.into()),
            last_modified: "2026-01-01T00:00:00+00:00".into(),
        };
        let head = entry("\"0x8DC1\"", 10);
        assert_eq!(head.changed(&entry("0x8DC1", 10)), None);
        assert!(head.changed(&entry("0x8DC2", 10)).is_some());
        assert!(head.changed(&entry("\"0x8DC1\"", 11)).is_some());
    }
}

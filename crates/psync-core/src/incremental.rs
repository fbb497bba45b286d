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
//! A run reads the segments plus the new files, runs the unchanged view code over
//! them (so an incremental run equals a full run on the same landed files, merges,
//! late rows and ties included), and adds one segment: its new files compacted.
//! Every [`MAX_SEGMENTS`] runs it writes one segment of everything instead, which
//! replaces the others.
//!
//! Re-reading files a segment already holds changes nothing, so the commit order is
//! simple: views, then segments, then the manifest. A run killed in between leaves
//! segments at least as new as the manifest, and the next run re-reads the files
//! the manifest lacks.

use std::collections::{BTreeMap, BTreeSet};

use object_store::ObjectStoreExt;
use psync_lake_io::{Lake, LakeFile, Location};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::publish::publish_err;

/// The manifest's name under `<dest>/_psync/state/`.
pub const MANIFEST: &str = "manifest.json";
/// The tables an incremental run saves, compacted, under `<dest>/_psync/state/`.
pub const STATE_TABLES: [&str; 3] = [
    crate::inputs::ID_GRAPH_UPDATES,
    crate::inputs::EXTERNAL_ID_MAPPING_UPDATES,
    crate::inputs::PROFILE_TRAITS_UPDATES,
];
/// Segments per state table before a run consolidates them into one.
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
        FileEntry {
            path: relative(lake.location(), file),
            size: file.meta.size,
            e_tag: file.meta.e_tag.clone(),
            last_modified: file.meta.last_modified.to_rfc3339(),
        }
    }

    /// Why `now` is not the file this entry recorded, if it is not.
    fn changed(&self, now: &FileEntry) -> Option<String> {
        if self.size != now.size {
            return Some(format!("size {} -> {}", self.size, now.size));
        }
        match (&self.e_tag, &now.e_tag) {
            (Some(a), Some(b)) if a != b => Some(format!("ETag {a} -> {b}")),
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
            for e in entries {
                if !listed.contains(&(table.clone(), e.path.clone())) {
                    let parts: Vec<&str> = e.path.split('/').collect();
                    let url = lake.location().url_of(&lake.location().child(&parts));
                    delta.changed.push((url, "deleted".into()));
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

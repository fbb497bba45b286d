//! `status`: what a destination holds, for a scheduler's pre-check and for a
//! person who wonders why a run failed: the last run, whether the published
//! files are still the ones its record names, the lease, the incremental state.
//!
//! Read-only but for the lease check's clock probe (`_psync/clock`, see
//! [`crate::lease`]), which is written only when a lock is found.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use psync_lake_io::Location;
use serde::{Deserialize, Serialize};

use crate::error::{Result, publish_err};
use crate::incremental::{FileEntry, Manifest};
use crate::lease::{self, LockState, Verdict};

/// The run record's fields `status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastRun {
    /// Run id.
    pub run_id: String,
    /// `full`, `incremental`, `as-of`.
    pub mode: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Rows per view published.
    #[serde(default)]
    pub rows: BTreeMap<String, u64>,
    /// Warnings of the run.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Merge cycles broken.
    #[serde(default)]
    pub cycles_broken: u64,
}

/// How a published file compares with the last run record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// The file the record names.
    AsRecorded,
    /// Named by the record, but another file now (a run published it and was
    /// stopped before it recorded the set).
    Changed,
    /// Named by the record, not there.
    Missing,
    /// There, named by no record.
    NotRecorded,
}

/// One published file.
#[derive(Debug, Clone, Serialize)]
pub struct ViewFile {
    /// Path relative to the destination.
    pub path: String,
    /// How it compares with the record.
    pub state: FileState,
}

/// The incremental state under `<dest>/_psync/state/`.
#[derive(Debug, Clone, Serialize)]
pub struct StateSummary {
    /// The run that wrote the manifest.
    pub run_id: String,
    /// Landed files processed so far.
    pub files_processed: usize,
    /// Their bytes.
    pub bytes_processed: u64,
    /// Segments per state table: (files, bytes).
    pub segments: BTreeMap<String, (usize, u64)>,
}

/// The overall verdict, and the exit code `status` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Unlocked, and the views are the last run's (or there are none yet).
    Ok,
    /// A live run holds the destination.
    Locked,
    /// A stale lock is left, or views that no run record names are published.
    NeedsAttention,
}

impl Health {
    /// `status`'s exit code: 0, 3 or 4.
    pub fn exit_code(self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Locked => 3,
            Health::NeedsAttention => 4,
        }
    }
}

/// What a destination holds.
#[derive(Debug, Clone, Serialize)]
pub struct DestStatus {
    /// The destination, as given.
    pub dest: String,
    /// The last run record, if any run completed here.
    pub last_run: Option<LastRun>,
    /// Whether the last run record names its files (records written before
    /// psync-lake recorded them do not).
    pub files_recorded: bool,
    /// Every published Parquet file (views and health tables).
    pub files: Vec<ViewFile>,
    /// The lock, if one is there.
    pub lock: Option<LockState>,
    /// Folders of runs' staged files left under `_psync/tmp/`.
    pub staging_left: usize,
    /// The incremental state, if an incremental run saved one.
    pub state: Option<StateSummary>,
    /// The verdict.
    pub health: Health,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// Reads the status of `dest`; a lock not renewed for `lease_timeout` is stale.
pub async fn status(dest: &Location, lease_timeout: Duration) -> Result<DestStatus> {
    let record = read_json(dest, &["_psync", "last_run.json"]).await?;
    let last_run = record
        .as_ref()
        .and_then(|r| serde_json::from_value::<LastRun>(with_rows(r)).ok());
    let recorded: Option<Vec<FileEntry>> = record
        .as_ref()
        .and_then(|r| r.get("published_files"))
        .and_then(|f| serde_json::from_value(f.clone()).ok());
    let listed = list(dest, None).await?;
    let mut files = vec![];
    let mut problems = vec![];
    let mut staging = std::collections::BTreeSet::new();
    let mut found: BTreeMap<String, FileEntry> = BTreeMap::new();
    // Folders that are Delta tables (Delta output): their logs say which files are live.
    let delta_tables: std::collections::BTreeSet<String> = listed
        .iter()
        .filter_map(|(path, _)| {
            path.split_once("/_delta_log/")
                .map(|(t, _)| format!("{t}/"))
        })
        .collect();
    for (path, meta) in &listed {
        if path.contains("_delta_log/") {
            // A Delta log's checkpoints are Parquet too, and no view.
        } else if let Some(rest) = path.strip_prefix("_psync/tmp/") {
            staging.insert(rest.split('/').next().unwrap_or_default().to_string());
        } else if path.ends_with(".parquet") && !path.starts_with("_psync/state/") {
            found.insert(path.clone(), FileEntry::at(path, meta));
        }
    }
    if let Some(recorded) = &recorded {
        for r in recorded {
            let state = match found.remove(&r.path) {
                Some(now) if r.changed(&now).is_none() => FileState::AsRecorded,
                Some(_) => FileState::Changed,
                None => FileState::Missing,
            };
            files.push(ViewFile {
                path: r.path.clone(),
                state,
            });
        }
    }
    for path in found.into_keys() {
        if delta_tables.iter().any(|t| path.starts_with(t.as_str())) {
            // A file in a Delta table's folder that the last run did not publish: an
            // older version's, or a killed run's that no commit names; no reader of
            // the table's latest version sees it.
            continue;
        }
        files.push(ViewFile {
            path,
            state: if recorded.is_some() || last_run.is_none() {
                FileState::NotRecorded
            } else {
                // An old record that names no files: nothing to compare with.
                FileState::AsRecorded
            },
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let off: Vec<_> = files
        .iter()
        .filter(|f| f.state != FileState::AsRecorded)
        .map(|f| format!("{} ({})", f.path, file_state_word(f.state)))
        .collect();
    if !off.is_empty() {
        problems.push(format!(
            "published files that are not the last run record's: {}",
            off.join(", ")
        ));
    }
    problems.extend(delta_ahead(dest).await?);
    let lock = lease::inspect(dest, lease_timeout).await?;
    let health = match &lock {
        Some(l) if !l.is_stale() => Health::Locked,
        Some(l) => {
            problems.push(format!("a stale lock: {}", l.why));
            Health::NeedsAttention
        }
        None if !problems.is_empty() => Health::NeedsAttention,
        None => Health::Ok,
    };
    if health == Health::Locked
        && let Some(l) = &lock
    {
        problems.insert(0, format!("a run holds the destination: {}", l.why));
    }
    Ok(DestStatus {
        dest: dest.display.clone(),
        last_run,
        files_recorded: recorded.is_some(),
        files,
        lock,
        staging_left: staging.len(),
        state: state_summary(dest).await?,
        health,
        problems,
    })
}

/// Delta output: one line per view whose table is not at the version
/// `_psync/views.json` names (a run stopped after committing it).
async fn delta_ahead(dest: &Location) -> Result<Vec<String>> {
    let Some(names) = read_json(dest, &["_psync", "views.json"]).await? else {
        return Ok(vec![]);
    };
    let Some(views) = names.get("views").and_then(|v| v.as_object()) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for (view, entry) in views {
        let table = entry.get("table").and_then(|t| t.as_str());
        let named = entry.get("version").and_then(|v| v.as_u64());
        let (Some(table), Some(named)) = (table, named) else {
            continue;
        };
        let path = dest.child(&table.split('/').collect::<Vec<_>>());
        match psync_lake_io::delta::snapshot(dest, &path, &psync_lake_io::DeltaAt::Latest).await {
            Ok(s) if s.version == named => {}
            Ok(s) => out.push(format!(
                "{view}: its Delta table is at version {}, _psync/views.json names {named} \
                 (a run stopped after committing it; the next run completes the set)",
                s.version
            )),
            Err(e) => out.push(format!("{view}: {e}")),
        }
    }
    Ok(out)
}

/// `as recorded`, `changed`, `missing`, `not recorded`.
pub fn file_state_word(s: FileState) -> &'static str {
    match s {
        FileState::AsRecorded => "as recorded",
        FileState::Changed => "changed",
        FileState::Missing => "missing",
        FileState::NotRecorded => "not recorded",
    }
}

/// `alive`, `live`, `stale`.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Alive => "alive",
        Verdict::Live => "live",
        Verdict::Stale => "stale",
    }
}

/// The run record with `rows` made from its views' rows.
fn with_rows(record: &serde_json::Value) -> serde_json::Value {
    let mut r = record.clone();
    let rows: BTreeMap<String, u64> = record["views"]
        .as_array()
        .map(|views| {
            views
                .iter()
                .filter_map(|v| Some((v["view"].as_str()?.to_string(), v["rows"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = r.as_object_mut() {
        o.insert("rows".into(), serde_json::json!(rows));
    }
    r
}

async fn state_summary(dest: &Location) -> Result<Option<StateSummary>> {
    let Some(manifest) = Manifest::read(dest).await? else {
        return Ok(None);
    };
    let mut segments: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let state = dest.child(&["_psync", "state"]);
    for (path, meta) in list(dest, Some(&state)).await? {
        let Some(rest) = path.strip_prefix("_psync/state/") else {
            continue;
        };
        if let Some((table, file)) = rest.split_once('/')
            && file.ends_with(".parquet")
        {
            let e = segments.entry(table.to_string()).or_default();
            e.0 += 1;
            e.1 += meta.size;
        }
    }
    let files = manifest.files.values().flatten();
    Ok(Some(StateSummary {
        run_id: manifest.run_id.clone(),
        files_processed: files.clone().count(),
        bytes_processed: files.map(|f| f.size).sum(),
        segments,
    }))
}

/// Every object under `prefix` (default: the whole destination), by path relative to it.
async fn list(
    dest: &Location,
    prefix: Option<&object_store::path::Path>,
) -> Result<Vec<(String, object_store::ObjectMeta)>> {
    let root = prefix.cloned().unwrap_or_else(|| dest.prefix.clone());
    let url = dest.url_of(&root);
    let metas: Vec<_> = match dest.store.list(Some(&root)).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => vec![],
        Err(e) => return Err(publish_err(&url, e)),
    };
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            let rel: Vec<_> = m
                .location
                .prefix_match(&dest.prefix)?
                .map(|p| p.as_ref().to_string())
                .collect();
            Some((rel.join("/"), m))
        })
        .collect())
}

async fn read_json(dest: &Location, parts: &[&str]) -> Result<Option<serde_json::Value>> {
    let path = dest.child(parts);
    let url = dest.url_of(&path);
    let bytes = match dest.store.get(&path).await {
        Ok(g) => g.bytes().await.map_err(|e| publish_err(&url, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(publish_err(&url, e)),
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

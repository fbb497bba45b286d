//! Publishing views to `<dest>/<view>/<view>.parquet` so that a reader opening the
//! folder by path sees the old view or the new one, whole.
//!
//! ```text
//! each view ─► write_parquet (parallel row-group encoding) ─► <dest>/_psync/tmp/<run>/<view>.parquet
//! all views written ─► rename each into <dest>/<view>/<view>.parquet (atomic per file)
//!                  ─► run record <dest>/_psync/runs/<run>.json, <dest>/_psync/last_run.json
//! ```
//!
//! A run that fails before the renames leaves every view folder as it was.
//!
//! Two runs never publish into one destination together: a run first creates
//! `<dest>/_psync/lock` with a conditional create (`PutMode::Create`, an S3
//! `If-None-Match: *` PUT), and removes it when done. Of two runs started
//! together exactly one creates it; the other stops before writing anything. A
//! lock older than the stale limit (a run that was killed) is replaced.

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::DataFrame;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use psync_lake_io::Location;

use crate::error::{CoreError, Result};

/// Rows per row group: small enough for readers to parallelise, large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Columns of the published files whose values are (nearly) all distinct. A
/// dictionary does not pay for them: the writer would fill one, overflow it and
/// fall back to plain pages, slower and larger than plain pages from the start.
pub const DISTINCT_COLUMNS: &[&str] = &[
    "segment_id",
    "canonical_segment_id",
    "merged_to",
    "external_id_value",
    "external_id_hash",
    "timestamp",
];

/// The Parquet settings of every published file (SPEC §5): zstd at level 1
/// (levels 1 and 3 give files within 2% of each other here; level 1 writes
/// faster), row groups of [`ROW_GROUP_ROWS`], no dictionary for [`DISTINCT_COLUMNS`].
pub fn parquet_options() -> TableParquetOptions {
    let mut o = TableParquetOptions::default();
    o.global.compression = Some("zstd(1)".into());
    o.global.max_row_group_size = ROW_GROUP_ROWS;
    o.global.allow_single_file_parallelism = true;
    for column in DISTINCT_COLUMNS {
        let options = o
            .column_specific_options
            .entry(column.to_string())
            .or_default();
        options.dictionary_enabled = Some(false);
    }
    o
}

/// Which saved state segments a new segment replaces.
#[derive(Debug, Clone)]
pub enum Replaces {
    /// None: it joins them.
    None,
    /// Every other segment of its table.
    All,
    /// These.
    These(Vec<Path>),
}

/// A destination being written by one run.
pub struct Publisher {
    dest: Location,
    run_id: String,
}

/// A file written to its staging place, not yet visible.
#[derive(Debug, Clone)]
pub struct Staged {
    /// What it is (a view's name, or a state table's).
    pub name: String,
    /// Where it was written.
    pub staging: Path,
    /// Where it goes when committed.
    pub target: Path,
    /// Whether committing it removes every other file of its folder (a view is the
    /// only file of its folder; a state segment joins the others).
    pub replaces: bool,
    /// Files committing it removes (the state segments it merged).
    pub removes: Vec<Path>,
    /// Rows written.
    pub rows: u64,
}

impl Publisher {
    /// A publisher for `run_id` into `dest`.
    pub fn new(dest: Location, run_id: String) -> Self {
        Publisher { dest, run_id }
    }

    /// The run this publisher writes for.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The destination.
    pub fn dest(&self) -> &Location {
        &self.dest
    }

    fn staging_dir(&self) -> Path {
        self.dest.child(&["_psync", "tmp", &self.run_id])
    }

    /// The published file of `view`.
    pub fn view_file(&self, view: &str) -> Path {
        self.dest.child(&[view, &format!("{view}.parquet")])
    }

    fn lock_path(&self) -> Path {
        self.dest.child(&["_psync", "lock"])
    }

    /// Takes the destination's lock, replacing one older than `stale_after`.
    pub async fn lock(&self, stale_after: std::time::Duration) -> Result<()> {
        let path = self.lock_path();
        let url = self.dest.url_of(&path);
        let now = chrono::Utc::now();
        let body = serde_json::json!({
            "run_id": self.run_id,
            "pid": std::process::id(),
            "started_at": now.to_rfc3339(),
        });
        for attempt in 0..2 {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let payload = PutPayload::from(body.to_string().into_bytes());
            match self.dest.store.put_opts(&path, payload, opts).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) if attempt == 0 => {
                    let held = self
                        .dest
                        .store
                        .get(&path)
                        .await
                        .map_err(|e| publish_err(&url, e))?;
                    let modified = held.meta.last_modified;
                    let text = held.bytes().await.map_err(|e| publish_err(&url, e))?;
                    let holder: serde_json::Value =
                        serde_json::from_slice(&text).unwrap_or_default();
                    let holder_id = holder["run_id"].as_str().unwrap_or("unknown").to_string();
                    let age = (now - modified).to_std().unwrap_or_default();
                    if age < stale_after {
                        return Err(CoreError::Locked {
                            url,
                            holder: holder_id,
                            since: modified.to_rfc3339(),
                            stale_in: humanize(stale_after - age),
                        });
                    }
                    tracing::warn!(holder = %holder_id, "replacing a stale lock left by a run that did not finish");
                    self.dest
                        .store
                        .delete(&path)
                        .await
                        .map_err(|e| publish_err(&url, e))?;
                }
                Err(e) => return Err(publish_err(&url, e)),
            }
        }
        Err(CoreError::Publish {
            url,
            message: "another run took the lock first".into(),
        })
    }

    /// Releases the lock (best effort: a leftover becomes stale).
    pub async fn unlock(&self) {
        let _ = self.dest.store.delete(&self.lock_path()).await;
    }

    /// Runs `df` and writes it to `view`'s staging file.
    pub async fn stage(&self, view: &str, df: DataFrame) -> Result<Staged> {
        self.stage_to(view, self.view_file(view), df).await
    }

    /// The folder of an incremental run's saved state.
    pub fn state_dir(&self) -> Path {
        self.dest.child(&["_psync", "state"])
    }

    /// Runs `df` and writes it to a staging file that [`Self::commit`] moves to
    /// `<dest>/_psync/state/<table>/<run>.parquet`, a state segment; the commit
    /// removes the segments it `replaces`.
    pub async fn stage_state(
        &self,
        table: &str,
        df: DataFrame,
        replaces: Replaces,
    ) -> Result<Staged> {
        let target = self
            .state_dir()
            .join(table)
            .join(format!("{}.parquet", self.run_id));
        let mut staged = self
            .stage_to(&format!("state/{table}/{}", self.run_id), target, df)
            .await?;
        match replaces {
            Replaces::None => staged.replaces = false,
            Replaces::All => staged.replaces = true,
            Replaces::These(files) => {
                staged.replaces = false;
                staged.removes = files;
            }
        }
        Ok(staged)
    }

    /// Runs `df` and writes it to a staging file named `name` that
    /// [`Self::commit`] moves to `<dest>/<target...>` (the Personas views of a
    /// space, `<dest>/<space>/<view>/<view>.parquet`; the health tables).
    pub async fn stage_at(&self, name: &str, target: &[&str], df: DataFrame) -> Result<Staged> {
        self.stage_to(name, self.dest.child(target), df).await
    }

    /// The staged file of `name`, readable before it is committed.
    pub fn staging_url(&self, name: &str) -> String {
        self.dest
            .url_of(&self.staging_dir().join(format!("{name}.parquet")))
    }

    async fn stage_to(&self, name: &str, target: Path, df: DataFrame) -> Result<Staged> {
        let file = format!("{name}.parquet");
        let staging = file
            .split('/')
            .fold(self.staging_dir(), |p, part| p.join(part));
        let url = self.dest.url_of(&staging);
        if let Some(dir) = &self.dest.local_dir {
            // DataFusion's writer does not create parent folders of a single file.
            let mut local = dir.join("_psync").join("tmp").join(&self.run_id);
            local.extend(name.split('/'));
            local.pop();
            std::fs::create_dir_all(&local).map_err(|e| CoreError::Publish {
                url: local.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let out = df
            .write_parquet(
                &url,
                DataFrameWriteOptions::new().with_single_file_output(true),
                Some(parquet_options()),
            )
            .await?;
        let rows = out
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            })
            .map_or(0, |a| a.value(0));
        Ok(Staged {
            name: name.to_string(),
            staging,
            target,
            rows,
            replaces: true,
            removes: vec![],
        })
    }

    /// Makes staged files visible, one atomic rename each, and removes any other
    /// file a path reader would also pick up in their folders.
    pub async fn commit(&self, staged: &[Staged]) -> Result<()> {
        let store = &self.dest.store;
        for s in staged {
            let target = s.target.clone();
            store
                .rename(&s.staging, &target)
                .await
                .map_err(|e| publish_err(&self.dest.url_of(&target), e))?;
            for other in &s.removes {
                match store.delete(other).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(publish_err(&self.dest.url_of(other), e)),
                }
            }
            if !s.replaces {
                continue;
            }
            let mut folder_parts: Vec<_> = target.parts().collect();
            folder_parts.pop();
            let folder: Path = folder_parts.into_iter().collect();
            let others: Vec<_> = store
                .list(Some(&folder))
                .try_filter(|m| futures::future::ready(m.location != target))
                .try_collect()
                .await
                .map_err(|e| publish_err(&self.dest.url_of(&folder), e))?;
            for other in others {
                tracing::debug!(file = %other.location, "removing a file the new one replaces");
                store
                    .delete(&other.location)
                    .await
                    .map_err(|e| publish_err(&self.dest.url_of(&other.location), e))?;
            }
        }
        Ok(())
    }

    /// Removes this run's staging folder (best effort: a leftover is harmless).
    pub async fn cleanup(&self) {
        let dir = self.staging_dir();
        let Ok(files) = self
            .dest
            .store
            .list(Some(&dir))
            .try_collect::<Vec<_>>()
            .await
        else {
            return;
        };
        for f in files {
            let _ = self.dest.store.delete(&f.location).await;
        }
        if let Some(local) = &self.dest.local_dir {
            let _ = std::fs::remove_dir_all(local.join("_psync").join("tmp").join(&self.run_id));
        }
    }

    /// Writes `body` to `<dest>/_psync/<name>` (one PUT: whole or not at all).
    pub async fn put_meta(&self, name: &[&str], body: Vec<u8>) -> Result<()> {
        let mut parts = vec!["_psync"];
        parts.extend_from_slice(name);
        let path = self.dest.child(&parts);
        self.dest
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| publish_err(&self.dest.url_of(&path), e))?;
        Ok(())
    }

    /// Removes the incremental state's manifest, so that the next incremental run
    /// rebuilds everything.
    pub async fn forget_state(&self) -> Result<()> {
        let path = self.state_dir().join("manifest.json");
        match self.dest.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(publish_err(&self.dest.url_of(&path), e)),
        }
    }

    /// Writes the run record (JSON) beside the views.
    pub async fn record(&self, json: &serde_json::Value) -> Result<()> {
        let body = serde_json::to_vec_pretty(json).map_err(|e| CoreError::Config(e.to_string()))?;
        for path in [
            self.dest
                .child(&["_psync", "runs", &format!("{}.json", self.run_id)]),
            self.dest.child(&["_psync", "last_run.json"]),
        ] {
            self.dest
                .store
                .put(&path, PutPayload::from(body.clone()))
                .await
                .map_err(|e| publish_err(&self.dest.url_of(&path), e))?;
        }
        Ok(())
    }
}

pub(crate) fn publish_err(url: &str, e: object_store::Error) -> CoreError {
    CoreError::Publish {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

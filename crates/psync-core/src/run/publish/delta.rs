//! Delta output (`--format delta`): each view a Delta table at `<dest>/<view>/`.
//!
//! ```text
//! stage:  view ─► execute::write_parquet ─► <dest>/<view>/part-00000-<run>.parquet   (no commit names it: invisible)
//! commit: refusals first (a folder of the other format, a schema the table cannot take)
//!         each view ─► <dest>/<view>/_delta_log/<v>.json   (PutMode::Create: whole or absent)
//!         run record ─► _psync/views.json (conditional put, written last)
//! ```
//!
//! A run killed anywhere leaves each table at the version it had or at the new one,
//! and `_psync/views.json` naming the last complete set: a reader that time-travels
//! to those versions sees one run's views, all of them. Files of a killed run that
//! no commit names stay in the folders, invisible, until a `VACUUM`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::DataFrame;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use psync_lake_io::delta_out::{self, NewFile};
use serde::Serialize;

use super::{OutputFormat, Publisher, Staged, publish_err};
use crate::error::{CoreError, Result};
use crate::incremental::FileEntry;
use crate::run::execute;

/// The file naming the versions of one consistent snapshot of the views.
pub const VIEWS_JSON: &str = "views.json";

/// One view committed as a version of its Delta table.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Committed {
    /// The table's folder, relative to the destination.
    pub table: String,
    /// The version committed.
    pub version: u64,
    /// The run that committed it.
    pub run_id: String,
}

/// The folder holding `file`.
fn parent(file: &Path) -> Path {
    let mut parts: Vec<_> = file.parts().collect();
    parts.pop();
    parts.into_iter().collect()
}

impl Publisher {
    /// Runs `df` and writes it into the folder of `target` (the view's Parquet
    /// path) under a name of its own, for [`Self::commit`] to add to the folder's
    /// Delta table.
    pub(in crate::run) async fn stage_delta(
        &self,
        name: &str,
        target: Path,
        df: DataFrame,
        schema: Option<SchemaRef>,
    ) -> Result<Staged> {
        // One run may stage twice into a folder (a retried view); names stay apart.
        static FILES: AtomicU32 = AtomicU32::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let table = parent(&target);
        // Before anything is written there: a path reader of a Parquet view folder
        // must never see a second file in it.
        self.refuse_parquet_folder(&table).await?;
        let file = table
            .clone()
            .join(format!("part-{n:05}-{}.parquet", self.run_id));
        if let (Some(dir), Some(relative)) = (&self.dest.local_dir, self.relative(&table)) {
            // DataFusion's writer does not create parent folders of a single file.
            let local = dir.join(relative);
            std::fs::create_dir_all(&local).map_err(|e| CoreError::Publish {
                url: local.display().to_string(),
                message: e.to_string(),
            })?;
        }
        // Named before it is written: a write that fails halfway is removed too.
        if let Ok(mut u) = self.uncommitted.lock() {
            u.push(file.clone());
        }
        let rows = execute::write_parquet(df, &self.dest.url_of(&file)).await?;
        Ok(Staged {
            name: name.to_string(),
            staging: file,
            target: table,
            rows,
            replaces: false,
            removes: vec![],
            delta: true,
            schema,
        })
    }

    /// Fails, before anything is committed, when a view's folder holds the other
    /// format's output (`<view>.parquet` of a Parquet run, or a Delta log), or when
    /// a view's new schema cannot be committed over its table.
    pub(super) async fn check_formats(&self, staged: &[Staged]) -> Result<()> {
        for s in staged.iter().filter(|s| Self::is_view(&s.name)) {
            if s.delta {
                self.refuse_parquet_folder(&s.target).await?;
                let schema = s.schema.as_deref().ok_or_else(|| CoreError::Publish {
                    url: self.dest.url_of(&s.target),
                    message: "no schema for the staged view (a bug)".into(),
                })?;
                delta_out::check_overwrite(&self.dest, &s.target, schema).await?;
            } else {
                let table = parent(&s.target);
                if delta_out::is_delta_table(&self.dest, &table).await? {
                    return Err(CoreError::Config(format!(
                        "{} is a Delta table; rerun with --format delta (or publish into another --dest)",
                        self.dest.url_of(&table)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fails when the folder `table` holds a view published as Parquet.
    async fn refuse_parquet_folder(&self, table: &Path) -> Result<()> {
        let leaf = table.filename().unwrap_or_default();
        let parquet = table.clone().join(format!("{leaf}.parquet"));
        match self.dest.store.head(&parquet).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Ok(_) => Err(CoreError::Config(format!(
                "{} holds a view published as Parquet; --format delta publishes into a \
                 destination of its own (or remove that folder first)",
                self.dest.url_of(table)
            ))),
            Err(e) => Err(publish_err(&self.dest.url_of(&parquet), e)),
        }
    }

    /// Commits the staged file of `s` as the only live file of a new version of
    /// its Delta table.
    pub(super) async fn commit_delta(&self, s: &Staged) -> Result<()> {
        let store = &self.dest.store;
        let url = self.dest.url_of(&s.staging);
        let meta = store
            .head(&s.staging)
            .await
            .map_err(|e| publish_err(&url, e))?;
        let schema = s.schema.as_deref().ok_or_else(|| CoreError::Publish {
            url: url.clone(),
            message: "no schema for the staged view (a bug)".into(),
        })?;
        // From here the file may be live, even when the commit reports an error
        // (the put may have landed): it is never removed as uncommitted.
        if let Ok(mut u) = self.uncommitted.lock() {
            u.retain(|f| f != &s.staging);
        }
        let file = NewFile {
            path: s.staging.clone(),
            size: meta.size,
            last_modified_ms: meta.last_modified.timestamp_millis(),
            rows: s.rows,
        };
        let version =
            delta_out::commit_overwrite(&self.dest, &s.target, schema, file, &self.run_id).await?;
        tracing::info!(view = s.name, version, "committed a Delta version");
        if let Ok(mut c) = self.committed.lock() {
            c.push(s.name.clone());
        }
        let table = self.relative(&s.target).unwrap_or_default();
        if let Some(relative) = self.relative(&s.staging)
            && let Ok(mut p) = self.published.lock()
        {
            p.push(FileEntry::at(&relative, &meta));
        }
        if let Ok(mut v) = self.delta_versions.lock() {
            v.insert(
                s.name.clone(),
                Committed {
                    table,
                    version,
                    run_id: self.run_id.clone(),
                },
            );
        }
        Ok(())
    }

    /// Removes the files this run wrote into views' folders that no commit names.
    pub(super) async fn remove_uncommitted(&self) {
        let files = self
            .uncommitted
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default();
        for f in files {
            let _ = self.dest.store.delete(&f).await;
        }
    }

    /// The Delta version this run committed of view `name`, if it did.
    pub fn delta_version(&self, name: &str) -> Option<u64> {
        self.delta_versions
            .lock()
            .ok()
            .and_then(|v| v.get(name).map(|c| c.version))
    }

    fn views_json_path(&self) -> Path {
        self.dest.child(&["_psync", VIEWS_JSON])
    }

    /// Notes the version of `_psync/views.json` the run will overwrite.
    pub(super) async fn read_views_json_version(&self) -> Result<()> {
        let path = self.views_json_path();
        let version = match self.dest.store.head(&path).await {
            Ok(meta) => Some(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            }),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(publish_err(&self.dest.url_of(&path), e)),
        };
        if let Ok(mut v) = self.views_json.lock() {
            *v = version;
        }
        Ok(())
    }

    /// The views `_psync/views.json` names now (none when absent or unreadable).
    async fn views_named(&self) -> BTreeMap<String, Committed> {
        let Ok(got) = self.dest.store.get(&self.views_json_path()).await else {
            return BTreeMap::new();
        };
        let Ok(bytes) = got.bytes().await else {
            return BTreeMap::new();
        };
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|j| serde_json::from_value(j.get("views")?.clone()).ok())
            .unwrap_or_default()
    }

    /// Writes `_psync/views.json`: the Delta version of every view, this run's
    /// and, for views it did not publish, the ones named before. One conditional
    /// put: it fails when the file changed since the run took the lease.
    pub async fn write_views_json(&self) -> Result<()> {
        if self.format != OutputFormat::Delta {
            return Ok(());
        }
        let mut views = self.views_named().await;
        views.extend(
            self.delta_versions
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
        );
        let body = serde_json::json!({
            "format": "delta",
            "run_id": self.run_id,
            "written_at": chrono::Utc::now().to_rfc3339(),
            "views": views,
        });
        let body =
            serde_json::to_vec_pretty(&body).map_err(|e| CoreError::Config(e.to_string()))?;
        // Only while the lease is this run's (a run that lost it names nothing); a
        // stop asked for now waits for this one small put.
        match &*self.lease.lock().await {
            Some(lease) => lease.renew_now().await?,
            None => {
                return Err(CoreError::Publish {
                    url: self.dest.url_of(&self.views_json_path()),
                    message: "writing without holding the lease (a bug)".into(),
                });
            }
        }
        let path = self.views_json_path();
        let url = self.dest.url_of(&path);
        let mode = match self.views_json.lock().map(|v| v.clone()) {
            Ok(Some(version)) => PutMode::Update(version),
            _ => PutMode::Create,
        };
        match self
            .dest
            .store
            .put_opts(&path, PutPayload::from(body), mode.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(
                e @ (object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }),
            ) => Err(CoreError::Publish {
                url,
                message: format!(
                    "changed by another writer since this run took the lease ({e}); the views' \
                     new versions are committed, the run record names them"
                ),
            }),
            Err(e) => Err(publish_err(&url, e)),
        }
    }

    /// Whether the view whose Parquet file would be `file` is published: that
    /// file, or with Delta output a Delta log in its folder.
    pub async fn is_published(&self, file: &Path) -> Result<bool> {
        if self.format == OutputFormat::Delta {
            return Ok(delta_out::is_delta_table(&self.dest, &parent(file)).await?);
        }
        match self.dest.store.head(file).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(publish_err(&self.dest.url_of(file), e)),
        }
    }
}

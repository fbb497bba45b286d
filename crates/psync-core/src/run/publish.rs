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
//! Writing the staged files is [`super::stage`]'s (through [`super::execute`]);
//! this module takes the lease and commits; [`record`] writes the run record.
//!
//! With `--format delta` (see [`delta`]) each view is a Delta table instead: its
//! file is written straight into the view's folder under a unique name and made
//! live by a commit to the table's log; `_psync/views.json` names the versions.
//!
//! Two runs never publish into one destination together: a run first takes the
//! destination's lease (`<dest>/_psync/lock`, see [`crate::lease`]) and commits
//! only while it holds it. A run asked to stop (a signal) commits nothing more
//! after the file it is committing.

mod delta;
mod record;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, UpdateVersion};
use psync_lake_io::Location;

pub(crate) use crate::error::publish_err;
use crate::error::{CoreError, Result};
use crate::incremental::FileEntry;
use crate::lease::{self, Lease, LeaseOptions};
use crate::stop::Stop;

/// The Parquet settings of every published file are [`super::execute`]'s, which
/// writes them; re-exported here under their first paths.
pub use super::execute::{DISTINCT_COLUMNS, ROW_GROUP_ROWS, parquet_options};

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

/// How views are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `<dest>/<view>/<view>.parquet`, replaced whole by each run.
    #[default]
    Parquet,
    /// `<dest>/<view>/` a Delta table, one new version per run.
    Delta,
}

/// A destination being written by one run.
pub struct Publisher {
    format: OutputFormat,
    /// Delta output: files written into views' folders and not (yet) handed to a
    /// commit, which [`Self::cleanup`] removes.
    uncommitted: Mutex<Vec<Path>>,
    /// Delta output: the version committed of each view, by view name.
    delta_versions: Mutex<BTreeMap<String, delta::Committed>>,
    /// Delta output: `_psync/views.json` as it was when the lease was taken
    /// (`None`: absent), the version its conditional overwrite expects.
    views_json: Mutex<Option<UpdateVersion>>,
    dest: Location,
    run_id: String,
    stop: Stop,
    lease: Arc<tokio::sync::Mutex<Option<Lease>>>,
    /// Set while the lease is being taken (see [`Self::lock`]).
    acquiring: Arc<AtomicBool>,
    committing: AtomicBool,
    /// Names of the staged views (not state) of the run, in commit order.
    views: Mutex<Vec<String>>,
    /// Names of the staged files committed so far.
    committed: Mutex<Vec<String>>,
    /// The files committed so far, as the store describes them once published.
    published: Mutex<Vec<FileEntry>>,
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
    /// Delta output: whether this is a view's file to commit to the Delta table at
    /// `target` (then `target` is the table's folder and `staging` the file in it).
    pub delta: bool,
    /// The schema of the rows written.
    pub schema: Option<SchemaRef>,
}

impl Publisher {
    /// A publisher for `run_id` into `dest`.
    pub fn new(dest: Location, run_id: String) -> Self {
        Publisher {
            format: OutputFormat::Parquet,
            uncommitted: Mutex::default(),
            delta_versions: Mutex::default(),
            views_json: Mutex::default(),
            dest,
            run_id,
            stop: Stop::default(),
            lease: Arc::default(),
            acquiring: Arc::default(),
            committing: AtomicBool::new(false),
            views: Mutex::new(vec![]),
            committed: Mutex::new(vec![]),
            published: Mutex::new(vec![]),
        }
    }

    /// The same publisher, stopping when `stop` is requested.
    pub fn with_stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// The same publisher, publishing views in `format`.
    pub fn with_format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// How views are published.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// The run this publisher writes for.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The destination.
    pub fn dest(&self) -> &Location {
        &self.dest
    }

    /// The run's staging folder, `<dest>/_psync/tmp/<run>/`.
    pub(super) fn staging_dir(&self) -> Path {
        self.dest.child(&["_psync", "tmp", &self.run_id])
    }

    /// The published file of `view`.
    pub fn view_file(&self, view: &str) -> Path {
        self.dest.child(&[view, &format!("{view}.parquet")])
    }

    /// Takes the destination's lease (see [`crate::lease`]); it is renewed until
    /// [`Self::unlock`].
    pub async fn lock(&self, opts: &LeaseOptions) -> Result<()> {
        // Taken in a task of its own, which a stop does not drop halfway: a
        // conditional create on disk ends on a blocking thread even when its
        // caller is gone, so a dropped acquire could leave a lease nobody holds.
        // [`Self::abandon`] waits for the task and releases what it took.
        self.acquiring.store(true, Ordering::SeqCst);
        let (dest, run_id, opts) = (self.dest.clone(), self.run_id.clone(), opts.clone());
        let (slot, acquiring) = (self.lease.clone(), self.acquiring.clone());
        let task = tokio::spawn(async move {
            let result = match Lease::acquire(&dest, &run_id, &opts).await {
                Ok(lease) => {
                    *slot.lock().await = Some(lease);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            acquiring.store(false, Ordering::SeqCst);
            result
        });
        task.await.map_err(|e| CoreError::Publish {
            url: self.dest.url_of(&lease::lock_path(&self.dest)),
            message: format!("taking the lease: {e}"),
        })??;
        self.remove_others_staging().await;
        if self.format == OutputFormat::Delta {
            self.read_views_json_version().await?;
        }
        Ok(())
    }

    /// Removes what runs that are gone left staged: runs stage only while they
    /// hold the lease, so whatever is under `_psync/tmp/` now is not another live
    /// run's (best effort).
    async fn remove_others_staging(&self) {
        let tmp = self.dest.child(&["_psync", "tmp"]);
        let mine = self.staging_dir();
        let Ok(files) = self
            .dest
            .store
            .list(Some(&tmp))
            .try_collect::<Vec<_>>()
            .await
        else {
            return;
        };
        let left: Vec<_> = files
            .into_iter()
            .filter(|f| f.location.prefix_match(&mine).is_none())
            .collect();
        if !left.is_empty() {
            tracing::info!(
                files = left.len(),
                "removing files staged by runs that are gone"
            );
        }
        for f in left {
            let _ = self.dest.store.delete(&f.location).await;
        }
        if let Some(local) = &self.dest.local_dir
            && let Ok(dirs) = std::fs::read_dir(local.join("_psync").join("tmp"))
        {
            for d in dirs.flatten() {
                if d.file_name() != self.run_id.as_str() {
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
        }
    }

    /// Releases the lease, if this run holds it.
    pub async fn unlock(&self) {
        let lease = self.lease.lock().await.take();
        if let Some(lease) = lease {
            lease.release().await;
        }
    }

    /// Fails once the run was asked to stop, or lost its lease: nothing more is
    /// committed then.
    async fn may_commit(&self) -> Result<()> {
        if let Some(signal) = self.stop.requested() {
            return Err(self.interrupted(signal));
        }
        match &*self.lease.lock().await {
            Some(lease) => lease.renew_now().await,
            None => Err(CoreError::Publish {
                url: self.dest.url_of(&lease::lock_path(&self.dest)),
                message: "committing without holding the lease (a bug)".into(),
            }),
        }
    }

    /// The error of a run stopped by `signal`: which views it published.
    pub fn interrupted(&self, signal: &str) -> CoreError {
        let committed = self.committed.lock().map(|c| c.clone()).unwrap_or_default();
        let (published, left): (Vec<_>, Vec<_>) = self
            .views
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
            .into_iter()
            .partition(|v| committed.contains(v));
        CoreError::Interrupted {
            signal: signal.to_string(),
            published,
            left,
        }
    }

    /// Whether the commit phase started: from then on the run is not dropped
    /// midway; [`Self::commit`] stops between files instead.
    pub fn committing(&self) -> bool {
        self.committing.load(Ordering::SeqCst)
    }

    /// Waits until the run may be dropped because it was asked to stop: at once
    /// before its commit phase, never during or after it.
    pub async fn stopped_before_commit(&self) -> &'static str {
        let signal = self.stop.wait().await;
        if self.committing() {
            std::future::pending::<()>().await;
        }
        signal
    }

    /// Whether `name` is a view's (not state, not a health table): only views
    /// become Delta tables.
    pub(super) fn is_view(name: &str) -> bool {
        !name.starts_with("state/") && !name.starts_with("health.")
    }

    /// Makes staged files visible, one atomic rename each, and removes any other
    /// file a path reader would also pick up in their folders.
    ///
    /// Between two files it stops when the run was asked to stop or lost its
    /// lease; each file is whole either way.
    pub async fn commit(&self, staged: &[Staged]) -> Result<()> {
        self.committing.store(true, Ordering::SeqCst);
        // Refusals (a folder of the other format, a schema a new Delta version
        // cannot take) come before anything is committed.
        self.check_formats(staged).await?;
        let store = &self.dest.store;
        if let Ok(mut views) = self.views.lock() {
            views.extend(
                staged
                    .iter()
                    .filter(|s| !s.name.starts_with("state/") && !s.name.starts_with("health."))
                    .map(|s| s.name.clone()),
            );
        }
        for s in staged {
            self.may_commit().await?;
            if s.delta {
                self.commit_delta(s).await?;
                continue;
            }
            let target = s.target.clone();
            let url = self.dest.url_of(&target);
            if let Err(e) = store.rename(&s.staging, &target).await {
                // A run that took the lease over removes what this one staged:
                // say that, rather than that a staged file is missing.
                self.may_commit().await?;
                return Err(publish_err(&url, e));
            }
            if let Ok(mut c) = self.committed.lock() {
                c.push(s.name.clone());
            }
            let meta = store
                .head(&target)
                .await
                .map_err(|e| publish_err(&url, e))?;
            if let Some(relative) = self.relative(&target)
                && let Ok(mut p) = self.published.lock()
            {
                p.push(FileEntry::at(&relative, &meta));
            }
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

    /// `path` relative to the destination root.
    fn relative(&self, path: &Path) -> Option<String> {
        let parts: Vec<_> = path
            .prefix_match(&self.dest.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    /// Removes this run's staging folder and its uncommitted Delta files (best
    /// effort: a leftover is harmless).
    pub async fn cleanup(&self) {
        self.remove_uncommitted().await;
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

    /// Ends a run whose work was dropped (it was asked to stop): its staging
    /// folder removed, its lease released.
    pub async fn abandon(&self) {
        self.cleanup().await;
        // A write that was in flight when the work was dropped may still land
        // (local writes finish on a blocking thread): remove the folder once more.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.cleanup().await;
        while self.acquiring.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.unlock().await;
    }
}

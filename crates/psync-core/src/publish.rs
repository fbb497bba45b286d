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

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::DataFrame;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use psync_lake_io::Location;

use crate::error::{CoreError, Result};

/// Rows per row group: small enough for readers to parallelise, large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// The Parquet settings of every published file (SPEC §5).
pub fn parquet_options() -> TableParquetOptions {
    let mut o = TableParquetOptions::default();
    o.global.compression = Some("zstd(3)".into());
    o.global.max_row_group_size = ROW_GROUP_ROWS;
    o.global.allow_single_file_parallelism = true;
    o
}

/// A destination being written by one run.
pub struct Publisher {
    dest: Location,
    run_id: String,
}

/// A view written to its staging file, not yet visible.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The view's folder name.
    pub view: String,
    /// Where it was written.
    pub staging: Path,
    /// Rows written.
    pub rows: u64,
}

impl Publisher {
    /// A publisher for `run_id` into `dest`.
    pub fn new(dest: Location, run_id: String) -> Self {
        Publisher { dest, run_id }
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

    /// Runs `df` and writes it to `view`'s staging file.
    pub async fn stage(&self, view: &str, df: DataFrame) -> Result<Staged> {
        let staging = self.staging_dir().join(format!("{view}.parquet"));
        let url = self.dest.url_of(&staging);
        if let Some(dir) = &self.dest.local_dir {
            // DataFusion's writer does not create parent folders of a single file.
            let local = dir.join("_psync").join("tmp").join(&self.run_id);
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
            view: view.to_string(),
            staging,
            rows,
        })
    }

    /// Makes staged views visible, one atomic rename each, and removes any other
    /// Parquet file a path reader would also pick up in those folders.
    pub async fn commit(&self, staged: &[Staged]) -> Result<()> {
        let store = &self.dest.store;
        for s in staged {
            let target = self.view_file(&s.view);
            store
                .rename(&s.staging, &target)
                .await
                .map_err(|e| CoreError::Publish {
                    url: self.dest.url_of(&target),
                    message: e.to_string(),
                })?;
            let folder = self.dest.child(&[&s.view]);
            let others: Vec<_> = store
                .list(Some(&folder))
                .try_filter(|m| futures::future::ready(m.location != target))
                .try_collect()
                .await
                .map_err(|e| CoreError::Publish {
                    url: self.dest.url_of(&folder),
                    message: e.to_string(),
                })?;
            for other in others {
                tracing::warn!(file = %other.location, "removing a file that is not part of the view");
                store
                    .delete(&other.location)
                    .await
                    .map_err(|e| CoreError::Publish {
                        url: self.dest.url_of(&other.location),
                        message: e.to_string(),
                    })?;
            }
        }
        self.cleanup().await;
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
            let _ = std::fs::remove_dir(local.join("_psync").join("tmp").join(&self.run_id));
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
                .map_err(|e| CoreError::Publish {
                    url: self.dest.url_of(&path),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

//! What a run leaves under `<dest>/_psync/` besides its views: the run record
//! (`runs/<run>.json`, `last_run.json`, naming every file published) and the
//! other metadata files, each one PUT (whole or not at all).

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutPayload};

use super::{Publisher, publish_err};
use crate::error::{CoreError, Result};
use crate::incremental::FileEntry;

impl Publisher {
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

    /// The files the last run record names (none when it names none).
    async fn previously_published(&self) -> Vec<FileEntry> {
        let path = self.dest.child(&["_psync", "last_run.json"]);
        let Ok(got) = self.dest.store.get(&path).await else {
            return vec![];
        };
        let Ok(bytes) = got.bytes().await else {
            return vec![];
        };
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|r| serde_json::from_value(r.get("published_files")?.clone()).ok())
            .unwrap_or_default()
    }

    /// Writes the run record (JSON) beside the views.
    ///
    /// The record also names every file this run published (`published_files`,
    /// path relative to the destination: size, ETag, modification time), so that
    /// `status` can tell whether the views on disk are still this run's.
    pub async fn record(&self, json: &serde_json::Value) -> Result<()> {
        let mut json = json.clone();
        if let Some(o) = json.as_object_mut() {
            // Files this run did not publish stay as the previous record named them.
            let mut files: BTreeMap<String, FileEntry> = self
                .previously_published()
                .await
                .into_iter()
                .map(|f| (f.path.clone(), f))
                .collect();
            // A Delta table this run committed holds only this run's file now: the
            // ones an older version added are no longer published (a VACUUM may
            // delete them).
            let tables: Vec<String> = self
                .delta_versions
                .lock()
                .map(|v| v.values().map(|c| format!("{}/", c.table)).collect())
                .unwrap_or_default();
            files.retain(|path, _| !tables.iter().any(|t| path.starts_with(t.as_str())));
            for f in self.published.lock().map(|p| p.clone()).unwrap_or_default() {
                files.insert(f.path.clone(), f);
            }
            let files: Vec<FileEntry> = files.into_values().collect();
            o.insert(
                "published_files".into(),
                serde_json::to_value(files).map_err(|e| CoreError::Config(e.to_string()))?,
            );
        }
        let body =
            serde_json::to_vec_pretty(&json).map_err(|e| CoreError::Config(e.to_string()))?;
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

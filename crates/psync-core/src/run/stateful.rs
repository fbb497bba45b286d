//! An incremental run: which of its three ways it goes, then the steps they
//! share (saved state read, id graph resolved, state segments saved, the
//! commit order and the manifest).
//!
//! ```text
//! no manifest, another source, a processed file changed ─► every file, state rebuilt
//! nothing new and every view published                  ─► nothing written
//! otherwise: the new files ∪ saved state
//!   ─► published views still the manifest's?  yes: patch (see `patch`)
//!                                             no:  recompute (see `recompute`)
//!   ─► commit views, then state, then manifest ─► run record
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use psync_lake_io::Lake;

use crate::blame::blame;
use crate::error::{CoreError, Result, publish_err};
use crate::incremental::{Delta, FileEntry, MANIFEST, Manifest, STATE_TABLES};
use crate::inputs::Inputs;
use crate::run::plan::{self, StateInputs};
use crate::run::{OnChange, Run, RunReport, execute};
use crate::views::{View, id_graph};

impl Run<'_> {
    /// An incremental run: reads only the files the saved manifest has not
    /// seen, unless the manifest cannot be trusted for this source.
    pub(super) async fn incremental(mut self, on_change: OnChange) -> Result<RunReport> {
        let opts = self.opts;
        let lake = self.lake;
        let Some(manifest) = Manifest::read(self.publisher.dest()).await? else {
            tracing::info!("no saved state under the destination: this run reads everything");
            return self.stateful(lake, None).await;
        };
        if manifest.source != opts.source {
            self.warnings.push(format!(
                "the saved state was built from {}, not {}: rebuilding in full",
                manifest.source, opts.source
            ));
            return self.stateful(lake, None).await;
        }
        let delta = Delta::between(&manifest, lake);
        if !delta.changed.is_empty() {
            let list: Vec<String> = delta
                .changed
                .iter()
                .take(3)
                .map(|(url, why)| format!("{url} ({why})"))
                .collect();
            let more = delta.changed.len().saturating_sub(3);
            let what = format!(
                "{} landed file(s) changed or vanished since run {} processed them: {}{}",
                delta.changed.len(),
                manifest.run_id,
                list.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
            return match on_change {
                OnChange::Fail => Err(CoreError::Config(format!(
                    "{what}; rerun with --on-change rebuild to rebuild every view from the lake as it is"
                ))),
                OnChange::Rebuild => {
                    self.warnings.push(format!("{what}: rebuilding in full"));
                    self.stateful(lake, None).await
                }
            };
        }
        // Nothing new: nothing to write, unless a view this run publishes is not
        // there (an earlier run had other --views): then the state makes it.
        if delta.is_empty() && self.all_published().await? {
            return Ok(self.report(
                "nothing-new",
                None,
                vec![],
                0,
                0,
                &lake.with_files(|_, _| vec![]),
            ));
        }
        let new = delta.restrict(lake);
        self.stateful(&new, Some(&manifest)).await
    }

    /// A run that reads `input` (the new files; every file when `previous` is
    /// `None`) plus the state `previous` describes, and saves the new state.
    ///
    /// When the core views published with `previous` are still in place, only the
    /// rows the new files can change are recomputed (see `id_graph::patch`); the
    /// rest is the published views' rows. Otherwise the views are recomputed from
    /// the saved state plus the new files.
    async fn stateful(mut self, input: &Lake, previous: Option<&Manifest>) -> Result<RunReport> {
        let state_dir = self.publisher.dest().join(&["_psync", "state"]);
        let saved = match previous {
            Some(_) => Some(Lake::open(&self.ctx.state(), state_dir).await?),
            None => None,
        };
        let published = match previous {
            Some(m) => self.published_views(m).await?,
            None => None,
        };
        // Everything processed so far (the saved segments) plus the new files.
        let nothing = input.with_files(|_, _| vec![]);
        let mut inputs = Inputs::new(self.ctx, input);
        let mut saved_only = Inputs::new(self.ctx, &nothing);
        for table in STATE_TABLES {
            if let Some(t) = saved.as_ref().and_then(|s| s.table(table)) {
                let rows = self.ctx.read_table(Arc::new(t.clone()))?;
                inputs = inputs.with_overlay(table, rows.clone());
                saved_only = saved_only.with_overlay(table, rows);
            }
        }
        let only_new = Inputs::new(self.ctx, input);

        // A patch reads few rows of large state files: the key columns first, the
        // rest only for the rows the joins' dynamic filters let through.
        execute::late_materialization(self.ctx, published.is_some());
        self.enter("resolve");
        let resolved = match (&published, previous) {
            (Some(p), Some(m)) => id_graph::patch(
                &inputs,
                &only_new,
                &saved_only,
                p.id_graph.clone(),
                m.cycles_broken,
                &mut self.warnings,
            )
            .await
            .map(|p| (p.graph, Some((p.affected, p.ends)))),
            _ => id_graph::build(&inputs, &mut self.warnings)
                .await
                .map(|g| (g, None)),
        };
        let (graph, patch) = match resolved {
            Ok(r) => r,
            Err(e) => return Err(blame(self.ctx, input, e).await),
        };
        self.patched = patch.is_some();
        self.publisher.lock(&self.opts.lease).await?;
        let result = async {
            self.enter("state");
            let of = StateInputs {
                all: &inputs,
                only_new: &only_new,
                input,
                saved: saved.as_ref(),
            };
            let segments = plan::state_segments(self.ctx, &of, &graph, &mut self.warnings)?;
            let (state, (staged_views, reports)) = match (&patch, &published) {
                (Some((affected, ends)), Some(p)) => {
                    self.stage_patched(segments, p, &graph, affected, ends, &of)
                        .await?
                }
                _ => {
                    self.stage_recomputed(segments, &graph, &inputs, input)
                        .await?
                }
            };
            let (staged_views, reports) = self
                .with_extras((staged_views, reports), &graph, None)
                .await?;
            self.enter("publishing");
            // Views first, then the state, then the manifest: see `crate::incremental`.
            self.publisher.commit(&staged_views).await?;
            self.publisher.commit(&state).await?;
            let mut manifest = Manifest::of(self.lake, self.publisher.run_id(), &self.opts.source);
            manifest.views = self.core_view_files().await?;
            manifest.cycles_broken = graph.cycles_broken;
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| CoreError::Config(e.to_string()))?;
            self.publisher.put_meta(&["state", MANIFEST], body).await?;
            let mode = if previous.is_some() {
                "incremental"
            } else {
                "full"
            };
            let report = self.report(
                mode,
                None,
                reports,
                graph.cycles_broken,
                graph.rounds,
                input,
            );
            self.record(report).await
        }
        .await;
        self.release(result).await
    }

    /// The published core views as this run leaves them, when it published all
    /// three (else none: a view it did not publish is not the manifest's).
    async fn core_view_files(&self) -> Result<BTreeMap<String, FileEntry>> {
        let mut files = BTreeMap::new();
        if !self.publishes_core_views() {
            return Ok(files);
        }
        for view in View::ALL {
            if let Some(entry) = self.view_entry(view).await? {
                files.insert(view.name().to_string(), entry);
            }
        }
        Ok(files)
    }

    /// Whether this run publishes all three core views (only then do its views
    /// and the state it saves stand for the same landed files).
    pub(super) fn publishes_core_views(&self) -> bool {
        View::ALL.iter().all(|v| self.opts.views.contains(v))
    }

    /// The published file of `view` as the store describes it now; `None` when there is none.
    pub(super) async fn view_entry(&self, view: View) -> Result<Option<FileEntry>> {
        let dest = self.publisher.dest();
        let path = self.publisher.view_file(view.name());
        match dest.store.head(&path).await {
            Ok(meta) => {
                let relative = format!("{0}/{0}.parquet", view.name());
                Ok(Some(FileEntry::at(&relative, &meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(publish_err(&dest.url_of(&path), e)),
        }
    }

    /// Whether every view this run publishes has a published file.
    async fn all_published(&self) -> Result<bool> {
        let dest = self.publisher.dest();
        let mut files = vec![];
        for &view in &self.opts.views {
            if view.is_personas() {
                let file = format!("{view}.parquet");
                for space in self.lake.spaces() {
                    files.push(dest.child(&[space.as_str(), view.name(), file.as_str()]));
                }
            } else {
                files.push(self.publisher.view_file(view.name()));
            }
        }
        for file in files {
            if !self.publisher.is_published(&file).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

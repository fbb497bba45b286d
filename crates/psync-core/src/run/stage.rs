//! Staging: each planned view run (see [`super::execute`]) into
//! `<dest>/_psync/tmp/<run>/`, where nothing reads it until the commit, and
//! reported to the display as it is done.

use std::time::Instant;

use datafusion::prelude::DataFrame;
use object_store::path::Path;
use psync_lake_io::Lake;

use crate::blame::blame;
use crate::error::{CoreError, Result};
use crate::extras::{self, Extra};
use crate::inputs::Inputs;
use crate::run::execute;
use crate::run::publish::{OutputFormat, Publisher, Replaces, Staged};
use crate::run::{Run, ViewReport};
use crate::views::View;
use crate::views::id_graph::IdGraph;

impl Publisher {
    /// Runs `df` and writes it to `view`'s staging file.
    pub async fn stage(&self, view: &str, df: DataFrame) -> Result<Staged> {
        self.stage_to(view, self.view_file(view), df).await
    }

    /// The folder of an incremental run's saved state.
    pub fn state_dir(&self) -> Path {
        self.dest().child(&["_psync", "state"])
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
            .join(format!("{}.parquet", self.run_id()));
        let mut staged = self
            .stage_to(&format!("state/{table}/{}", self.run_id()), target, df)
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
        self.stage_to(name, self.dest().child(target), df).await
    }

    /// The staged file of `staged`, readable before it is committed.
    pub fn staged_url(&self, staged: &Staged) -> String {
        self.dest().url_of(&staged.staging)
    }

    /// Runs `df` into the staging file `name` (folders split on `/`), bound for `target`.
    async fn stage_to(&self, name: &str, target: Path, df: DataFrame) -> Result<Staged> {
        let schema = Some(df.schema().inner().clone());
        if self.format() == OutputFormat::Delta && Self::is_view(name) {
            return self.stage_delta(name, target, df, schema).await;
        }
        let file = format!("{name}.parquet");
        let staging = file
            .split('/')
            .fold(self.staging_dir(), |p, part| p.join(part));
        let url = self.dest().url_of(&staging);
        if let Some(dir) = &self.dest().local_dir {
            // DataFusion's writer does not create parent folders of a single file.
            let mut local = dir.join("_psync").join("tmp").join(self.run_id());
            local.extend(name.split('/'));
            local.pop();
            std::fs::create_dir_all(&local).map_err(|e| CoreError::Publish {
                url: local.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let rows = execute::write_parquet(df, &url).await?;
        Ok(Staged {
            name: name.to_string(),
            staging,
            target,
            rows,
            replaces: true,
            removes: vec![],
            delta: false,
            schema,
        })
    }
}

impl Run<'_> {
    /// Awaits a staging write, naming the landed file when a query error came from one.
    pub(super) async fn stage(
        &self,
        write: impl std::future::Future<Output = Result<Staged>>,
        input: &Lake,
    ) -> Result<Staged> {
        match write.await {
            Ok(s) => Ok(s),
            Err(CoreError::DataFusion(e)) => Err(blame(self.ctx, input, e).await),
            Err(other) => Err(other),
        }
    }

    /// Runs and stages a full run's views, one after the other.
    pub(super) async fn stage_views(
        &self,
        planned: Vec<(View, DataFrame)>,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        self.stage_views_from(planned, self.lake, false).await
    }

    /// Runs and stages every view, reporting each as it is done; `together`
    /// runs them at once (a patch's views are small queries that leave cores idle
    /// alone; a full run's are large and take their turns within the memory limit).
    pub(super) async fn stage_views_from(
        &self,
        planned: Vec<(View, DataFrame)>,
        input: &Lake,
        together: bool,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        let done = if together {
            for (view, _) in &planned {
                self.enter(view.name());
            }
            futures::future::try_join_all(
                planned
                    .into_iter()
                    .map(|(view, df)| self.stage_view(view, df, input)),
            )
            .await?
        } else {
            let mut done = vec![];
            for (view, df) in planned {
                self.enter(view.name());
                done.push(self.stage_view(view, df, input).await?);
            }
            done
        };
        Ok(done.into_iter().unzip())
    }

    /// Runs and stages one core view.
    pub(super) async fn stage_view(
        &self,
        view: View,
        df: DataFrame,
        input: &Lake,
    ) -> Result<(Staged, ViewReport)> {
        let write = self.publisher.stage(view.name(), df);
        self.stage_reported(view.name(), write, input).await
    }

    /// Runs and stages a Personas or `_resolved` view.
    async fn stage_extra(&self, extra: Extra, input: &Lake) -> Result<(Staged, ViewReport)> {
        let target: Vec<&str> = extra.target.iter().map(String::as_str).collect();
        let write = self.publisher.stage_at(&extra.name, &target, extra.df);
        self.stage_reported(&extra.name, write, input).await
    }

    /// Awaits the staging write of the view `name`, then reports it to the display.
    async fn stage_reported(
        &self,
        name: &str,
        write: impl std::future::Future<Output = Result<Staged>>,
        input: &Lake,
    ) -> Result<(Staged, ViewReport)> {
        let t = Instant::now();
        let s = self.stage(write, input).await?;
        let report = ViewReport {
            view: name.to_string(),
            rows: s.rows,
            file: self.publisher.dest().url_of(&s.target),
            seconds: t.elapsed().as_secs_f64(),
            delta_version: None,
        };
        self.progress.view_done(&report);
        Ok((s, report))
    }

    /// Stages the views beyond the core three, and the health tables, after
    /// `staged` (the core views): all are committed together.
    pub(super) async fn with_extras(
        &self,
        staged: (Vec<Staged>, Vec<ViewReport>),
        graph: &IdGraph,
        as_of: Option<i64>,
    ) -> Result<(Vec<Staged>, Vec<ViewReport>)> {
        let (mut files, mut reports) = staged;
        // Whole tables: no filter to push into their scans.
        execute::late_materialization(self.ctx, false);
        // Every landed file whatever the mode: these are recomputed in full.
        let inputs = Inputs::new(self.ctx, self.lake).as_of(as_of);
        // The health report reads the core views as staged, not as published.
        let staged_view = |view: View| -> Option<String> {
            files
                .iter()
                .find(|s| s.name == view.name())
                .map(|s| self.publisher.staged_url(s))
        };
        let external_id_mapping = staged_view(View::ExternalIdMapping);
        let profile_traits = staged_view(View::ProfileTraits);
        for view in extras::extra_views(self.lake, &self.opts.views) {
            let extra = view.plan(&inputs, graph).await?;
            self.progress.stage(&extra.name);
            let (s, r) = self.stage_extra(extra, self.lake).await?;
            files.push(s);
            reports.push(r);
        }
        if !self.opts.health {
            return Ok((files, reports));
        }
        self.progress.stage("health");
        let started = Instant::now();
        let tables = extras::health_tables(extras::HealthOf {
            inputs: &inputs,
            graph,
            external_id_mapping,
            profile_traits,
            run_id: self.publisher.run_id(),
        })
        .await?;
        for table in tables {
            let target: Vec<&str> = table.target.iter().map(String::as_str).collect();
            let s = self
                .publisher
                .stage_at(&table.name, &target, table.df)
                .await?;
            files.push(s);
        }
        tracing::info!(
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            "health tables written"
        );
        Ok((files, reports))
    }
}

//! Patching: the incremental way when the core views the saved state goes
//! with are still the published ones. Only the rows the new files can reach are
//! recomputed (see `id_graph::patch`); the rest are the published views' rows.

use datafusion::prelude::{DataFrame, ParquetReadOptions};

use crate::error::{CoreError, Result};
use crate::incremental::Manifest;
use crate::inputs::Warnings;
use crate::run::plan::{StateInputs, StateSegment};
use crate::run::publish::{OutputFormat, Staged};
use crate::run::{Run, ViewReport};
use crate::views::id_graph::IdGraph;
use crate::views::{self, View, external_id_mapping, profile_traits};

/// The core views as the previous incremental run published them.
pub(super) struct PublishedViews {
    pub id_graph: DataFrame,
    pub external_id_mapping: DataFrame,
    pub profile_traits: DataFrame,
}

impl Run<'_> {
    /// The core views `manifest` recorded, opened for reading, when this run
    /// publishes all three and each is still the file the manifest recorded.
    pub(super) async fn published_views(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<PublishedViews>> {
        // Delta output: a view is a table of many versions, not the single file a
        // patch merges with; the views are recomputed from the saved state.
        if !self.publishes_core_views() || self.opts.format == OutputFormat::Delta {
            return Ok(None);
        }
        for view in View::ALL {
            let now = self.view_entry(view).await?;
            let same = match (manifest.views.get(view.name()), now) {
                (Some(before), Some(now)) => before.changed(&now).is_none(),
                _ => false,
            };
            if !same {
                tracing::info!(
                    view = view.name(),
                    "the published view is not the saved state's: views recomputed from the state"
                );
                return Ok(None);
            }
        }
        let dest = self.publisher.dest();
        let read = |view: View| {
            let url = dest.url_of(&self.publisher.view_file(view.name()));
            let ctx = self.ctx;
            // Published files are sorted by the view's key: merged, not re-sorted.
            let order = views::key_order(view);
            async move {
                ctx.read_parquet(
                    url,
                    ParquetReadOptions::default().file_sort_order(vec![order]),
                )
                .await
                .map_err(CoreError::from)
            }
        };
        Ok(Some(PublishedViews {
            id_graph: read(View::IdGraph).await?,
            external_id_mapping: read(View::ExternalIdMapping).await?,
            profile_traits: read(View::ProfileTraits).await?,
        }))
    }

    /// Stages the new state `segments` and the patched core views, all at once;
    /// returns the staged state and the staged views with their reports.
    #[allow(clippy::type_complexity)]
    pub(super) async fn stage_patched(
        &mut self,
        segments: Vec<StateSegment>,
        published: &PublishedViews,
        graph: &IdGraph,
        affected: &DataFrame,
        ends: &DataFrame,
        of: &StateInputs<'_>,
    ) -> Result<(Vec<Staged>, (Vec<Staged>, Vec<ViewReport>))> {
        let (inputs, only_new, input) = (of.all, of.only_new, of.input);
        // Small queries each: all at once keep the cores busy. The id
        // graph is written while the other two views find their keys.
        self.enter(View::IdGraph.name());
        let id_graph_view = self.stage_view(
            View::IdGraph,
            views::sorted(View::IdGraph, graph.df.clone())?,
            input,
        );
        let (mut w1, mut w2) = (Warnings::default(), Warnings::default());
        let others = async {
            let (e, t) = futures::try_join!(
                external_id_mapping::patch(
                    inputs,
                    only_new,
                    published.external_id_mapping.clone(),
                    graph,
                    ends,
                    &mut w1,
                ),
                profile_traits::patch(
                    inputs,
                    only_new,
                    published.profile_traits.clone(),
                    graph,
                    affected,
                    ends,
                    &mut w2,
                ),
            )?;
            let planned = vec![
                (
                    View::ExternalIdMapping,
                    views::sorted(View::ExternalIdMapping, e)?,
                ),
                (View::ProfileTraits, views::sorted(View::ProfileTraits, t)?),
            ];
            self.stage_views_from(planned, input, true).await
        };
        let state_jobs = segments
            .into_iter()
            .map(|s| self.stage(self.publisher.stage_state(s.table, s.df, s.replaces), input));
        let (state, first, (mut staged, mut reports)) = futures::try_join!(
            futures::future::try_join_all(state_jobs),
            id_graph_view,
            others,
        )?;
        self.warnings.0.extend(w1.0.into_iter().chain(w2.0));
        staged.insert(0, first.0);
        reports.insert(0, first.1);
        Ok((state, (staged, reports)))
    }
}

//! Recomputing: the incremental way when the published core views are not the
//! ones the saved state goes with (a first run, a rebuild, another run's
//! `--views`): every core view from the saved state plus the new files.

use psync_lake_io::Lake;

use crate::error::Result;
use crate::inputs::Inputs;
use crate::run::plan::{self, StateSegment};
use crate::run::publish::Staged;
use crate::run::{Run, ViewReport};
use crate::views::id_graph::IdGraph;

impl Run<'_> {
    /// Stages the new state `segments`, then the core views recomputed from
    /// `inputs` one after the other (each is large: they take their turns
    /// within the memory limit); returns the staged state and the staged views
    /// with their reports.
    #[allow(clippy::type_complexity)]
    pub(super) async fn stage_recomputed(
        &mut self,
        segments: Vec<StateSegment>,
        graph: &IdGraph,
        inputs: &Inputs<'_>,
        input: &Lake,
    ) -> Result<(Vec<Staged>, (Vec<Staged>, Vec<ViewReport>))> {
        let planned = plan::core_views(inputs, &self.opts.views, graph, &mut self.warnings)?;
        let mut state = vec![];
        for s in segments {
            let write = self.publisher.stage_state(s.table, s.df, s.replaces);
            state.push(self.stage(write, input).await?);
        }
        Ok((state, self.stage_views_from(planned, input, false).await?))
    }
}

//! A full or as-of run: every view from the landed files, no state read or
//! written.
//!
//! ```text
//! resolve the id graph and plan the views ─► lock ─► stage each view, the extras
//!   ─► (as-of: forget the saved state) ─► commit ─► run record ─► unlock
//! ```

use crate::blame::blame;
use crate::error::Result;
use crate::inputs::Inputs;
use crate::run::{Run, RunReport};
use crate::views;

impl Run<'_> {
    /// A full (or as-of) run: no state read or written.
    pub(super) async fn full(mut self, as_of: Option<i64>) -> Result<RunReport> {
        let inputs = Inputs::new(self.ctx, self.lake).as_of(as_of);
        self.enter("resolve");
        let planned = match views::plan(&inputs, &self.opts.views, &mut self.warnings).await {
            Ok(p) => p,
            Err(e) => return Err(blame(self.ctx, self.lake, e).await),
        };
        self.publisher.lock(&self.opts.lease).await?;
        let result = async {
            let staged_views = self.stage_views(planned.views).await?;
            let staged_views = self
                .with_extras(staged_views, &planned.graph, as_of)
                .await?;
            self.enter("publishing");
            if as_of.is_some() {
                // The views about to be published are not the saved state's: the next
                // incremental run must not take "nothing new" for "nothing to do".
                self.publisher.forget_state().await?;
            }
            self.publisher.commit(&staged_views.0).await?;
            let mode = if as_of.is_some() { "as-of" } else { "full" };
            let report = self.report(
                mode,
                as_of,
                staged_views.1,
                planned.cycles_broken,
                planned.id_graph_rounds,
                self.lake,
            );
            self.record(report).await
        }
        .await;
        self.release(result).await
    }
}

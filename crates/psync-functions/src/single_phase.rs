//! [`SinglePhaseWideAggregates`]: a physical optimizer rule that runs grouped
//! `last_seen_struct` aggregations in one phase.
//!
//! DataFusion plans every grouped aggregation as
//!
//! ```text
//! AggregateExec(FinalPartitioned) ◄─ RepartitionExec(hash keys) ◄─ AggregateExec(Partial) ◄─ input
//! ```
//!
//! The intermediate state of `last_seen_struct` holds one order key per field
//! (each field's winner may come from a different row), so it is several times
//! wider than the input rows, and the partial phase rarely shrinks trait updates
//! much (a few rows per profile). This rule moves the repartition below the
//! aggregation, which then reads raw rows and compares each row's key once:
//!
//! ```text
//! AggregateExec(SinglePartitioned) ◄─ RepartitionExec(hash keys) ◄─ input
//! ```
//!
//! Spilling still works: a single-phase aggregation spills its state and merges it back.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SinglePhaseWideAggregates;

/// Aggregates whose intermediate state is too wide to be worth a partial phase.
const WIDE_STATE: &[&str] = &["last_seen_struct", "last_seen_state", "last_seen_merge"];

impl SinglePhaseWideAggregates {
    fn rewrite(plan: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
        let Some(fin) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(plan));
        };
        if *fin.mode() != AggregateMode::FinalPartitioned {
            return Ok(Transformed::no(plan));
        }
        let Some(repart) = fin.input().downcast_ref::<RepartitionExec>() else {
            return Ok(Transformed::no(plan));
        };
        let Some(partial) = repart.input().downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(plan));
        };
        let Partitioning::Hash(_, partitions) = repart.partitioning() else {
            return Ok(Transformed::no(plan));
        };
        let wide = partial
            .aggr_expr()
            .iter()
            .any(|a| WIDE_STATE.contains(&a.fun().name()));
        if *partial.mode() != AggregateMode::Partial || !wide || !partial.group_expr().is_single() {
            return Ok(Transformed::no(plan));
        }
        // Hash the raw rows by the group expressions, as the partial phase would have.
        let rows = Arc::new(RepartitionExec::try_new(
            Arc::clone(partial.input()),
            Partitioning::Hash(partial.group_expr().input_exprs(), *partitions),
        )?);
        let single = AggregateExec::try_new(
            AggregateMode::SinglePartitioned,
            partial.group_expr().clone(),
            partial.aggr_expr().to_vec(),
            partial.filter_expr().to_vec(),
            rows,
            partial.input_schema(),
        )?
        .with_limit_options(fin.limit_options());
        Ok(Transformed::yes(Arc::new(single)))
    }
}

impl PhysicalOptimizerRule for SinglePhaseWideAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(Self::rewrite).data()
    }

    fn name(&self) -> &str {
        "single_phase_wide_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

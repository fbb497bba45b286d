//! [`OnDemand`]: a table whose rows are a plan built when a query scans it, in that
//! query's session: the shell's views computed from the landed tables, the
//! Personas views of a space, `resolved('<table>')`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionContext, ident};

/// How an [`OnDemand`] table plans its rows.
#[async_trait]
pub trait LazyPlan: fmt::Debug + Send + Sync {
    /// The rows, planned in the scanning query's session.
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame>;
}

/// A view-like table: [`LazyPlan::plan`] runs at scan time.
#[derive(Debug)]
pub struct OnDemand<P> {
    schema: SchemaRef,
    plan: P,
}

impl<P: LazyPlan> OnDemand<P> {
    /// A table of `schema` (what `plan` returns) planned by `plan`.
    pub fn new(schema: SchemaRef, plan: P) -> Self {
        OnDemand { schema, plan }
    }
}

#[async_trait]
impl<P: LazyPlan + 'static> TableProvider for OnDemand<P> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return Err(DataFusionError::Internal(
                "an on-demand view scanned outside a SessionState".into(),
            ));
        };
        let ctx = SessionContext::new_with_state(state.clone());
        let mut df = self.plan.plan(&ctx).await?;
        if let Some(p) = projection {
            let cols: Vec<Expr> = p
                .iter()
                .map(|i| ident(self.schema.field(*i).name()))
                .collect();
            df = df.select(cols)?;
        }
        if let Some(n) = limit {
            df = df.limit(0, Some(n))?;
        }
        df.create_physical_plan().await
    }
}

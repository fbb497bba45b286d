//! `Lake.register(ctx)`: the lake's tables and psync's aggregate functions in a
//! datafusion-python 55 `SessionContext`, through DataFusion's FFI (the
//! `__datafusion_table_provider__` and `__datafusion_aggregate_udf__` capsules).
//!
//! A table is scanned in the lake's own session, not the caller's: an on-demand
//! view plans itself with psync's functions and rules, which the other session
//! does not have, and a plan crosses the FFI as an opaque execution plan anyway.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContextProvider;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{AggregateUDF, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::{Expr, SessionContext};
use datafusion_ffi::table_provider::FFI_TableProvider;
use datafusion_ffi::udaf::FFI_AggregateUDF;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use tokio::runtime::Handle;

/// A table of the lake that scans in the lake's session, whoever asks.
struct InLakeSession {
    inner: Arc<dyn TableProvider>,
    ctx: SessionContext,
    /// The lake's runtime: planning a view reads files and spawns tasks, and
    /// the caller polls the scan from a thread of its own runtime.
    runtime: Handle,
}

impl std::fmt::Debug for InLakeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InLakeSession")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for InLakeSession {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        _caller: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (inner, state) = (Arc::clone(&self.inner), self.ctx.state());
        let (projection, filters) = (projection.cloned(), filters.to_vec());
        let scan = async move {
            inner
                .scan(&state, projection.as_ref(), &filters, limit)
                .await
        };
        match self.runtime.spawn(scan).await {
            Ok(plan) => Ok(Arc::new(Opaque(plan?))),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// A plan of the lake shown to the caller without its children: its optimizer
/// would otherwise rework a plan optimised under the lake's settings (the id
/// graph on the build side of every join, in one partition).
#[derive(Debug)]
struct Opaque(Arc<dyn ExecutionPlan>);

impl DisplayAs for Opaque {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PsyncLakeScan: {}", self.0.name())
    }
}

impl ExecutionPlan for Opaque {
    fn name(&self) -> &str {
        "PsyncLakeScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.0.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.0.execute(partition, context)
    }
}

/// One table, exported to datafusion-python.
#[pyclass(module = "psync_lake", name = "TableExport", frozen)]
pub struct TableExport {
    provider: Arc<dyn TableProvider>,
    /// Decodes the filters the caller pushes down (held by the lake too: the
    /// capsule keeps only a weak reference).
    task_ctx: Arc<dyn TaskContextProvider + Send + Sync>,
    runtime: Handle,
}

impl TableExport {
    /// `provider`, scanned in `ctx` on `runtime`.
    pub fn new(
        provider: Arc<dyn TableProvider>,
        ctx: &SessionContext,
        task_ctx: Arc<dyn TaskContextProvider + Send + Sync>,
        runtime: Handle,
    ) -> Self {
        let provider = Arc::new(InLakeSession {
            inner: provider,
            ctx: ctx.clone(),
            runtime: runtime.clone(),
        });
        TableExport {
            provider,
            task_ctx,
            runtime,
        }
    }
}

#[pymethods]
impl TableExport {
    /// The table as an `FFI_TableProvider` capsule (`session` is the caller's;
    /// the table does not need it).
    #[pyo3(signature = (session=None))]
    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = session;
        let task_ctx: Arc<dyn TaskContextProvider> = self.task_ctx.clone();
        let provider = FFI_TableProvider::new(
            Arc::clone(&self.provider),
            true,
            Some(self.runtime.clone()),
            &task_ctx,
            None,
        );
        PyCapsule::new_with_value(py, provider, c"datafusion_table_provider")
    }
}

/// One of psync's aggregate functions, exported to datafusion-python.
#[pyclass(module = "psync_lake", name = "AggregateExport", frozen)]
pub struct AggregateExport {
    udaf: Arc<AggregateUDF>,
}

impl AggregateExport {
    /// `udaf`, for a foreign session.
    pub fn new(udaf: Arc<AggregateUDF>) -> Self {
        AggregateExport { udaf }
    }
}

#[pymethods]
impl AggregateExport {
    /// The function's name in SQL.
    #[getter]
    fn name(&self) -> &str {
        self.udaf.name()
    }

    /// The function as an `FFI_AggregateUDF` capsule.
    fn __datafusion_aggregate_udf__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let udaf = FFI_AggregateUDF::from(Arc::clone(&self.udaf));
        PyCapsule::new_with_value(py, udaf, c"datafusion_aggregate_udf")
    }
}

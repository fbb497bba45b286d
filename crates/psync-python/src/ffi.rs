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
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::TaskContextProvider;
use datafusion::logical_expr::{AggregateUDF, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
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
        let state = self.ctx.state();
        self.inner.scan(&state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
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

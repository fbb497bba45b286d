//! A query's result: Arrow record batches handed to Python through the Arrow
//! PyCapsule interface (`__arrow_c_stream__`), so pyarrow, Polars, DuckDB and
//! pandas (through pyarrow) read them without a copy; none of them is needed to
//! hold one.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StructArray};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::arrow::error::ArrowError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use pyo3_arrow::error::PyArrowResult;
use pyo3_arrow::ffi::{ArrayIterator, to_schema_pycapsule, to_stream_pycapsule};

/// The rows of a query: `pyarrow.table(r)`, `polars.DataFrame(r)`,
/// `duckdb.sql("FROM r")`, or `r.to_arrow()` / `r.to_polars()` / `r.to_pandas()`.
/// It can be read any number of times.
#[pyclass(module = "psync_lake", name = "QueryResult", frozen)]
pub struct QueryResult {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// A result of `batches`, all of `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        QueryResult { schema, batches }
    }

    /// Its batches.
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.batches
    }
}

/// `batches` of `schema` as an Arrow C stream in a PyCapsule: each batch is
/// handed over as it comes, not copied (cast when `requested_schema` asks for
/// other types).
pub(crate) fn stream_capsule<'py>(
    py: Python<'py>,
    schema: &SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
    requested_schema: Option<Bound<'py, PyCapsule>>,
) -> PyArrowResult<Bound<'py, PyCapsule>> {
    let arrays = batches.map(|b| Ok(Arc::new(StructArray::from(b?)) as ArrayRef));
    let field = Field::new_struct("", schema.fields().clone(), false)
        .with_metadata(schema.metadata().clone());
    to_stream_pycapsule(
        py,
        Box::new(ArrayIterator::new(arrays, field.into())),
        requested_schema,
    )
}

/// The names of `schema`'s columns.
pub(crate) fn column_names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

#[pymethods]
impl QueryResult {
    /// The Arrow schema, as a PyCapsule (the Arrow C data interface).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyArrowResult<Bound<'py, PyCapsule>> {
        to_schema_pycapsule(py, self.schema.as_ref())
    }

    /// The rows as an Arrow C stream, in a PyCapsule; the batches are shared,
    /// not copied (cast when `requested_schema` asks for other types).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyArrowResult<Bound<'py, PyCapsule>> {
        let batches = self.batches.clone().into_iter().map(Ok);
        stream_capsule(py, &self.schema, batches, requested_schema)
    }

    /// The number of rows.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The column names.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        column_names(&self.schema)
    }

    fn __len__(&self) -> usize {
        self.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "QueryResult({} rows; {})",
            self.num_rows(),
            self.column_names().join(", ")
        )
    }

    /// A `pyarrow.Table` (needs pyarrow).
    fn to_arrow<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("pyarrow")?.call_method1("table", (slf,))
    }

    /// A `polars.DataFrame` (needs polars).
    fn to_polars<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("polars")?.call_method1("DataFrame", (slf,))
    }

    /// A `pandas.DataFrame` (needs pandas and pyarrow).
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::to_arrow(slf)?.call_method0("to_pandas")
    }
}

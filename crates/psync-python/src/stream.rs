//! A query's rows as they are computed (`Lake.stream`): a task of the lake's
//! runtime drives the plan and hands its batches over a small bounded channel, so
//! a consumer holds only a few batches at a time and the plan runs ahead of it by
//! no more than that.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use pyo3_arrow::error::PyArrowResult;
use pyo3_arrow::ffi::to_schema_pycapsule;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::errors::{Query, QueryError, config};
use crate::result::{QueryResult, column_names, stream_capsule};

/// Batches computed ahead of the consumer.
const AHEAD: usize = 2;
/// How often a waiting `__next__` looks at Python's signals.
const SLICE: Duration = Duration::from_millis(50);

type Item = Result<RecordBatch, String>;

/// The rows of the last statement of a query, read once, batch by batch:
/// `for batch in stream` (each a [`QueryResult`]; Ctrl-C stops the wait), or
/// whole through the Arrow C stream interface (`pyarrow.RecordBatchReader.from_stream(s)`,
/// `polars.DataFrame(s)`, `duckdb.sql("FROM s")`), which pulls batches as the
/// consumer reads them. Dropping it stops the query.
#[pyclass(module = "psync_lake", name = "QueryStream", frozen)]
pub struct QueryStream {
    schema: SchemaRef,
    rt: Arc<Runtime>,
    rx: Mutex<Option<mpsc::Receiver<Item>>>,
}

impl QueryStream {
    /// Starts driving `stream` on `rt`.
    pub fn start(rt: Arc<Runtime>, mut stream: SendableRecordBatchStream) -> Self {
        let schema = stream.schema();
        let (tx, rx) = mpsc::channel(AHEAD);
        rt.spawn(async move {
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| psync_core::sql::query_error(&e));
                let failed = item.is_err();
                // A closed channel: the reader is gone, and so is the query.
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        QueryStream {
            schema,
            rt,
            rx: Mutex::new(Some(rx)),
        }
    }

    fn receiver(&self) -> PyResult<MutexGuard<'_, Option<mpsc::Receiver<Item>>>> {
        match self.rx.try_lock() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(config(
                "the stream is being read by another thread: read a stream from one thread",
            )),
        }
    }
}

/// The next item, waiting for it on this thread; on a thread of some tokio
/// runtime (a consumer that is itself async), where waiting in place is not
/// allowed, on a thread of its own.
fn recv_blocking(rx: &mut mpsc::Receiver<Item>) -> Option<Item> {
    if tokio::runtime::Handle::try_current().is_err() {
        return rx.blocking_recv();
    }
    std::thread::scope(|s| s.spawn(|| rx.blocking_recv()).join()).unwrap_or_else(|_| {
        Some(Err(
            "internal error: the stream's reader thread panicked".into()
        ))
    })
}

fn consumed() -> PyErr {
    config(
        "the stream was read already: a stream is read once (Lake.sql gives a result to read again)",
    )
}

#[pymethods]
impl QueryStream {
    /// The Arrow schema, as a PyCapsule (the Arrow C data interface).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyArrowResult<Bound<'py, PyCapsule>> {
        to_schema_pycapsule(py, self.schema.as_ref())
    }

    /// The rest of the rows as an Arrow C stream: each batch is computed by the
    /// time the consumer asks for it (the consumer's thread waits for it).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyArrowResult<Bound<'py, PyCapsule>> {
        let mut rx = self.receiver()?.take().ok_or_else(consumed)?;
        let batches = std::iter::from_fn(move || recv_blocking(&mut rx))
            .map(|item| item.map_err(|m| ArrowError::ExternalError(Box::new(Query(m)))));
        stream_capsule(py, &self.schema, batches, requested_schema)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch, waited for with the GIL released; a failed statement
    /// raises `QueryError` with the CLI's line.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<QueryResult>> {
        let mut guard = self.receiver()?;
        let Some(rx) = guard.as_mut() else {
            return Ok(None);
        };
        loop {
            let got = py.detach(|| {
                self.rt
                    .block_on(async { tokio::time::timeout(SLICE, rx.recv()).await })
            });
            match got {
                Ok(Some(Ok(batch))) => {
                    return Ok(Some(QueryResult::new(batch.schema(), vec![batch])));
                }
                Ok(Some(Err(message))) => {
                    *guard = None;
                    return Err(QueryError::new_err(message));
                }
                Ok(None) => {
                    *guard = None;
                    return Ok(None);
                }
                Err(_elapsed) => {
                    if let Err(e) = py.check_signals() {
                        // Dropping the receiver ends the query's task.
                        *guard = None;
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The rest of the rows, collected (interruptible like iteration).
    fn read_all(&self, py: Python<'_>) -> PyResult<QueryResult> {
        let mut batches = vec![];
        if self.receiver()?.is_none() {
            return Err(consumed());
        }
        while let Some(part) = self.__next__(py)? {
            batches.extend(part.into_batches());
        }
        Ok(QueryResult::new(Arc::clone(&self.schema), batches))
    }

    /// The column names.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        column_names(&self.schema)
    }

    fn __repr__(&self) -> String {
        format!("QueryStream({})", self.column_names().join(", "))
    }
}

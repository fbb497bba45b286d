//! Waiting for the engine without holding the GIL, and stopping it on Ctrl-C.
//!
//! The work runs as a task of the lake's tokio runtime; this thread releases the
//! GIL and waits for it in slices of [`SLICE`], checking Python's signal handlers
//! in between, so that a KeyboardInterrupt (or any exception a handler raises)
//! reaches the task within a slice.

use std::future::Future;
use std::time::Duration;

use psync_core::Stop;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a waiting call looks at Python's signals.
const SLICE: Duration = Duration::from_millis(50);

/// What a signal does to the task.
pub enum OnSignal {
    /// Drop the task: nothing of it is left (queries, plans, reads).
    Abort,
    /// Ask the run to stop through its [`Stop`] and wait for it to finish
    /// stopping (a run releases its lease and says what it published).
    Stop(Stop),
}

/// Runs `work` on `rt`, the GIL released, until it finishes or a signal handler
/// raises; `Ok` holds the task's own result.
pub fn wait<T: Send + 'static>(
    py: Python<'_>,
    rt: &Runtime,
    work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
    on_signal: OnSignal,
) -> PyResult<anyhow::Result<T>> {
    let mut task = rt.spawn(work);
    let mut raised: Option<PyErr> = None;
    loop {
        // The timer is made inside the runtime: it needs its reactor.
        let done =
            py.detach(|| rt.block_on(async { tokio::time::timeout(SLICE, &mut task).await }));
        match done {
            Ok(Ok(result)) => {
                return match (raised, &result) {
                    // Stopped as asked: the run's own error says what it left.
                    (Some(_), Err(_)) => Ok(result),
                    // It finished before it noticed: the interrupt still stands.
                    (Some(e), Ok(_)) => Err(e),
                    (None, _) => Ok(result),
                };
            }
            Ok(Err(join)) => {
                return Ok(Err(anyhow::anyhow!(
                    "internal error (this is a bug, please report it): {join}"
                )));
            }
            Err(_elapsed) if raised.is_none() => {
                if let Err(e) = py.check_signals() {
                    match &on_signal {
                        OnSignal::Abort => {
                            task.abort();
                            return Err(e);
                        }
                        OnSignal::Stop(stop) => {
                            stop.request("SIGINT");
                            raised = Some(e);
                        }
                    }
                }
            }
            Err(_elapsed) => {}
        }
    }
}

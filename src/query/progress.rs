//! The progress line of a statement that runs longer than a second at the
//! prompt: rows and bytes its scans have read so far, and the time, on stderr,
//! rewritten in place and cleared when the statement ends or its rows start to
//! reach the terminal.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::physical_plan::ExecutionPlan;

use crate::size::human_bytes;

/// A statement's progress, shared by the query task, the printer and the ticker.
#[derive(Clone, Default)]
pub struct Progress {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    plan: Option<Arc<dyn ExecutionPlan>>,
    /// Rows are reaching the terminal: the line would mix with them.
    quiet: bool,
    /// The line is on the screen.
    shown: bool,
}

/// The ticker of one statement; [`Ticker::stop`] clears its line.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    progress: Progress,
}

/// How long a statement runs before its progress line appears.
const AFTER: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(200);

impl Progress {
    /// A progress line for one statement.
    pub fn new() -> Self {
        Progress::default()
    }

    /// The handle the query task uses to say which plan runs.
    pub fn counters(&self) -> Progress {
        self.clone()
    }

    // The lock also orders the writes to stderr: a line is never printed after
    // `quiet` or `stop` cleared it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows the metrics of `plan` (live counters, updated as it runs).
    pub fn watch(&self, plan: &Arc<dyn ExecutionPlan>) {
        self.lock().plan = Some(Arc::clone(plan));
    }

    /// Rows are about to be printed to the terminal: clear the line, show no more.
    pub fn quiet(&self) {
        let mut state = self.lock();
        state.quiet = true;
        clear(&mut state);
    }

    /// Starts the ticker for a statement that started at `started`.
    pub fn start(&self, started: Instant) -> Ticker {
        let me = self.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(AFTER.saturating_sub(started.elapsed())).await;
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let mut state = me.lock();
                if state.quiet {
                    continue;
                }
                let (rows, bytes) = state.plan.as_ref().map_or((0, 0), scanned);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{rows} rows, {} scanned · {:.1} s",
                    human_bytes(bytes as u64),
                    started.elapsed().as_secs_f64()
                );
                let _ = err.flush();
                state.shown = true;
            }
        });
        Ticker {
            task,
            progress: self.clone(),
        }
    }
}

/// Rows read by the plan's leaves and bytes read by its scans, so far.
fn scanned(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
    let mut totals = (0, 0);
    add_scanned(plan, &mut totals);
    totals
}

fn add_scanned(plan: &Arc<dyn ExecutionPlan>, totals: &mut (usize, usize)) {
    if let Some(m) = plan.metrics() {
        if plan.children().is_empty() {
            totals.0 += m.output_rows().unwrap_or(0);
        }
        totals.1 += m.sum_by_name("bytes_scanned").map_or(0, |v| v.as_usize());
    }
    for child in plan.children() {
        add_scanned(child, totals);
    }
}

impl Ticker {
    /// Stops the ticker and clears its line.
    pub fn stop(self) {
        self.task.abort();
        self.progress.quiet();
    }
}

fn clear(state: &mut State) {
    if std::mem::take(&mut state.shown) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

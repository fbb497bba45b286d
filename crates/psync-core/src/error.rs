//! Errors of planning, running and publishing views.

use datafusion::error::DataFusionError;
use psync_lake_io::LakeError;

/// An error of a psync-lake run.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Reading the lake failed before any query ran.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A query failed while reading a particular landed file.
    #[error("{file}: {message}")]
    InputFile { file: String, message: String },
    /// Writing to the destination failed.
    #[error("cannot write {url}: {message}")]
    Publish { url: String, message: String },
    /// Another run holds the destination's lease.
    #[error("{url} is locked by run {holder} ({detail})")]
    Locked {
        url: String,
        holder: String,
        detail: String,
    },
    /// The run's lease was taken over (or could not be renewed): it stopped
    /// before committing anything more.
    #[error("lost the lease on {url}: {why}; this run stopped before publishing anything more")]
    LeaseLost { url: String, why: String },
    /// The run was asked to stop by a signal.
    #[error("interrupted by {signal}: {}", interrupted(published, left))]
    Interrupted {
        signal: String,
        /// Views the run published before it stopped.
        published: Vec<String>,
        /// Views left as the previous run's.
        left: Vec<String>,
    },
    /// A bad setting.
    #[error("{0}")]
    Config(String),
    /// Any other engine error.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

fn interrupted(published: &[String], left: &[String]) -> String {
    if published.is_empty() {
        return "nothing published".into();
    }
    let mut out = format!("views {} published", published.join(", "));
    if !left.is_empty() {
        out.push_str(&format!(", {} left as the previous run's", left.join(", ")));
    }
    out
}

impl CoreError {
    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<&str> {
        match self {
            CoreError::Interrupted { signal, .. } => Some(signal),
            _ => None,
        }
    }
}

/// The error of a failed write (or read) of the destination at `url`.
pub(crate) fn publish_err(url: &str, e: object_store::Error) -> CoreError {
    CoreError::Publish {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// An error and its causes on one line, without repeating a cause already in
/// the message, SAS signatures redacted: what the CLI prints after `error: ` and
/// the message of the Python package's exceptions.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for cause in std::iter::successors(Some(e), |c| c.source()) {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    // A SAS travels in request URLs, which object_store's errors show.
    psync_lake_io::azure::redact(&out.replace('\n', " "))
}

/// Result of core operations.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

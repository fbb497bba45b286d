//! Errors as Python exceptions: a [`PsyncError`] subclass chosen by the kind of
//! failure, its message the one line the CLI prints after `error: `.

use psync_core::CoreError;
use psync_lake_io::LakeError as IoError;
use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyboardInterrupt};

create_exception!(
    psync_lake,
    PsyncError,
    PyException,
    "Every error of psync_lake; its message is the CLI's one-line error."
);
create_exception!(
    psync_lake,
    LakeError,
    PsyncError,
    "The lake or destination cannot be read (missing folder, bad location, a damaged file)."
);
create_exception!(
    psync_lake,
    QueryError,
    PsyncError,
    "An SQL statement failed to parse, plan or run."
);
create_exception!(
    psync_lake,
    PublishError,
    PsyncError,
    "Writing to the destination failed."
);
create_exception!(
    psync_lake,
    LockedError,
    PsyncError,
    "Another run holds the destination's lease, or this run lost it."
);
create_exception!(
    psync_lake,
    ConfigError,
    PsyncError,
    "A bad argument: an unknown view, mode or format, a size or instant that does not parse."
);
create_exception!(
    psync_lake,
    UnknownIdError,
    PsyncError,
    "`explain` was given an ID the lake does not know."
);

/// A statement that failed, said as the CLI says it.
#[derive(Debug)]
pub struct Query(pub String);

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Query {}

/// The exception of a failed call whose error (with its context) is `e`.
pub fn to_py(e: &anyhow::Error) -> PyErr {
    let message = psync_core::error::one_line(e.as_ref());
    if e.chain().any(|c| c.is::<Query>()) {
        return QueryError::new_err(message);
    }
    let core = e.chain().find_map(|c| c.downcast_ref::<CoreError>());
    match core {
        Some(CoreError::Interrupted { .. }) => PyKeyboardInterrupt::new_err(message),
        Some(CoreError::Lake(_) | CoreError::InputFile { .. }) => LakeError::new_err(message),
        Some(CoreError::Publish { .. }) => PublishError::new_err(message),
        Some(CoreError::Locked { .. } | CoreError::LeaseLost { .. }) => {
            LockedError::new_err(message)
        }
        Some(CoreError::Config(_)) => ConfigError::new_err(message),
        Some(CoreError::DataFusion(_)) => QueryError::new_err(message),
        None if e.chain().any(|c| c.is::<IoError>()) => LakeError::new_err(message),
        None => PsyncError::new_err(message),
    }
}

/// A bad argument, said as `message`.
pub fn config(message: impl Into<String>) -> PyErr {
    ConfigError::new_err(message.into())
}

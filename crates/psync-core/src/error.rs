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
    /// Another run holds the destination.
    #[error(
        "{url} is locked by run {holder} since {since}; if that run is dead the lock turns stale in {stale_in} (or pass --break-lock)"
    )]
    Locked {
        url: String,
        holder: String,
        since: String,
        stale_in: String,
    },
    /// A bad setting.
    #[error("{0}")]
    Config(String),
    /// Any other engine error.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// Result of core operations.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

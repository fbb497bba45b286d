//! Errors of reading a lake; each names the file, table or setting at fault.

use datafusion::error::DataFusionError;

/// An error reading a lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake location could not be understood.
    #[error("invalid lake location '{location}': {reason}")]
    Location { location: String, reason: String },
    /// Listing or reading the store failed.
    #[error("cannot read {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// A Parquet file could not be opened (bad footer, truncated, not Parquet).
    #[error("{file}: not a readable Parquet file: {message}")]
    Unreadable { file: String, message: String },
    /// A listed file was gone when it was read (deleted or replaced meanwhile).
    #[error(
        "{file}: vanished after the lake was listed (deleted or replaced while the run read it)"
    )]
    Vanished { file: String },
    /// A Delta table's log could not be read, or asks for a feature not supported.
    #[error("{table}: Delta table: {message}")]
    Delta { table: String, message: String },
    /// A file's schema does not fit its table.
    #[error("{file}: {message}")]
    Schema { file: String, message: String },
    /// Any other DataFusion error.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// Whether `e` comes from an object that is not there (any more).
pub fn is_not_found(e: &DataFusionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(o) = c.downcast_ref::<object_store::Error>() {
            return matches!(o, object_store::Error::NotFound { .. });
        }
        cause = c.source();
    }
    // The Parquet reader reports a failed footer fetch as text only.
    let text = e.to_string();
    text.contains("Object at location") && text.contains("not found")
}

/// Result of lake reading.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

impl From<LakeError> for DataFusionError {
    fn from(e: LakeError) -> Self {
        match e {
            LakeError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// The innermost message of a DataFusion error, without the wrappers' prefixes
/// (which otherwise repeat, as in "Parquet error: Parquet error: ...").
pub fn root_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => a.to_string(),
        DataFusionError::ParquetError(p) => p.to_string(),
        DataFusionError::ObjectStore(o) => o.to_string(),
        other => other.to_string(),
    }
}

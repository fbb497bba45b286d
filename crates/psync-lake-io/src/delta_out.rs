//! Delta output: a published view as a Delta table, one version per run, committed
//! by the Delta kernel.
//!
//! ```text
//! <table>/part-<run>.parquet        written by the run (invisible until committed)
//! <table>/_delta_log/<v>.json       the commit: remove every live file, add the new one
//!                                   (v = 0: protocol + metaData + add, CREATE TABLE)
//! ```
//!
//! A commit is one conditional create of `_delta_log/<v 20 digits>.json` (the kernel's
//! file-system committer puts it with `PutMode::Create`): either the whole version is
//! there or none of it, and two writers of one version cannot both win. No lock
//! service is involved; the destination's lease keeps a second run away anyway.
//!
//! Each version is an overwrite: readers of the latest version see exactly the new
//! file; the removed files stay on storage for time travel (`VERSION AS OF`) until a
//! `VACUUM` deletes them. Schema changes between runs are limited to what the kernel
//! can commit with data: new (nullable) columns. A column that disappears or changes
//! type is refused before anything is committed ([`check_overwrite`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromArrow;
use delta_kernel::schema::{StructField, StructType};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::{
    CommitResult, CommittedTransaction, Transaction, UpdateTableOperation,
};
use delta_kernel::{Engine, EngineData, FileMeta, Snapshot};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::parquet::DataFileMetadata;
use delta_kernel_default_engine::{DefaultEngineBuilder, build_add_file_metadata};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use url::Url;

use crate::delta::{DELTA_LOG, table_url};
use crate::error::{LakeError, Result};
use crate::location::Location;

/// What the commits say wrote them (the log's `commitInfo.engineInfo`).
pub const ENGINE_INFO: &str = concat!("psync-lake/", env!("CARGO_PKG_VERSION"));

/// Every this many versions a commit is followed by a checkpoint, so that readers
/// of a table that many runs wrote replay a checkpoint and a few commits, not every
/// commit since the first.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// A data file written into a table's folder, to be made live by [`commit_overwrite`].
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Where it is (inside the table's folder).
    pub path: Path,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, ms since the epoch.
    pub last_modified_ms: i64,
    /// Rows it holds.
    pub rows: u64,
}

/// Whether `table` (a folder of `location`'s store) holds a Delta log: a commit
/// or a checkpoint in `_delta_log/` (not merely the temporary file of a put that
/// was killed halfway).
pub async fn is_delta_table(location: &Location, table: &Path) -> Result<bool> {
    let log = table.clone().join(DELTA_LOG);
    let mut files = location.store.list(Some(&log));
    while let Some(file) = files.next().await {
        match file {
            Ok(meta) if is_log_file(meta.location.filename().unwrap_or_default()) => {
                return Ok(true);
            }
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => {
                return Err(LakeError::Store {
                    url: location.url_of(&log),
                    source: e,
                });
            }
        }
    }
    Ok(false)
}

/// Removes what a killed first commit left in `_delta_log/` of a table that has no
/// commit (the temporary file of a put): the kernel creates a table only where
/// `_delta_log/` is empty.
async fn remove_log_leftovers(location: &Location, table: &Path) -> Result<()> {
    let log = table.clone().join(DELTA_LOG);
    let mut files = location.store.list(Some(&log));
    let mut left = vec![];
    while let Some(file) = files.next().await {
        match file {
            Ok(meta) => left.push(meta.location),
            Err(object_store::Error::NotFound { .. }) => break,
            Err(e) => {
                return Err(LakeError::Store {
                    url: location.url_of(&log),
                    source: e,
                });
            }
        }
    }
    for path in left {
        tracing::info!(file = %path, "removing a leftover of a killed commit");
        match location.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(LakeError::Store {
                    url: location.url_of(&path),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// `00000000000000000003.json`, `00000000000000000010.checkpoint.parquet`, ...
fn is_log_file(name: &str) -> bool {
    let (Some(version), Some(rest)) = (name.get(..20), name.get(20..)) else {
        return false;
    };
    version.bytes().all(|b| b.is_ascii_digit())
        && (rest == ".json" || (rest.starts_with(".checkpoint") && rest.ends_with(".parquet")))
}

/// The Delta schema a view of arrow schema `schema` is published with: every
/// top-level column nullable, so that a later run may add columns and NULLs alike.
pub fn delta_schema(schema: &Schema) -> std::result::Result<StructType, String> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    StructType::try_from_arrow(&Schema::new(fields)).map_err(|e| e.to_string())
}

/// Fails, naming the column, unless a new version of schema `schema` can be
/// committed over the table at `table` (absent: anything can). Called for every
/// view before any is committed, so that a refusal leaves all views as they were.
pub async fn check_overwrite(location: &Location, table: &Path, schema: &Schema) -> Result<()> {
    let new = delta_schema(schema).map_err(|message| delta_err(location, table, message))?;
    if !is_delta_table(location, table).await? {
        return Ok(());
    }
    let old = with_engine(location, table, |engine, root| {
        let snapshot = Snapshot::builder_for(root.as_str())
            .build(engine)
            .map_err(describe)?;
        Ok(snapshot.schema())
    })
    .await?;
    added_columns(&old, &new)
        .map(|_| ())
        .map_err(|message| delta_err(location, table, message))
}

/// Commits a new version of the table at `table` whose only live file is `file`
/// (of arrow schema `schema`), creating the table when it has no log yet; returns
/// the version committed.
pub async fn commit_overwrite(
    location: &Location,
    table: &Path,
    schema: &Schema,
    file: NewFile,
    run_id: &str,
) -> Result<u64> {
    let new = delta_schema(schema).map_err(|message| delta_err(location, table, message))?;
    let exists = is_delta_table(location, table).await?;
    if !exists {
        remove_log_leftovers(location, table).await?;
    }
    let file_url = Url::parse(&format!(
        "{}/{}",
        location.store_url.as_str().trim_end_matches('/'),
        file.path
    ))
    .map_err(|e| delta_err(location, table, format!("data file URL: {e}")))?;
    let run_id = run_id.to_string();
    with_engine(location, table, move |engine, root| {
        let meta = FileMeta {
            location: file_url,
            last_modified: file.last_modified_ms,
            size: file.size,
        };
        let parameters = [
            ("mode", Some("Overwrite")),
            ("psync.run_id", Some(run_id.as_str())),
        ];
        if exists {
            let snapshot = Snapshot::builder_for(root.as_str())
                .build(engine)
                .map_err(describe)?;
            let mut builder =
                snapshot
                    .clone()
                    .update_table(UpdateTableOperation::Write, ENGINE_INFO, true);
            for field in added_columns(&snapshot.schema(), &new)? {
                builder = builder.add_column(field);
            }
            let mut txn = builder
                .with_operation_parameters(parameters)
                .build(engine, Box::new(FileSystemCommitter::new()))
                .map_err(describe)?;
            // Overwrite: every file live at the version read is removed.
            let scan = snapshot.scan_builder().build().map_err(describe)?;
            for metadata in scan.scan_metadata(engine).map_err(describe)? {
                txn.remove_files(metadata.map_err(describe)?.scan_files);
            }
            add_and_commit(txn, engine, meta, file.rows)
        } else {
            let txn = create_table(root.as_str(), Arc::new(new), ENGINE_INFO, true)
                .with_operation_parameters(parameters)
                .build(engine, Box::new(FileSystemCommitter::new()))
                .map_err(describe)?;
            add_and_commit(txn, engine, meta, file.rows)
        }
    })
    .await
}

/// Adds the one data file `meta` (of `rows` rows) to `txn` and commits it, with a
/// checkpoint now and then; the version committed. One tail for creating and for
/// updating a table: the kernel's two transaction kinds differ only in their state.
fn add_and_commit<S>(
    mut txn: Transaction<S>,
    engine: &dyn Engine,
    meta: FileMeta,
    rows: u64,
) -> std::result::Result<u64, String> {
    let ws = txn.write_state().map_err(describe)?;
    let context = ws.write_context_builder().build().map_err(describe)?;
    txn.add_files(add_metadata(meta, rows, &context)?);
    let done = committed(txn.commit(engine).map_err(describe)?)?;
    checkpoint_now_and_then(engine, &done);
    Ok(done.commit_version())
}

/// The columns of `new` that `old` lacks; an error naming the column when a column
/// of `old` is missing from `new` or has another type there (the kernel commits
/// added columns with data, nothing else).
fn added_columns(
    old: &StructType,
    new: &StructType,
) -> std::result::Result<Vec<StructField>, String> {
    let remedy = "a new version can only add columns; publish into a new --dest, or remove the table's folder to start it anew";
    for field in old.fields() {
        match new.field(field.name()) {
            None => {
                return Err(format!(
                    "column '{}' is not in the new view ({remedy})",
                    field.name()
                ));
            }
            Some(f) if f.data_type() != field.data_type() => {
                return Err(format!(
                    "column '{}' was {} and is now {} ({remedy})",
                    field.name(),
                    field.data_type(),
                    f.data_type()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(new
        .fields()
        .filter(|f| old.field(f.name()).is_none())
        .cloned()
        .collect())
}

/// The add-file metadata of one file of `rows` rows: only `numRecords` as
/// statistics (min/max would need the data again; readers do without).
fn add_metadata(
    meta: FileMeta,
    rows: u64,
    context: &delta_kernel::transaction::BoundWriteContext,
) -> std::result::Result<Box<dyn EngineData>, String> {
    let rows = usize::try_from(rows).map_err(|e| e.to_string())?;
    let empty = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| e.to_string())?;
    let no_columns = StructType::try_new(Vec::<StructField>::new()).map_err(describe)?;
    let stats = delta_kernel_default_engine::stats::collect_stats(&empty, &[], &no_columns)
        .map_err(describe)?;
    build_add_file_metadata(DataFileMetadata::new(meta, stats), context).map_err(describe)
}

fn committed<S>(result: CommitResult<S>) -> std::result::Result<CommittedTransaction, String> {
    match result {
        CommitResult::Committed(c) => Ok(c),
        CommitResult::Conflicted(c) => Err(format!(
            "version {} was committed by another writer meanwhile; nothing of this run was committed to this table",
            c.conflict_version()
        )),
        CommitResult::Retryable(_) => Err(
            "the commit failed on a transient store error; nothing was committed to this table"
                .into(),
        ),
    }
}

/// Writes a checkpoint of the version `committed` made when it is a multiple of
/// [`CHECKPOINT_INTERVAL`]. Best effort: the version is committed either way (a
/// checkpoint is one whole object, and `_last_checkpoint` only a hint), and without
/// it readers replay the commits.
fn checkpoint_now_and_then(engine: &dyn Engine, committed: &CommittedTransaction) {
    let version = committed.commit_version();
    if version == 0 || !version.is_multiple_of(CHECKPOINT_INTERVAL) {
        return;
    }
    let Some(snapshot) = committed.post_commit_snapshot() else {
        return;
    };
    match snapshot.checkpoint(engine, None) {
        Ok(_) => tracing::info!(version, "wrote a checkpoint"),
        Err(e) => tracing::warn!(
            version,
            error = describe(e),
            "writing a checkpoint failed; readers replay the commits instead"
        ),
    }
}

/// Runs `f` with a kernel engine over `location`'s store and the table's root URL,
/// in a blocking task (the kernel's API is synchronous).
async fn with_engine<T: Send + 'static>(
    location: &Location,
    table: &Path,
    f: impl FnOnce(&dyn Engine, &Url) -> std::result::Result<T, String> + Send + 'static,
) -> Result<T> {
    let root = table_url(location, table).map_err(|m| delta_err(location, table, m))?;
    let store = location.store.clone();
    let handle = tokio::runtime::Handle::current();
    let shown = location.url_of(table);
    tokio::task::spawn_blocking(move || {
        // The kernel's I/O runs on the run's own runtime (see `delta::snapshot`).
        let engine = DefaultEngineBuilder::new(store)
            .with_task_executor(Arc::new(TokioMultiThreadExecutor::new(handle)))
            .build();
        f(&engine, &root)
    })
    .await
    .map_err(|e| LakeError::Delta {
        table: shown.clone(),
        message: format!("writing the log failed: {e}"),
    })?
    .map_err(|message| LakeError::Delta {
        table: shown,
        message,
    })
}

fn delta_err(location: &Location, table: &Path, message: String) -> LakeError {
    LakeError::Delta {
        table: location.url_of(table),
        message,
    }
}

/// The kernel's error, in one line.
fn describe(e: delta_kernel::KernelError) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn schema(fields: &[(&str, DataType)]) -> StructType {
        let s = Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), false))
                .collect::<Vec<_>>(),
        );
        delta_schema(&s).unwrap()
    }

    #[test]
    fn only_commits_and_checkpoints_make_a_table() {
        assert!(is_log_file("00000000000000000000.json"));
        assert!(is_log_file("00000000000000000010.checkpoint.parquet"));
        assert!(!is_log_file("00000000000000000000.json#1"));
        assert!(!is_log_file("_last_checkpoint"));
        assert!(!is_log_file("0.json"));
    }

    #[test]
    fn a_new_version_may_add_columns_only() {
        let old = schema(&[("a", DataType::Utf8), ("b", DataType::Int64)]);
        let more = schema(&[
            ("a", DataType::Utf8),
            ("c", DataType::Boolean),
            ("b", DataType::Int64),
        ]);
        let added = added_columns(&old, &more).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].name(), "c");
        assert!(added[0].is_nullable());
        let fewer = schema(&[("a", DataType::Utf8)]);
        assert!(
            added_columns(&old, &fewer)
                .unwrap_err()
                .contains("column 'b'")
        );
        let retyped = schema(&[("a", DataType::Utf8), ("b", DataType::Utf8)]);
        assert!(
            added_columns(&old, &retyped)
                .unwrap_err()
                .contains("column 'b' was")
        );
    }
}

//! Delta tables in a lake: a landed table folder holding `_delta_log/` is read at
//! one version of its transaction log, by the Delta kernel.
//!
//! ```text
//! <table>/_delta_log/*.json, *.checkpoint.parquet ── kernel log replay ──► live files
//!     each live file: path, size, partition values, deletion vector
//!     deletion vector ── row indexes ──► ParquetRowSelection (rows a scan skips)
//! ```
//!
//! Only the file list comes from the kernel: the files are scanned by the same
//! DataFusion Parquet scan as plain landed files (with the partition values as
//! columns and the deleted rows skipped), so everything above [`crate::LakeTable`]
//! is unchanged and the plans stay made of stock operators.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use delta_kernel::history_manager::{HistoryCommitType, latest_version_as_of};
use delta_kernel::scan::state::ScanFile;
use delta_kernel::table_features::ColumnMappingMode;
use delta_kernel::{Engine, Snapshot};
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use object_store::ObjectMeta;
use object_store::path::Path;
use url::Url;

use crate::error::{LakeError, Result};
use crate::location::Location;

/// The folder of a table's transaction log.
pub const DELTA_LOG: &str = "_delta_log";

/// Which version of each Delta table a run reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeltaAt {
    /// The latest version.
    #[default]
    Latest,
    /// This version of every Delta table.
    Version(u64),
    /// The latest version committed at or before this instant (ms since the epoch).
    Timestamp(i64),
}

/// One live data file of a Delta table at a version.
#[derive(Debug, Clone)]
pub struct DeltaFile {
    /// Where the file is (size and modification time from the log).
    pub meta: ObjectMeta,
    /// Partition values by column name (physical, with column mapping); a NULL
    /// value is absent.
    pub partition_values: HashMap<String, String>,
    /// Sorted row indexes the file's deletion vector removes, if it has one.
    pub deleted_rows: Option<Arc<[u64]>>,
}

/// A Delta table's live files at one version.
#[derive(Debug, Clone)]
pub struct DeltaSnapshot {
    /// The version read.
    pub version: u64,
    /// The table's schema as the log says (partition columns included).
    pub schema: SchemaRef,
    /// The partition columns, typed as the log's schema says.
    pub partition_fields: Vec<FieldRef>,
    /// The live files, in path order.
    pub files: Vec<DeltaFile>,
    /// With column mapping (`name` mode): lower-case physical name → column name.
    pub renames: std::collections::BTreeMap<String, String>,
}

/// Reads the log of the Delta table at `table` (a folder of `location`'s store) at
/// `at`, in a blocking task (the kernel's API is synchronous).
pub async fn snapshot(location: &Location, table: &Path, at: &DeltaAt) -> Result<DeltaSnapshot> {
    let display = location.url_of(table);
    let root = table_url(location, table).map_err(|reason| LakeError::Delta {
        table: display.clone(),
        message: reason,
    })?;
    let store = location.store.clone();
    let at = at.clone();
    let handle = tokio::runtime::Handle::current();
    let shown = display.clone();
    tokio::task::spawn_blocking(move || {
        // The kernel's I/O runs on the run's own runtime, so the store's pooled
        // connections are never tied to a runtime that goes away.
        let engine = DefaultEngineBuilder::new(store)
            .with_task_executor(Arc::new(TokioMultiThreadExecutor::new(handle)))
            .build();
        read_snapshot(&engine, &root, &at).map_err(|message| LakeError::Delta {
            table: shown,
            message,
        })
    })
    .await
    .map_err(|e| LakeError::Delta {
        table: display,
        message: format!("reading the log failed: {e}"),
    })?
}

/// `file:///abs/table/` or `s3://bucket/prefix/table/`: the kernel's table root.
pub(crate) fn table_url(location: &Location, table: &Path) -> std::result::Result<Url, String> {
    let base = location.store_url.as_str().trim_end_matches('/');
    let text = format!("{base}/{table}/");
    Url::parse(&text).map_err(|e| format!("not a table URL '{text}': {e}"))
}

fn read_snapshot(
    engine: &dyn Engine,
    root: &Url,
    at: &DeltaAt,
) -> std::result::Result<DeltaSnapshot, String> {
    let latest = Snapshot::builder_for(root.as_str())
        .build(engine)
        .map_err(describe)?;
    let snapshot = match at {
        DeltaAt::Latest => latest,
        DeltaAt::Version(v) if *v == latest.version() => latest,
        DeltaAt::Version(v) if *v > latest.version() => {
            return Err(format!(
                "version {v} does not exist (the latest is {})",
                latest.version()
            ));
        }
        DeltaAt::Version(v) => Snapshot::builder_for(root.as_str())
            .at_version(*v)
            .build(engine)
            .map_err(describe)?,
        DeltaAt::Timestamp(ms) => {
            let commit = latest_version_as_of(&latest, engine, *ms, HistoryCommitType::Recreatable)
                .map_err(|e| format!("no version at or before that time: {e}"))?;
            Snapshot::builder_for(root.as_str())
                .at_version(commit.version)
                .build(engine)
                .map_err(describe)?
        }
    };
    let config = snapshot.table_configuration();
    if config.is_catalog_managed() {
        return Err(
            "reader feature 'catalogManaged' is not supported: the table's latest \
                    commits live in its catalog (read it through the catalog's external access)"
                .into(),
        );
    }
    let mode = config.column_mapping_mode();
    if mode == ColumnMappingMode::Id {
        return Err("column mapping mode 'id' is not supported yet (mode 'name' is)".into());
    }
    let schema = snapshot.schema();
    let renames = schema
        .fields()
        .filter(|f| f.physical_name(mode) != f.name())
        .map(|f| {
            (
                f.physical_name(mode).to_lowercase(),
                f.name().to_lowercase(),
            )
        })
        .collect();
    let arrow_schema = Schema::try_from_kernel(schema.as_ref()).map_err(|e| e.to_string())?;
    let mut partition_fields = Vec::new();
    for name in config.logical_partition_columns() {
        let field = schema
            .field(name)
            .ok_or_else(|| format!("partition column '{name}' is not in the table's schema"))?;
        let arrow = Field::try_from_kernel(field).map_err(|e| e.to_string())?;
        // Keyed by the name the log's partition values use.
        let arrow = arrow.with_name(field.physical_name(mode));
        partition_fields.push(Arc::new(arrow.with_nullable(true)));
    }

    let version = snapshot.version();
    let scan = snapshot.scan_builder().build().map_err(describe)?;
    let mut scan_files: Vec<ScanFile> = Vec::new();
    for metadata in scan.scan_metadata(engine).map_err(describe)? {
        let metadata = metadata.map_err(describe)?;
        scan_files = metadata
            .visit_scan_files(scan_files, |files: &mut Vec<ScanFile>, f| files.push(f))
            .map_err(describe)?;
    }

    let mut files = Vec::with_capacity(scan_files.len());
    for f in scan_files {
        let url = root
            .join(&f.path)
            .map_err(|e| format!("data file '{}' is not a valid path: {e}", f.path))?;
        if url.scheme() != root.scheme() || url.host_str() != root.host_str() {
            return Err(format!(
                "data file '{}' is in another store than the table (shallow clones are not supported)",
                f.path
            ));
        }
        let location =
            Path::from_url_path(url.path()).map_err(|e| format!("data file '{}': {e}", f.path))?;
        let deleted_rows = f
            .dv_info
            .get_row_indexes(engine, root)
            .map_err(|e| format!("deletion vector of '{}': {}", f.path, describe(e)))?
            .map(|mut rows| {
                rows.sort_unstable();
                rows.dedup();
                Arc::from(rows)
            });
        files.push(DeltaFile {
            meta: ObjectMeta {
                location,
                last_modified: chrono_ms(f.modification_time),
                size: u64::try_from(f.size).unwrap_or(0),
                // Data files of a Delta table are never rewritten in place; the tag
                // marks them so a deletion vector added later reads as a change.
                e_tag: Some("delta".into()),
                version: None,
            },
            partition_values: f.partition_values,
            deleted_rows,
        });
    }
    files.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
    Ok(DeltaSnapshot {
        version,
        schema: Arc::new(arrow_schema),
        partition_fields,
        files,
        renames,
    })
}

/// The kernel's error, in one line.
fn describe(e: delta_kernel::KernelError) -> String {
    e.to_string().replace('\n', " ")
}

fn chrono_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The rows of a file of `rows` rows that a scan reads, with `deleted` (sorted
/// row indexes) skipped.
pub fn row_selection(rows: u64, deleted: &[u64]) -> RowSelection {
    let mut selectors = Vec::with_capacity(deleted.len() * 2 + 1);
    let mut next = 0u64;
    for &d in deleted.iter().filter(|d| **d < rows) {
        if d > next {
            selectors.push(RowSelector::select((d - next) as usize));
        }
        selectors.push(RowSelector::skip(1));
        next = d + 1;
    }
    if next < rows {
        selectors.push(RowSelector::select((rows - next) as usize));
    }
    RowSelection::from(selectors)
}

/// A partition value of `field`'s type from the log's string form; NULL when absent.
pub fn partition_value(field: &Field, value: Option<&str>) -> Result<ScalarValue, String> {
    let Some(text) = value else {
        return ScalarValue::try_from(field.data_type()).map_err(|e| e.to_string());
    };
    match field.data_type() {
        DataType::Utf8 => Ok(ScalarValue::Utf8(Some(text.to_string()))),
        other => ScalarValue::try_from_string(text.to_string(), other).map_err(|e| {
            format!(
                "partition value '{text}' of column '{}' is not a {other}: {e}",
                field.name()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_read(selection: &RowSelection) -> usize {
        selection.row_count()
    }

    #[test]
    fn a_selection_skips_exactly_the_deleted_rows() {
        let s = row_selection(10, &[0, 3, 4, 9]);
        assert_eq!(rows_read(&s), 6);
        let v: Vec<RowSelector> = s.into();
        assert_eq!(
            v,
            vec![
                RowSelector::skip(1),
                RowSelector::select(2),
                RowSelector::skip(2),
                RowSelector::select(4),
                RowSelector::skip(1),
            ]
        );
        assert_eq!(rows_read(&row_selection(5, &[])), 5);
        assert_eq!(rows_read(&row_selection(3, &[0, 1, 2])), 0);
        // An index past the end (a corrupt vector) deletes nothing that exists.
        assert_eq!(rows_read(&row_selection(3, &[7])), 3);
    }

    #[test]
    fn partition_values_take_the_columns_type() {
        let day = Field::new("day", DataType::Date32, true);
        assert_eq!(
            partition_value(&day, Some("2024-01-02")).unwrap(),
            ScalarValue::Date32(Some(19724))
        );
        assert_eq!(
            partition_value(&day, None).unwrap(),
            ScalarValue::Date32(None)
        );
        assert!(
            partition_value(&day, Some("soon"))
                .unwrap_err()
                .contains("'soon' of column 'day'")
        );
        let s = Field::new("s", DataType::Utf8, true);
        assert_eq!(
            partition_value(&s, Some("a b")).unwrap(),
            ScalarValue::Utf8(Some("a b".into()))
        );
    }
}

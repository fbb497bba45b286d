//! Executing a planned view: the one place where a run's plans turn into rows.
//!
//! Everything before this point only builds `DataFrame`s, and everything after
//! it (commit, run record) only moves files, so an engine other than this
//! process (a cluster) has to replace [`write_parquet`] and nothing else:
//! the staged file at the URL it is given (in the staging folder; with Delta
//! output, in the view's folder) is all the rest of the run reads. The Parquet
//! settings live here too, so that publishing depends on this module and not
//! the other way round.

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::Result;

/// Rows per row group: small enough for readers to parallelise, large enough to compress well.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Columns of the published files whose values are (nearly) all distinct. A
/// dictionary does not pay for them: the writer would fill one, overflow it and
/// fall back to plain pages, slower and larger than plain pages from the start.
pub const DISTINCT_COLUMNS: &[&str] = &[
    "segment_id",
    "canonical_segment_id",
    "merged_to",
    "external_id_value",
    "external_id_hash",
    "timestamp",
];

/// The Parquet settings of every published file (SPEC §5): zstd at level 1
/// (levels 1 and 3 give files within 2% of each other here; level 1 writes
/// faster), row groups of [`ROW_GROUP_ROWS`], no dictionary for [`DISTINCT_COLUMNS`].
pub fn parquet_options() -> TableParquetOptions {
    let mut o = TableParquetOptions::default();
    o.global.compression = Some("zstd(1)".into());
    o.global.max_row_group_size = ROW_GROUP_ROWS;
    o.global.allow_single_file_parallelism = true;
    for column in DISTINCT_COLUMNS {
        let options = o
            .column_specific_options
            .entry(column.to_string())
            .or_default();
        options.dictionary_enabled = Some(false);
    }
    o
}

/// Runs `df` and writes its rows as one Parquet file at `url` with the
/// published files' settings; returns the rows written.
pub(crate) async fn write_parquet(df: DataFrame, url: &str) -> Result<u64> {
    let out = df
        .write_parquet(
            url,
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(parquet_options()),
        )
        .await?;
    let rows = out
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
        })
        .map_or(0, |a| a.value(0));
    Ok(rows)
}

/// Whether scans evaluate filters (joins' dynamic filters included) inside
/// the Parquet reader, decoding the other columns only for the rows that pass.
pub(crate) fn late_materialization(ctx: &SessionContext, on: bool) {
    let state = ctx.state_ref();
    let mut state = state.write();
    let parquet = &mut state.config_mut().options_mut().execution.parquet;
    parquet.pushdown_filters = on;
    parquet.reorder_filters = on;
}

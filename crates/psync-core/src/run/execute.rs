//! Executing a planned view: the one place where a run's plans turn into rows.
//!
//! Everything before this point only builds `DataFrame`s, and everything after
//! it (commit, run record) only moves files, so an engine other than this
//! process (a cluster) has to replace [`write_parquet`] and nothing else:
//! the staged file at the URL it is given is all the rest of the run reads.

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::Result;
use crate::run::publish::parquet_options;

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

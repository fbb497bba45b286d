//! `verify`: recompute the views in full and compare them with the published ones.
//!
//! ```text
//! lake ─► views::plan (full) ─► each view written to a local temp folder (memory pool applies)
//! expected ⟗ published, by the view's key:
//!   missing   = expected keys not published
//!   extra     = published keys not expected
//!   different = same key, some other column differs (EXCEPT ALL, then by key)
//! ```

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::logical_expr::{JoinType, cast};
use datafusion::prelude::{DataFrame, SessionContext, col, ident};
use psync_lake_io::{DeltaAt, Lake, Location};
use serde::Serialize;

use crate::blame::blame;
use crate::error::{CoreError, Result};
use crate::inputs::{Inputs, Warnings};
use crate::session::{EngineOptions, views_context};
use crate::views::{self, View};

/// Examples shown per kind of difference.
const EXAMPLES: usize = 3;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The lake root.
    pub source: String,
    /// The destination the views were published to.
    pub dest: String,
    /// The views to check.
    pub views: Vec<View>,
    /// Engine settings.
    pub engine: EngineOptions,
    /// The version of the source's Delta tables to read.
    pub source_at: DeltaAt,
}

/// How one published view compares with a full recomputation.
#[derive(Debug, Clone, Serialize)]
pub struct ViewCheck {
    /// View name.
    pub view: String,
    /// Rows a full run gives.
    pub expected_rows: u64,
    /// Rows published.
    pub published_rows: u64,
    /// Keys a full run has and the published view lacks.
    pub missing: u64,
    /// Keys published that a full run does not have.
    pub extra: u64,
    /// Keys in both whose other columns differ.
    pub different: u64,
    /// A few examples of each, as `kind: key`.
    pub examples: Vec<String>,
    /// Set when the view could not be compared at all (not published, other columns).
    pub problem: Option<String>,
}

impl ViewCheck {
    /// Whether the published view equals a full run's.
    pub fn ok(&self) -> bool {
        self.problem.is_none() && self.missing == 0 && self.extra == 0 && self.different == 0
    }
}

/// Recomputes `opts.views` in full and compares each with its published file.
pub async fn verify(opts: &VerifyOptions) -> Result<Vec<ViewCheck>> {
    let ctx = views_context(&opts.engine)?;
    let source = Location::parse_with(&opts.source, &opts.engine.store)?;
    let dest = Location::parse_with(&opts.dest, &opts.engine.store)?;
    source.register(&ctx);
    dest.register(&ctx);
    let lake = Lake::open_at(&ctx.state(), source, &opts.source_at).await?;
    let published = Lake::open(&ctx.state(), dest).await?;
    let inputs = Inputs::new(&ctx, &lake);
    let planned = match views::plan(&inputs, &opts.views, &mut Warnings::default()).await {
        Ok(p) => p,
        Err(e) => return Err(blame(&ctx, &lake, e).await),
    };
    let temp = tempfile::Builder::new()
        .prefix("psync-verify-")
        .tempdir()
        .map_err(|e| CoreError::Config(format!("cannot create a temp folder: {e}")))?;
    let mut checks = vec![];
    for (view, df) in planned.views {
        // Written out so that the comparison's joins read files, not a cached plan.
        let file = temp.path().join(format!("{}.parquet", view.name()));
        let url = file.display().to_string();
        if let Err(e) = df
            .write_parquet(
                &url,
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
        {
            return Err(blame(&ctx, &lake, e).await);
        }
        let expected = ctx.read_parquet(url, Default::default()).await?;
        checks.push(compare(&ctx, view, expected, &published).await?);
    }
    Ok(checks)
}

async fn compare(
    ctx: &SessionContext,
    view: View,
    expected: DataFrame,
    published: &Lake,
) -> Result<ViewCheck> {
    let expected_rows = expected.clone().count().await? as u64;
    let mut check = ViewCheck {
        view: view.name().to_string(),
        expected_rows,
        published_rows: 0,
        missing: 0,
        extra: 0,
        different: 0,
        examples: vec![],
        problem: None,
    };
    let Some(table) = published.table(view.name()) else {
        check.problem = Some(format!(
            "not published under {}",
            published.location().display
        ));
        check.missing = expected_rows;
        return Ok(check);
    };
    let got = ctx.read_table(Arc::new(table.clone()))?;
    check.published_rows = got.clone().count().await? as u64;
    // The published file with the expected columns, in the expected order and types.
    let mut aligned = vec![];
    for f in expected.schema().fields() {
        if !got.schema().has_column_with_unqualified_name(f.name()) {
            check.problem = Some(format!("the published view has no column '{}'", f.name()));
            return Ok(check);
        }
        aligned.push(cast(ident(f.name()), f.data_type().clone()).alias(f.name()));
    }
    let extra_cols: Vec<String> = got
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !expected.schema().has_column_with_unqualified_name(n))
        .collect();
    if !extra_cols.is_empty() {
        check.problem = Some(format!(
            "the published view has columns a full run does not: {}",
            extra_cols.join(", ")
        ));
        return Ok(check);
    }
    let got = got.select(aligned)?;
    let key: Vec<&str> = view.key().to_vec();
    let renamed = |df: DataFrame| -> Result<DataFrame> {
        Ok(df.select(
            key.iter()
                .map(|k| col(*k).alias(format!("o_{k}")))
                .collect::<Vec<_>>(),
        )?)
    };
    let other_key: Vec<String> = key.iter().map(|k| format!("o_{k}")).collect();
    let other_key: Vec<&str> = other_key.iter().map(String::as_str).collect();
    let by_key = |left: DataFrame, right: DataFrame, how: JoinType| -> Result<DataFrame> {
        Ok(left.join(renamed(right)?, how, &key, &other_key, None)?)
    };

    let missing = by_key(expected.clone(), got.clone(), JoinType::LeftAnti)?;
    let extra = by_key(got.clone(), expected.clone(), JoinType::LeftAnti)?;
    let different = by_key(
        expected.clone().except(got.clone())?,
        got.clone(),
        JoinType::LeftSemi,
    )?;
    for (kind, df, count) in [
        ("missing", missing, &mut check.missing),
        ("extra", extra, &mut check.extra),
        ("different", different, &mut check.different),
    ] {
        *count = df.clone().count().await? as u64;
        if *count > 0 {
            let keys = df.select_columns(&key)?.limit(0, Some(EXAMPLES))?;
            for batch in keys.collect().await? {
                for row in render(&batch)? {
                    check.examples.push(format!("{kind}: {row}"));
                }
            }
        }
    }
    Ok(check)
}

/// Each row of `batch` as `column=value, ...`.
fn render(batch: &RecordBatch) -> Result<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CoreError::DataFusion(e.into()))?;
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok((0..batch.num_rows())
        .map(|r| {
            names
                .iter()
                .zip(&formatters)
                .map(|(n, f)| format!("{n}={}", f.value(r)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect())
}

//! Naming the landed file behind a query error: a run's, `verify`'s and the
//! extra views' failures all say which input to look at, not just what broke.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use psync_lake_io::{Lake, LakeError, LakeTable, is_not_found, root_message};

use crate::error::CoreError;

/// Turns a query error into one that names the landed file that caused it, by
/// scanning each file of each table alone (only ever done after a failure).
pub async fn blame(ctx: &SessionContext, lake: &Lake, error: DataFusionError) -> CoreError {
    for table in lake.tables() {
        for file in table.files() {
            let single = Arc::new(table.with_files(vec![file.clone()]));
            if let Err(e) = scan(ctx, single.clone(), None).await {
                if is_not_found(&e) {
                    return LakeError::Vanished {
                        file: lake.location().url_of(&file.meta.location),
                    }
                    .into();
                }
                // Name the column too, when one column alone fails.
                let mut message = root_message(&e);
                for field in single.schema().fields() {
                    if scan(ctx, single.clone(), Some(field.name())).await.is_err() {
                        message = format!("column '{}': {message}", field.name());
                        break;
                    }
                }
                return CoreError::InputFile {
                    file: lake.location().url_of(&file.meta.location),
                    message,
                };
            }
        }
    }
    CoreError::DataFusion(error)
}

/// Reads a table (or one of its columns) to the end.
async fn scan(
    ctx: &SessionContext,
    table: Arc<LakeTable>,
    column: Option<&str>,
) -> datafusion::error::Result<()> {
    let mut df = ctx.read_table(table)?;
    if let Some(c) = column {
        df = df.select(vec![datafusion::prelude::ident(c)])?;
    }
    df.collect().await.map(|_| ())
}

//! `SELECT * FROM 's3://bucket/path/*.parquet'`: files queried by path. The
//! session's URL tables (DataFusion's dynamic file catalog) read them; this makes
//! the object store of each remote path in a statement known first, with the
//! shell's store settings (`--s3-*`, `--azure-*`, the environment).

use crate::error::{CoreError, Result};
use crate::session::{EngineOptions, locate};
use datafusion::prelude::SessionContext;

/// Schemes of the stores a path in a statement may name.
const REMOTE: &[&str] = &[
    "s3://", "s3a://", "az://", "azure://", "abfs://", "abfss://",
];

/// Registers the store of every remote path among the string literals of `sql`.
/// A literal that is no usable location is left alone: it may be any string,
/// and a query that reads it as a table reports the path itself.
///
/// DataFusion expands globs in local paths only, so a remote path with a glob is
/// an error that says what to write instead.
pub fn register_stores(ctx: &SessionContext, sql: &str, engine: &EngineOptions) -> Result<()> {
    for literal in literals(sql) {
        let lower = literal.to_ascii_lowercase();
        if !REMOTE.iter().any(|s| lower.starts_with(s)) {
            continue;
        }
        if literal.contains(['*', '?', '[']) {
            return Err(CoreError::Config(format!(
                "'{literal}': globs work in local paths only; on a store, name a file or a folder ending in / (every file under it is read)"
            )));
        }
        if let Err(e) = locate(ctx, &literal, engine) {
            tracing::debug!("'{literal}' is not a location: {e}");
        }
    }
    Ok(())
}

/// The single-quoted string literals of `sql`, unescaped.
fn literals(sql: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    s.push('\'');
                    continue;
                }
                break;
            }
            s.push(c);
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literals() {
        assert_eq!(
            literals("SELECT * FROM 's3://b/x/*.parquet' WHERE a = 'it''s'"),
            ["s3://b/x/*.parquet", "it's"]
        );
    }
}

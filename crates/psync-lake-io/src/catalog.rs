//! [`Lake`]: the landed tables under a root, listed once per run.
//!
//! ```text
//! <root>/<table>/**/*.parquet ── list (once) ──► files per table
//! <root>/<table>/_delta_log/  ── Delta log replay (crate::delta) ──► live files per table
//!        each footer ── read (once, cached for the scan) ──► FileSchema
//!        FileSchemas ── schema::unify ──► LakeTable (TableProvider)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::SessionState;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use tracing::debug;

use crate::delta::{self, DELTA_LOG, DeltaAt, DeltaSnapshot};
use crate::error::{LakeError, Result, is_not_found, root_message};
use crate::location::Location;
use crate::schema::{FileSchema, unify};
use crate::table::{LakeFile, LakeTable};

/// How many footers are fetched at once.
const FOOTER_CONCURRENCY: usize = 32;

/// The landed tables of one lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    location: Location,
    tables: BTreeMap<String, LakeTable>,
}

/// Whether a path segment hides what is under it (`_SUCCESS`, `.tmp`, `_psync`).
fn hidden(segment: &str) -> bool {
    segment.starts_with('_') || segment.starts_with('.')
}

/// Prefixes of the folders Segment lands a Personas (Engage) space's tables in:
/// `<root>/personas_<space>/<table>/` (older workspaces) or `engage_<space>/`.
pub const SPACE_PREFIXES: [&str; 2] = ["personas_", "engage_"];

/// Whether a (lower-case) top-level folder is a Personas space.
pub fn is_space(folder: &str) -> bool {
    SPACE_PREFIXES
        .iter()
        .any(|p| folder.len() > p.len() && folder.starts_with(p))
}

/// The table a file belongs to, from its path below the root (file name last):
/// the top-level folder, or `<space>.<table>` for a file under
/// `<space>/<table>/` when `<space>` is a Personas space folder. A space's
/// Hive partition folder (`day=...`) or a file right under the space folder
/// keeps the plain top-level name: it is a table that happens to be named so.
fn table_name(parts: &[String]) -> String {
    let top = parts[0].to_lowercase();
    match parts {
        [_, table, _, ..] if is_space(&top) && !table.contains('=') => {
            format!("{top}.{}", table.to_lowercase())
        }
        _ => top,
    }
}

/// A file to open as part of a table, with what a Delta log says of it.
struct Listed {
    meta: ObjectMeta,
    partition_values: Vec<ScalarValue>,
    deleted_rows: Option<Arc<[u64]>>,
}

impl Listed {
    fn plain(meta: ObjectMeta) -> Listed {
        Listed {
            meta,
            partition_values: vec![],
            deleted_rows: None,
        }
    }
}

impl Lake {
    /// Lists `location` once and reads every footer once (into DataFusion's file
    /// metadata cache, where the scans find them again); Delta tables at their
    /// latest version.
    pub async fn open(state: &SessionState, location: Location) -> Result<Lake> {
        Self::open_at(state, location, &DeltaAt::Latest).await
    }

    /// As [`Self::open`], with every Delta table read at `at`.
    pub async fn open_at(state: &SessionState, location: Location, at: &DeltaAt) -> Result<Lake> {
        if let Some(dir) = &location.local_dir
            && !dir.is_dir()
        {
            return Err(LakeError::Location {
                location: location.display.clone(),
                reason: "no such directory".into(),
            });
        }
        let listed: Vec<ObjectMeta> = location
            .store
            .list(Some(&location.prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::Store {
                url: location.display.clone(),
                source,
            })?;

        let mut by_table: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        // Tables whose folder holds a transaction log: their files are the log's.
        let mut delta_roots: BTreeMap<String, Path> = BTreeMap::new();
        for meta in listed {
            let Some(rel) = meta.location.prefix_match(&location.prefix) else {
                continue;
            };
            let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
            let Some(file) = parts.last() else {
                continue;
            };
            if let Some(i) = parts.iter().position(|p| p == DELTA_LOG)
                && i >= 1
                && !parts[..i].iter().any(|p| hidden(p))
            {
                let root: Vec<&str> = parts[..i].iter().map(String::as_str).collect();
                delta_roots
                    .entry(table_name(&parts[..=i]))
                    .or_insert_with(|| location.child(&root));
                continue;
            }
            if parts.len() < 2 || parts.iter().any(|p| hidden(p)) {
                continue;
            }
            if !file.to_ascii_lowercase().ends_with(".parquet") {
                continue;
            }
            by_table.entry(table_name(&parts)).or_default().push(meta);
        }

        let mut tables = BTreeMap::new();
        for (name, mut metas) in by_table {
            if delta_roots.contains_key(&name) {
                continue;
            }
            metas.sort_by(|a, b| a.location.cmp(&b.location));
            let listed = metas.into_iter().map(Listed::plain).collect();
            let (files, schema) =
                Self::open_files(state, &location, listed, vec![], &BTreeMap::new()).await?;
            let table = LakeTable::new(name.clone(), location.store_url.clone(), files, schema);
            debug!(table = %name, files = table.files().len(), rows = table.rows(), "listed");
            tables.insert(name, table);
        }
        for (name, root) in delta_roots {
            let snapshot = delta::snapshot(&location, &root, at).await?;
            let table = Self::open_delta(state, &location, &name, &root, snapshot).await?;
            debug!(table = %name, version = ?table.delta_version(), files = table.files().len(),
                rows = table.rows(), "Delta table");
            tables.insert(name, table);
        }
        if tables.is_empty() {
            debug!(location = %location.display, "no tables found (expected <root>/<table>/*.parquet)");
        }
        Ok(Lake { location, tables })
    }

    /// A Delta table from its live files: the footers give the file columns (as
    /// for plain files), the log adds the columns no live file has yet and the
    /// partition columns.
    async fn open_delta(
        state: &SessionState,
        location: &Location,
        name: &str,
        root: &Path,
        snapshot: DeltaSnapshot,
    ) -> Result<LakeTable> {
        let table_url = location.url_of(root);
        let in_log = |e: String| LakeError::Delta {
            table: table_url.clone(),
            message: e,
        };
        let renames = snapshot.renames.clone();
        let column_name = |physical: &str| {
            let lower = physical.to_lowercase();
            renames.get(&lower).cloned().unwrap_or(lower)
        };
        let partition_fields: Vec<_> = snapshot
            .partition_fields
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_name(column_name(f.name()))))
            .collect();
        let mut listed = Vec::with_capacity(snapshot.files.len());
        for f in snapshot.files {
            let values = snapshot
                .partition_fields
                .iter()
                .map(|field| {
                    delta::partition_value(
                        field,
                        f.partition_values.get(field.name()).map(String::as_str),
                    )
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(in_log)?;
            listed.push(Listed {
                meta: f.meta,
                partition_values: values,
                deleted_rows: f.deleted_rows,
            });
        }
        let data_columns: Vec<_> = snapshot
            .schema
            .fields()
            .iter()
            .filter(|f| {
                !partition_fields
                    .iter()
                    .any(|p| p.name().eq_ignore_ascii_case(f.name()))
            })
            .cloned()
            .collect();
        let logged = FileSchema::new(
            format!("{table_url}/{DELTA_LOG}"),
            &datafusion::arrow::datatypes::Schema::new(data_columns),
        )?;
        let (files, schema) =
            Self::open_files(state, location, listed, vec![logged], &renames).await?;
        Ok(LakeTable::delta(
            name.to_string(),
            location.store_url.clone(),
            files,
            schema,
            partition_fields,
            snapshot.version,
            renames,
        ))
    }

    /// Reads the footers of `listed`; the table's file schema unifies theirs and
    /// `extra` (first, so a log's column order leads).
    async fn open_files(
        state: &SessionState,
        location: &Location,
        listed: Vec<Listed>,
        extra: Vec<FileSchema>,
        renames: &BTreeMap<String, String>,
    ) -> Result<(Vec<LakeFile>, SchemaRef)> {
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let store = location.store.clone();
        let read: Vec<(LakeFile, FileSchema)> = futures::stream::iter(listed)
            .map(
                |Listed {
                     meta,
                     partition_values,
                     deleted_rows,
                 }| {
                    let store = store.clone();
                    let cache = cache.clone();
                    let url = location.url_of(&meta.location);
                    async move {
                        let unreadable = |e: &dyn std::fmt::Display| LakeError::Unreadable {
                            file: url.clone(),
                            message: e.to_string(),
                        };
                        let md = DFParquetMetadata::new(store.as_ref(), &meta)
                            .with_file_metadata_cache(Some(cache))
                            .fetch_metadata()
                            .await
                            .map_err(|e| {
                                if is_not_found(&e) {
                                    LakeError::Vanished { file: url.clone() }
                                } else {
                                    unreadable(&root_message(&e))
                                }
                            })?;
                        let fm = md.file_metadata();
                        let schema =
                            parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
                                .map_err(|e| unreadable(&e))?;
                        let schema = if renames.is_empty() {
                            schema
                        } else {
                            rename_columns(&schema, renames)
                        };
                        let file_schema = FileSchema::new(url.clone(), &schema)?;
                        let file_rows = u64::try_from(fm.num_rows()).unwrap_or(0);
                        let columns = file_schema.columns.iter().map(|(n, _)| n.clone()).collect();
                        let (rows, null_counts, selection, meta) = match deleted_rows {
                            None => (file_rows, footer_null_counts(&md), None, meta),
                            Some(deleted) => {
                                let selection = delta::row_selection(file_rows, &deleted);
                                let rows = selection.row_count() as u64;
                                // The footer counts the deleted rows' NULLs too: unknown.
                                (
                                    rows,
                                    BTreeMap::new(),
                                    Some(Arc::new(selection)),
                                    with_dv_tag(meta, &deleted),
                                )
                            }
                        };
                        Ok::<_, LakeError>((
                            LakeFile {
                                meta,
                                rows,
                                null_counts,
                                columns,
                                partition_values,
                                selection,
                            },
                            file_schema,
                        ))
                    }
                },
            )
            .buffered(FOOTER_CONCURRENCY)
            .try_collect()
            .await?;
        let (files, mut schemas): (Vec<_>, Vec<_>) = read.into_iter().unzip();
        let mut all = extra;
        all.append(&mut schemas);
        Ok((files, unify(&all)?))
    }

    /// The same lake with each table's files chosen by `files(table, all its files)`;
    /// tables keep their schema (a table left with no file reads as empty).
    pub fn with_files(&self, files: impl Fn(&str, &[LakeFile]) -> Vec<LakeFile>) -> Lake {
        let tables = self
            .tables
            .iter()
            .map(|(name, t)| (name.clone(), t.with_files(files(name, t.files()))))
            .collect();
        Lake {
            location: self.location.clone(),
            tables,
        }
    }

    /// Where the lake is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// A table by (lower-case) name.
    pub fn table(&self, name: &str) -> Option<&LakeTable> {
        self.tables.get(name)
    }

    /// Every table, by name.
    pub fn tables(&self) -> impl Iterator<Item = &LakeTable> {
        self.tables.values()
    }

    /// The schema of a table, if present.
    pub fn schema_of(&self, name: &str) -> Option<SchemaRef> {
        self.tables
            .get(name)
            .map(datafusion::catalog::TableProvider::schema)
    }

    /// The Personas spaces found (folder names, e.g. `personas_web`), sorted.
    pub fn spaces(&self) -> Vec<String> {
        let mut spaces: Vec<String> = self
            .tables
            .keys()
            .filter_map(|name| name.split_once('.').map(|(space, _)| space.to_string()))
            .collect();
        spaces.sort();
        spaces.dedup();
        spaces
    }

    /// Registers every table in `ctx` under its folder name; a space's tables go
    /// into a schema named after the space (`personas_web.identifies`).
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        for space in self.spaces() {
            ensure_schema(ctx, &space)?;
        }
        for (name, table) in &self.tables {
            ctx.register_table(name.as_str(), Arc::new(table.clone()))?;
        }
        Ok(())
    }
}

/// Creates the schema `name` in `ctx`'s default catalog unless it exists.
pub fn ensure_schema(ctx: &SessionContext, name: &str) -> Result<()> {
    let default = ctx.state().config_options().catalog.default_catalog.clone();
    let Some(catalog) = ctx.catalog(&default) else {
        return Err(datafusion::error::DataFusionError::Plan(format!(
            "no catalog '{default}' to hold schema '{name}'"
        ))
        .into());
    };
    if catalog.schema(name).is_none() {
        catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

/// `schema` with its columns named as `renames` (lower-case physical name → column
/// name) says: the names the log gives the columns of a column-mapped table.
fn rename_columns(
    schema: &datafusion::arrow::datatypes::Schema,
    renames: &BTreeMap<String, String>,
) -> datafusion::arrow::datatypes::Schema {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match renames.get(&f.name().to_lowercase()) {
            Some(name) => Arc::new(f.as_ref().clone().with_name(name)),
            None => f.clone(),
        })
        .collect();
    datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The file's identity for incremental runs includes its deletion vector: the
/// same data file with more rows deleted is a changed file.
fn with_dv_tag(mut meta: ObjectMeta, deleted: &[u64]) -> ObjectMeta {
    // A stable digest (not std's hasher, which may change between builds), as the
    // tag is compared with the one an earlier run recorded.
    let mut digest = sha1_smol::Sha1::new();
    for row in deleted {
        digest.update(&row.to_le_bytes());
    }
    let base = meta.e_tag.take().unwrap_or_default();
    meta.e_tag = Some(format!("{base}+dv:{}:{}", deleted.len(), digest.digest()));
    meta
}

/// NULLs per top-level primitive column, summed over row groups; a column is left
/// out when any row group has no null count for it.
fn footer_null_counts(
    md: &datafusion::parquet::file::metadata::ParquetMetaData,
) -> BTreeMap<String, u64> {
    let descr = md.file_metadata().schema_descr();
    let mut out = BTreeMap::new();
    for (i, column) in descr.columns().iter().enumerate() {
        // Only flat columns: a nested leaf's nulls are not the column's nulls.
        if column.path().parts().len() != 1 {
            continue;
        }
        let name = column.path().parts()[0].to_lowercase();
        let total = md.row_groups().iter().try_fold(0u64, |acc, rg| {
            rg.column(i)
                .statistics()
                .and_then(|s| s.null_count_opt())
                .map(|n| acc + n)
        });
        if let Some(n) = total {
            out.insert(name, n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(path: &str) -> String {
        let parts: Vec<String> = path.split('/').map(str::to_string).collect();
        table_name(&parts)
    }

    #[test]
    fn personas_space_tables_are_named_by_space_and_table() {
        assert_eq!(name("tracks/day=2024-01-01/p.parquet"), "tracks");
        assert_eq!(
            name("personas_web/identifies/p.parquet"),
            "personas_web.identifies"
        );
        assert_eq!(
            name("personas_web/identifies/day=2024-01-01/p.parquet"),
            "personas_web.identifies"
        );
        assert_eq!(
            name("ENGAGE_Default/Users/p.parquet"),
            "engage_default.users"
        );
        // A Hive partition or a file right under the folder: a plain table of that name.
        assert_eq!(
            name("personas_web/day=2024-01-01/p.parquet"),
            "personas_web"
        );
        assert_eq!(name("personas_web/p.parquet"), "personas_web");
        // The prefix alone names no space.
        assert_eq!(name("personas_/t/p.parquet"), "personas_");
    }
}

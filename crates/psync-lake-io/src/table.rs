//! [`LakeTable`]: one landed table as a DataFusion [`TableProvider`] over the files
//! listed once by [`crate::Lake`], scanned by DataFusion's Parquet source.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Result, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;

use crate::adapter::CaseInsensitiveAdapterFactory;

/// One landed Parquet file.
#[derive(Debug, Clone)]
pub struct LakeFile {
    /// Where it is, its size, modification time and ETag.
    pub meta: ObjectMeta,
    /// Number of rows, from the footer.
    pub rows: u64,
    /// NULLs per top-level column (lower-case name), from the footer statistics;
    /// absent where a row group carries no statistics for it.
    pub null_counts: BTreeMap<String, u64>,
    /// The file's top-level columns, lower-case.
    pub columns: Vec<String>,
    /// Values of the table's partition columns (Delta tables), in their order.
    pub partition_values: Vec<ScalarValue>,
    /// The rows a scan reads, when a Delta deletion vector removes some.
    pub selection: Option<Arc<RowSelection>>,
}

impl LakeFile {
    /// Whether the file has `column` (lower-case) at all.
    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}

/// A landed table: its files and its normalised schema.
#[derive(Debug, Clone)]
pub struct LakeTable {
    name: String,
    store_url: ObjectStoreUrl,
    files: Vec<LakeFile>,
    /// The columns in the files.
    file_schema: SchemaRef,
    /// Partition columns, whose values come with each file (Delta tables).
    partition_fields: Vec<FieldRef>,
    /// The file columns, then the partition columns.
    schema: SchemaRef,
    /// The version read, for a Delta table.
    delta_version: Option<u64>,
    /// Lower-case physical column name → table column (Delta column mapping).
    renames: Arc<BTreeMap<String, String>>,
}

impl LakeTable {
    /// A table over `files`, all in the store known as `store_url`.
    pub fn new(
        name: String,
        store_url: ObjectStoreUrl,
        files: Vec<LakeFile>,
        schema: SchemaRef,
    ) -> Self {
        LakeTable {
            name,
            store_url,
            files,
            file_schema: schema.clone(),
            partition_fields: vec![],
            schema,
            delta_version: None,
            renames: Arc::default(),
        }
    }

    /// A Delta table read at `version`: `partition_fields` follow the file columns,
    /// and each file carries its values of them.
    pub fn delta(
        name: String,
        store_url: ObjectStoreUrl,
        files: Vec<LakeFile>,
        file_schema: SchemaRef,
        partition_fields: Vec<FieldRef>,
        version: u64,
        renames: BTreeMap<String, String>,
    ) -> Self {
        let fields: Vec<FieldRef> = file_schema
            .fields()
            .iter()
            .cloned()
            .chain(partition_fields.iter().cloned())
            .collect();
        LakeTable {
            name,
            store_url,
            files,
            file_schema,
            partition_fields,
            schema: Arc::new(Schema::new(fields)),
            delta_version: Some(version),
            renames: Arc::new(renames),
        }
    }

    /// The version of the Delta log read, when the table is a Delta table.
    pub fn delta_version(&self) -> Option<u64> {
        self.delta_version
    }

    /// The table's name (its folder).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files, in path order.
    pub fn files(&self) -> &[LakeFile] {
        &self.files
    }

    /// Total rows over all files, from the footers.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// NULLs in `column` over all files, from the footers; `None` when some file
    /// has the column but no statistics for it.
    pub fn null_count(&self, column: &str) -> Option<u64> {
        let mut total = 0;
        for f in &self.files {
            match f.null_counts.get(column) {
                Some(n) => total += n,
                None if f.has_column(column) => return None,
                None => total += f.rows,
            }
        }
        Some(total)
    }

    /// The same table restricted to some of its files (same schema).
    pub fn with_files(&self, files: Vec<LakeFile>) -> Self {
        LakeTable {
            files,
            ..self.clone()
        }
    }

    /// Splits the files into at most `n` groups of similar byte size.
    fn file_groups(&self, n: usize) -> Vec<FileGroup> {
        let n = n.clamp(1, self.files.len().max(1));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, vec![]); n];
        let mut files: Vec<&LakeFile> = self.files.iter().collect();
        files.sort_by(|a, b| {
            b.meta
                .size
                .cmp(&a.meta.size)
                .then(a.meta.location.cmp(&b.meta.location))
        });
        for f in files {
            // Largest first into the lightest group keeps the groups balanced.
            if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
                g.0 += f.meta.size;
                let mut file = PartitionedFile::new_from_meta(f.meta.clone())
                    .with_partition_values(f.partition_values.clone());
                if let Some(selection) = &f.selection {
                    file =
                        file.with_extension(ParquetRowSelection::new(selection.as_ref().clone()));
                }
                g.1.push(file);
            }
        }
        groups
            .into_iter()
            .filter(|g| !g.1.is_empty())
            .map(|g| FileGroup::new(g.1))
            .collect()
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune row groups but DataFusion still applies them to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let mut source = ParquetSource::new(table_schema)
            .with_table_parquet_options(state.table_options().parquet.clone());
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(self.file_groups(state.config().target_partitions()))
            // Exact row counts from the footers: the planner builds hash joins on
            // the smaller side only when it knows the sizes (joins do not spill).
            .with_statistics(
                Statistics::new_unknown(&self.schema)
                    .with_num_rows(Precision::Exact(self.rows() as usize)),
            )
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_expr_adapter(Some(Arc::new(CaseInsensitiveAdapterFactory::with_renames(
                self.renames.clone(),
            ))))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

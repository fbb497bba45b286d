//! Case-insensitive column resolution for the Parquet scan: a file that says
//! `SEGMENT_ID` serves the table column `segment_id`; with Delta column mapping
//! (`name` mode) a file column `col-5f1c...` serves the column the log names.
//! Everything else (casts, missing columns as NULL) is DataFusion's default adapter.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

/// Resolves table columns against a file's columns ignoring case: the default
/// adapter runs over the file schema with lower-cased names, then every column
/// reference it produced gets the file's own spelling back (the scan looks
/// columns up by name in the real file schema).
#[derive(Debug, Default)]
pub struct CaseInsensitiveAdapterFactory {
    /// Lower-case physical name → table column, for Delta column mapping.
    renames: Arc<BTreeMap<String, String>>,
}

impl CaseInsensitiveAdapterFactory {
    /// Resolves a file column through `renames` (lower-case physical name → table
    /// column) before comparing names.
    pub fn with_renames(renames: Arc<BTreeMap<String, String>>) -> Self {
        CaseInsensitiveAdapterFactory { renames }
    }
}

impl PhysicalExprAdapterFactory for CaseInsensitiveAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        let lowered = Schema::new_with_metadata(
            physical_file_schema
                .fields()
                .iter()
                .map(|f| {
                    let lower = f.name().to_lowercase();
                    let name = self.renames.get(&lower).cloned().unwrap_or(lower);
                    Field::new(name, f.data_type().clone(), f.is_nullable())
                })
                .collect::<Vec<_>>(),
            physical_file_schema.metadata().clone(),
        );
        Ok(Arc::new(CaseInsensitiveAdapter {
            inner: DefaultPhysicalExprAdapter::new(logical_file_schema, Arc::new(lowered)),
            physical: physical_file_schema,
            renamed: !self.renames.is_empty(),
        }))
    }
}

#[derive(Debug)]
struct CaseInsensitiveAdapter {
    inner: DefaultPhysicalExprAdapter,
    physical: SchemaRef,
    /// Whether names may differ by more than case (column mapping).
    renamed: bool,
}

impl PhysicalExprAdapter for CaseInsensitiveAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        self.inner
            .rewrite(expr)?
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>()
                    && let Some(f) = self.physical.fields().get(c.index())
                    && f.name() != c.name()
                    && (self.renamed || f.name().eq_ignore_ascii_case(c.name()))
                {
                    return Ok(Transformed::yes(
                        Arc::new(Column::new(f.name(), c.index())) as _
                    ));
                }
                Ok(Transformed::no(e))
            })
            .data()
    }
}

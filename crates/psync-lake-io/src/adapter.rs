//! Case-insensitive column resolution for the Parquet scan: a file that says
//! `SEGMENT_ID` serves the table column `segment_id`. Everything else (casts,
//! missing columns as NULL) is DataFusion's default adapter.

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
pub struct CaseInsensitiveAdapterFactory;

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
                    Field::new(
                        f.name().to_lowercase(),
                        f.data_type().clone(),
                        f.is_nullable(),
                    )
                })
                .collect::<Vec<_>>(),
            physical_file_schema.metadata().clone(),
        );
        Ok(Arc::new(CaseInsensitiveAdapter {
            inner: DefaultPhysicalExprAdapter::new(logical_file_schema, Arc::new(lowered)),
            physical: physical_file_schema,
        }))
    }
}

#[derive(Debug)]
struct CaseInsensitiveAdapter {
    inner: DefaultPhysicalExprAdapter,
    physical: SchemaRef,
}

impl PhysicalExprAdapter for CaseInsensitiveAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        self.inner
            .rewrite(expr)?
            .transform(|e| {
                if let Some(c) = e.downcast_ref::<Column>()
                    && let Some(f) = self.physical.fields().get(c.index())
                    && f.name() != c.name()
                    && f.name().eq_ignore_ascii_case(c.name())
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

//! Case-insensitive column resolution for the Parquet scan: a file that says
//! `SEGMENT_ID` serves the table column `segment_id`. Everything else (casts,
//! missing columns as NULL) is DataFusion's default adapter.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};

/// Builds [`DefaultPhysicalExprAdapter`]s over the file schema with its column
/// names lower-cased. Column positions are unchanged, so the rewritten
/// expressions still index the file's real columns.
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
                .map(|f| Field::new(f.name().to_lowercase(), f.data_type().clone(), f.is_nullable()))
                .collect::<Vec<_>>(),
            physical_file_schema.metadata().clone(),
        );
        Ok(Arc::new(DefaultPhysicalExprAdapter::new(logical_file_schema, Arc::new(lowered))))
    }
}

//! The shell's `trait_completeness()`: for every trait column of `profile_traits`,
//! how many current (not merged-away) profiles have a value. It reads the trait
//! names from the view's schema, so the same question runs on any lake.
//!
//! ```text
//! profile_traits WHERE merged_to IS NULL
//!   ─► one aggregate: count(*), count(t1) .. count(tn)
//!   ─► unnest([names], [types], [counts]) ─► one row per trait
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::math::expr_fn::round;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::logical_expr::{cast, lit};
use datafusion::prelude::{DataFrame, SessionContext, col, ident, nullif};

use crate::on_demand::{LazyPlan, OnDemand};
use crate::views::profile_traits::{self, is_trait};

/// The function's name in SQL.
pub const NAME: &str = "trait_completeness";

/// The columns of `trait_completeness()`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("trait", DataType::Utf8, true),
        Field::new("data_type", DataType::Utf8, true),
        Field::new("profiles_with", DataType::Int64, true),
        Field::new("profiles", DataType::Int64, true),
        Field::new("pct", DataType::Float64, true),
    ]))
}

/// Registers `trait_completeness()` in `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udtf(NAME, Arc::new(CompletenessFunction));
}

#[derive(Debug)]
struct CompletenessFunction;

impl TableFunctionImpl for CompletenessFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{NAME}() takes no arguments"
            )));
        }
        Ok(Arc::new(OnDemand::new(schema(), CompletenessPlan)))
    }
}

struct CompletenessPlan;

impl fmt::Debug for CompletenessPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME}()")
    }
}

#[async_trait]
impl LazyPlan for CompletenessPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        let view = ctx.table(profile_traits::NAME).await?;
        let traits: Vec<(String, DataType)> = view
            .schema()
            .fields()
            .iter()
            .filter(|f| is_trait(&f.name().to_ascii_lowercase()))
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        if traits.is_empty() {
            return ctx.read_batch(RecordBatch::new_empty(schema()));
        }
        let mut counts = vec![count(lit(1)).alias("profiles")];
        counts.extend(
            traits
                .iter()
                .enumerate()
                .map(|(i, (name, _))| count(ident(name)).alias(format!("__with_{i}"))),
        );
        let names = traits.iter().map(|(n, _)| lit(n.clone())).collect();
        let types = traits.iter().map(|(_, t)| lit(t.to_string())).collect();
        let with = (0..traits.len())
            .map(|i| col(format!("__with_{i}")))
            .collect();
        let pct = round(vec![
            cast(col("profiles_with"), DataType::Float64) * lit(100.0)
                / cast(nullif(col("profiles"), lit(0_i64)), DataType::Float64),
            lit(1_i64),
        ]);
        view.filter(col("merged_to").is_null())?
            .aggregate(vec![], counts)?
            .select(vec![
                make_array(names).alias("trait"),
                make_array(types).alias("data_type"),
                make_array(with).alias("profiles_with"),
                col("profiles"),
            ])?
            .unnest_columns(&["trait", "data_type", "profiles_with"])?
            .select(vec![
                col("trait"),
                col("data_type"),
                col("profiles_with"),
                col("profiles"),
                pct.alias("pct"),
            ])
    }
}

//! The shell's `merge_tree('ID')`, `identifiers('ID')` and `trait_sources('ID')`:
//! the sections of `psync-lake explain` as table functions, planned when a
//! query scans them (the ID is looked up then, reading only its rows).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};
use psync_lake_io::Lake;

use super::{
    Explainer, explain_context, identifiers_schema, merge_tree_schema, trait_sources_schema,
    unknown,
};
use crate::inputs::Inputs;
use crate::on_demand::{LazyPlan, OnDemand};

/// Which section a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    MergeTree,
    Identifiers,
    TraitSources,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::MergeTree => "merge_tree",
            Section::Identifiers => "identifiers",
            Section::TraitSources => "trait_sources",
        }
    }
}

/// Registers the three functions over `lake` in `ctx`.
pub fn register(ctx: &SessionContext, lake: &Arc<Lake>) {
    for section in [
        Section::MergeTree,
        Section::Identifiers,
        Section::TraitSources,
    ] {
        ctx.register_udtf(
            section.name(),
            Arc::new(SectionFunction {
                section,
                lake: Arc::clone(lake),
            }),
        );
    }
}

struct SectionFunction {
    section: Section,
    lake: Arc<Lake>,
}

impl fmt::Debug for SectionFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}()", self.section.name())
    }
}

impl TableFunctionImpl for SectionFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let id = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::Utf8View(Some(s)), _)] => s.clone(),
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "{}() takes a segment_id or type:value as a string, e.g. {}('email:jane.kim@segment.com')",
                    self.section.name(),
                    self.section.name()
                )));
            }
        };
        let schema: SchemaRef = match self.section {
            Section::MergeTree => merge_tree_schema(),
            Section::Identifiers => identifiers_schema(),
            Section::TraitSources => {
                // The provenance columns are the lake's: read from its schema, no scan.
                let ctx = SessionContext::new();
                trait_sources_schema(&Inputs::new(&ctx, &self.lake))
            }
        };
        Ok(Arc::new(OnDemand::new(
            schema,
            SectionPlan {
                section: self.section,
                lake: Arc::clone(&self.lake),
                id,
            },
        )))
    }
}

/// One section of one ID, planned when scanned.
struct SectionPlan {
    section: Section,
    lake: Arc<Lake>,
    id: String,
}

impl fmt::Debug for SectionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}('{}')", self.section.name(), self.id)
    }
}

#[async_trait]
impl LazyPlan for SectionPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        let ctx = explain_context(ctx);
        let explainer = Explainer::new(&ctx, &self.lake);
        let plan = async {
            let Some(found) = explainer.find(&self.id).await? else {
                return Err(crate::CoreError::Config(unknown(&self.id, &self.lake)));
            };
            match self.section {
                Section::MergeTree => explainer.merge_tree(&found),
                Section::Identifiers => explainer.identifiers(&found).await,
                Section::TraitSources => explainer.trait_sources(&found).await,
            }
        };
        plan.await.map_err(|e| match e {
            crate::CoreError::DataFusion(e) => e,
            other => DataFusionError::Plan(other.to_string()),
        })
    }
}

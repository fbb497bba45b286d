//! The catalog of `psync-lake query`: every landed table by name, and the views,
//! read from a destination when it holds them, otherwise planned on demand with
//! the same view code `materialize` runs.
//!
//! ```text
//! <source>/<table>/   ─► LakeTable            (landed)
//! <dest>/<view>/      ─► LakeTable            (published)
//! neither             ─► ViewTable ─► views::plan_view at scan time (on demand)
//! id_graph_history    ─► published, or id_graph_history::plan at scan time
//! <source>/personas_<space>/<table>/ ─► <space>.<table>, and the space's views as
//!                       <space>.users, ... (published under <dest>/<space>/, or on demand)
//! resolved('<table>')  ─► an event table joined with `id_graph` (table function)
//! merge_tree('ID'), identifiers('ID'), trait_sources('ID') ─► `explain`'s sections
//! trait_completeness()  ─► every trait of profile_traits: how many profiles have one
//! ```

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::prelude::{DataFrame, SessionContext};
use psync_lake_io::Lake;
use tokio::sync::OnceCell;

use crate::inputs::{Inputs, Warnings};
use crate::on_demand::{LazyPlan, OnDemand};
use crate::views::id_graph::{self, IdGraph};
use crate::views::id_graph_history;
use crate::views::personas::PersonasTable;
use crate::views::resolved::ResolvedFunction;
use crate::views::{View, plan_view};

/// Where a catalog entry's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A landed table under the source.
    Landed,
    /// A view published under the destination.
    Published,
    /// A view computed from the landed tables when queried.
    OnDemand,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Landed => "landed",
            Origin::Published => "view (published)",
            Origin::OnDemand => "view (on demand)",
        })
    }
}

/// One registered table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name in SQL.
    pub name: String,
    /// Where its rows come from.
    pub origin: Origin,
    /// Row count when known without a scan (from Parquet footers).
    pub rows: Option<u64>,
    /// Its schema.
    pub schema: SchemaRef,
}

/// Registers the landed tables of `lake` and the views (from `published` when it
/// holds them) in `ctx`; returns what was registered, landed tables first.
pub fn register(
    ctx: &SessionContext,
    lake: Arc<Lake>,
    published: Option<&Lake>,
) -> Result<Vec<Entry>> {
    let mut entries = vec![];
    lake.register(ctx)?;
    for t in lake.tables() {
        entries.push(Entry {
            name: t.name().into(),
            origin: Origin::Landed,
            rows: Some(t.rows()),
            schema: t.schema(),
        });
    }
    for view in View::ALL {
        if let Some(t) = published.and_then(|p| p.table(view.name())) {
            ctx.register_table(view.name(), Arc::new(t.clone()))?;
            entries.push(Entry {
                name: view.name().into(),
                origin: Origin::Published,
                rows: Some(t.rows()),
                schema: t.schema(),
            });
        } else {
            let table = ViewTable::try_new(ctx, view, Arc::clone(&lake))?;
            entries.push(Entry {
                name: view.name().into(),
                origin: Origin::OnDemand,
                rows: None,
                schema: table.schema(),
            });
            ctx.register_table(view.name(), Arc::new(table))?;
        }
    }
    register_history(ctx, &lake, published, &mut entries)?;
    register_personas(ctx, &lake, published, &mut entries)?;
    ctx.register_udtf(
        "resolved",
        Arc::new(ResolvedFunction::new(Arc::clone(&lake))),
    );
    crate::explain::register(ctx, &lake);
    crate::completeness::register(ctx);
    Ok(entries)
}

/// Registers `id_graph_history`: published, or computed when first queried.
fn register_history(
    ctx: &SessionContext,
    lake: &Arc<Lake>,
    published: Option<&Lake>,
    entries: &mut Vec<Entry>,
) -> Result<()> {
    let name = id_graph_history::NAME;
    if let Some(t) = published.and_then(|p| p.table(name)) {
        ctx.register_table(name, Arc::new(t.clone()))?;
        entries.push(Entry {
            name: name.into(),
            origin: Origin::Published,
            rows: Some(t.rows()),
            schema: t.schema(),
        });
        return Ok(());
    }
    let table = OnDemand::new(
        id_graph_history::schema(),
        HistoryPlan {
            lake: Arc::clone(lake),
        },
    );
    entries.push(Entry {
        name: name.into(),
        origin: Origin::OnDemand,
        rows: None,
        schema: table.schema(),
    });
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// How the shell's on-demand `id_graph_history` is planned.
#[derive(Debug)]
struct HistoryPlan {
    lake: Arc<Lake>,
}

#[async_trait]
impl LazyPlan for HistoryPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        id_graph_history::plan(&Inputs::new(ctx, &self.lake)).await
    }
}

/// Registers the Personas views of every space of `lake` in the space's schema.
fn register_personas(
    ctx: &SessionContext,
    lake: &Arc<Lake>,
    published: Option<&Lake>,
    entries: &mut Vec<Entry>,
) -> Result<()> {
    for space in lake.spaces() {
        psync_lake_io::ensure_schema(ctx, &space)?;
        for view in View::DEFAULT.into_iter().filter(|v| v.is_personas()) {
            let name = format!("{space}.{view}");
            if let Some(t) = published.and_then(|p| p.table(&name)) {
                ctx.register_table(name.as_str(), Arc::new(t.clone()))?;
                entries.push(Entry {
                    name,
                    origin: Origin::Published,
                    rows: Some(t.rows()),
                    schema: t.schema(),
                });
            } else {
                let table = PersonasTable::try_new(ctx, Arc::clone(lake), &space, view)?;
                entries.push(Entry {
                    name: name.clone(),
                    origin: Origin::OnDemand,
                    rows: None,
                    schema: table.schema(),
                });
                ctx.register_table(name.as_str(), Arc::new(table))?;
            }
        }
    }
    Ok(())
}

/// A view computed from the landed tables when a query scans it. The id graph
/// is resolved once per catalog and reused by later queries.
pub type ViewTable = OnDemand<ViewPlan>;

/// How a [`ViewTable`] plans its view.
pub struct ViewPlan {
    view: View,
    lake: Arc<Lake>,
    graph: Arc<OnceCell<IdGraph>>,
}

impl fmt::Debug for ViewPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewPlan")
            .field("view", &self.view)
            .finish()
    }
}

impl ViewTable {
    /// The view over `lake`; its schema comes from planning it over an empty id graph.
    pub fn try_new(ctx: &SessionContext, view: View, lake: Arc<Lake>) -> Result<Self> {
        let inputs = Inputs::new(ctx, &lake);
        let empty = IdGraph::empty(ctx)?;
        let schema = plan_view(&inputs, view, &empty, &mut Warnings::default())?
            .schema()
            .inner()
            .clone();
        Ok(OnDemand::new(
            schema,
            ViewPlan {
                view,
                lake,
                graph: Arc::new(OnceCell::new()),
            },
        ))
    }
}

#[async_trait]
impl LazyPlan for ViewPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        let inputs = Inputs::new(ctx, &self.lake);
        let graph = self
            .graph
            .get_or_try_init(|| async { id_graph::build(&inputs, &mut Warnings::default()).await })
            .await?;
        plan_view(&inputs, self.view, graph, &mut Warnings::default())
    }
}

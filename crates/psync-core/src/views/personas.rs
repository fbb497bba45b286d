//! The Personas (Engage) views, one set per space (SPEC §3.4 and issue 7).
//!
//! Segment syncs a space into the warehouse schema `personas_<space>` (newer
//! workspaces: `engage_<space>`); in a lake that is the folder
//! `<root>/personas_<space>/<table>/`, listed as tables `personas_<space>.<table>`:
//!
//! | landed table | columns read |
//! | --- | --- |
//! | `identifies` | `user_id`, `timestamp`, `received_at`, `uuid_ts`, one column per audience (boolean) or computed trait |
//! | `audience_entered`, `audience_exited` | `user_id`, `audience_key`, `timestamp`, `received_at`, `uuid_ts` |
//! | `trait_computed` | `user_id`, `trait_key`, `timestamp`, `received_at`, `uuid_ts`, the trait's value in the column `trait_key` names |
//!
//! ```text
//! identifies ─► user_id ≠ NULL ─► last_seen_struct(every trait column, timestamp, received_at, uuid_ts)  = users
//! audience_entered (true) ∪ audience_exited (false)
//!   ─► per (user_id, audience_key): latest(entered, timestamp, received_at, uuid_ts),
//!      max(timestamp) of each kind                                                 = audience_membership
//! trait_computed ─► per user_id, per trait column c:
//!      latest(c, timestamp, received_at, uuid_ts) FILTER (trait_key = c)            = computed_traits
//! ```
//!
//! Events of a space are ordered by `timestamp`, then `received_at`, then
//! `uuid_ts` (a NULL lowest; on a full tie the greatest value wins, as for every
//! psync aggregate). A missing table reads as empty without a warning: a space
//! that sends no track calls has no `audience_entered`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{ExprFunctionExt, cast};
use datafusion::prelude::{
    DataFrame, Expr, SessionContext, col, get_field, ident, lit, lower, named_struct,
};
use psync_lake_io::Lake;
use psync_lake_io::schema::time_type;

use crate::inputs::{ColumnKind, Inputs, Needed, Warnings, id};
use crate::on_demand::{LazyPlan, OnDemand};
use crate::views::View;
use crate::views::profile_traits;

/// The `users` view's name (folder under `<dest>/<space>/`).
pub const USERS: &str = "users";
/// The `audience_membership` view's name.
pub const AUDIENCE_MEMBERSHIP: &str = "audience_membership";
/// The `computed_traits` view's name.
pub const COMPUTED_TRAITS: &str = "computed_traits";

/// A space's identify calls.
pub const IDENTIFIES: &str = "identifies";
/// A space's `Audience Entered` track calls.
pub const AUDIENCE_ENTERED: &str = "audience_entered";
/// A space's `Audience Exited` track calls.
pub const AUDIENCE_EXITED: &str = "audience_exited";
/// A space's `Trait Computed` track calls.
pub const TRAIT_COMPUTED: &str = "trait_computed";

const fn time(name: &'static str) -> Needed {
    Needed {
        name,
        kind: ColumnKind::Time,
        required: false,
    }
}

/// The order of a space's events, most significant first: `timestamp`, then
/// `received_at`, then `uuid_ts`.
pub const EVENT_ORDER: [Needed; 3] = [time("timestamp"), time("received_at"), time("uuid_ts")];

/// Columns of a space's tables that are never traits, besides those of
/// [`profile_traits::NOT_TRAITS`], `context_*` and `_*`.
pub const NOT_TRAITS: &[&str] = &[
    "event",
    "event_text",
    "event_id",
    "audience_key",
    "trait_key",
    "loaded_at",
    "message_id",
];

/// Whether a (lower-case) column of a space's table holds a trait or audience.
pub fn is_trait(name: &str) -> bool {
    profile_traits::is_trait(name) && !NOT_TRAITS.contains(&name)
}

/// `<space>.<table>`: the name the lake lists a space's table under.
pub fn table_of(space: &str, table: &str) -> String {
    format!("{space}.{table}")
}

/// The folder of a space's view under the destination: `<space>/<view>/`.
pub fn folder(space: &str, view: View) -> [String; 2] {
    [space.to_string(), view.name().to_string()]
}

fn order_key() -> Vec<Expr> {
    EVENT_ORDER.iter().map(|n| col(n.name)).collect()
}

/// The trait columns of a landed table, in landed order, with their types.
fn traits_of(inputs: &Inputs<'_>, table: &str) -> Vec<(String, DataType)> {
    inputs.columns_where(table, is_trait)
}

/// `table` projected to `needed` (typed) plus `extra` columns as landed; `None`
/// when the lake has no such table.
fn read(
    inputs: &Inputs<'_>,
    table: &str,
    needed: &[Needed],
    extra: &[String],
) -> Result<Option<DataFrame>> {
    if inputs.lake().table(table).is_none() {
        return Ok(None);
    }
    // The table exists, so `select_with` has nothing to warn about.
    let df = inputs.select_with(table, needed, extra, &mut Warnings::default())?;
    Ok(Some(df))
}

/// An empty frame of `fields`.
fn empty(ctx: &SessionContext, fields: Vec<Field>) -> Result<DataFrame> {
    ctx.read_table(Arc::new(EmptyTable::new(Arc::new(Schema::new(fields)))))
}

/// Plans `view` (one of the Personas views) for `space` (unsorted).
pub fn plan(inputs: &Inputs<'_>, space: &str, view: View) -> Result<DataFrame> {
    match view {
        View::Users => users(inputs, space),
        View::AudienceMembership => audience_membership(inputs, space),
        View::ComputedTraits => computed_traits(inputs, space),
        other => Err(DataFusionError::Internal(format!(
            "{other} is not a Personas view"
        ))),
    }
}

/// `users` (SPEC §3.4): one row per non-NULL `user_id` of the space's
/// `identifies`, every trait column its last non-NULL value.
pub fn users(inputs: &Inputs<'_>, space: &str) -> Result<DataFrame> {
    let table = table_of(space, IDENTIFIES);
    let traits = traits_of(inputs, &table);
    let mut needed = vec![id("user_id")];
    needed.extend(EVENT_ORDER);
    let names: Vec<String> = traits.iter().map(|(t, _)| t.clone()).collect();
    let Some(rows) = read(inputs, &table, &needed, &names)? else {
        return empty(
            inputs.ctx(),
            vec![Field::new("user_id", DataType::Utf8, true)],
        );
    };
    let rows = rows.filter(col("user_id").is_not_null())?;
    if traits.is_empty() {
        return rows.select(vec![col("user_id")])?.distinct();
    }
    let mut fields = Vec::with_capacity(traits.len() * 2);
    for (t, _) in &traits {
        fields.push(lit(t.as_str()));
        fields.push(ident(t));
    }
    let mut args = vec![named_struct(fields)];
    args.extend(order_key());
    let mut out = vec![col("user_id")];
    out.extend(
        traits
            .iter()
            .map(|(t, _)| get_field(col("t"), t.as_str()).alias(t)),
    );
    rows.aggregate(
        vec![col("user_id")],
        vec![psync_functions::last_seen_struct().call(args).alias("t")],
    )?
    .select(out)
}

/// `audience_membership`: one row per (`user_id`, `audience_key`): whether the
/// user is in the audience now (its latest enter or exit event decides), when
/// it last entered and when it last exited.
pub fn audience_membership(inputs: &Inputs<'_>, space: &str) -> Result<DataFrame> {
    let mut needed = vec![id("user_id")];
    needed.extend(EVENT_ORDER);
    let key = vec!["audience_key".to_string()];
    let mut parts = vec![];
    for (table, entered) in [(AUDIENCE_ENTERED, true), (AUDIENCE_EXITED, false)] {
        let table = table_of(space, table);
        let has_key = inputs
            .lake()
            .schema_of(&table)
            .is_some_and(|s| s.field_with_name("audience_key").is_ok());
        if !has_key {
            continue;
        }
        if let Some(df) = read(inputs, &table, &needed, &key)? {
            let mut cols = vec![
                col("user_id"),
                cast(ident("audience_key"), DataType::Utf8).alias("audience_key"),
            ];
            cols.extend(order_key());
            cols.push(lit(entered).alias("entered"));
            parts.push(df.select(cols)?);
        }
    }
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return empty(
            inputs.ctx(),
            vec![
                Field::new("user_id", DataType::Utf8, true),
                Field::new("audience_key", DataType::Utf8, true),
                Field::new("in_audience", DataType::Boolean, true),
                Field::new("entered_at", time_type(), true),
                Field::new("exited_at", time_type(), true),
            ],
        );
    };
    let events = parts.try_fold(first, |all, next| all.union(next))?.filter(
        col("user_id")
            .is_not_null()
            .and(col("audience_key").is_not_null()),
    )?;
    let mut latest_args = vec![col("entered")];
    latest_args.extend(order_key());
    events.aggregate(
        vec![col("user_id"), col("audience_key")],
        vec![
            psync_functions::latest()
                .call(latest_args)
                .alias("in_audience"),
            max(col("timestamp"))
                .filter(col("entered"))
                .build()?
                .alias("entered_at"),
            max(col("timestamp"))
                .filter(col("entered").is_false())
                .build()?
                .alias("exited_at"),
        ],
    )
}

/// `computed_traits`: one row per `user_id` of the space's `trait_computed`,
/// one column per trait column of that table, each the value of the latest
/// row whose `trait_key` names it (a NULL there is the trait's value now).
pub fn computed_traits(inputs: &Inputs<'_>, space: &str) -> Result<DataFrame> {
    let table = table_of(space, TRAIT_COMPUTED);
    let traits = traits_of(inputs, &table);
    let mut needed = vec![id("user_id")];
    needed.extend(EVENT_ORDER);
    let has_key = inputs
        .lake()
        .schema_of(&table)
        .is_some_and(|s| s.field_with_name("trait_key").is_ok());
    let mut extra: Vec<String> = traits.iter().map(|(t, _)| t.clone()).collect();
    extra.push("trait_key".into());
    let rows = if has_key {
        read(inputs, &table, &needed, &extra)?
    } else {
        None
    };
    let Some(rows) = rows else {
        return empty(
            inputs.ctx(),
            vec![Field::new("user_id", DataType::Utf8, true)],
        );
    };
    let rows = rows
        .filter(
            col("user_id")
                .is_not_null()
                .and(col("trait_key").is_not_null()),
        )?
        // Column names are lower-case in the lake; the keys may not be.
        .with_column("trait_key", lower(cast(ident("trait_key"), DataType::Utf8)))?;
    if traits.is_empty() {
        return rows.select(vec![col("user_id")])?.distinct();
    }
    let mut aggregates = vec![];
    for (t, _) in &traits {
        let mut args = vec![ident(t)];
        args.extend(order_key());
        aggregates.push(
            psync_functions::latest()
                .call(args)
                .filter(col("trait_key").eq(lit(t.as_str())))
                .build()?
                .alias(t),
        );
    }
    rows.aggregate(vec![col("user_id")], aggregates)
}

/// A Personas view of one space in the SQL shell, computed from the landed
/// tables when a query scans it (the plans only read landed tables: no id graph).
pub type PersonasTable = OnDemand<PersonasPlan>;

/// How a [`PersonasTable`] plans its view.
pub struct PersonasPlan {
    lake: Arc<Lake>,
    space: String,
    view: View,
}

impl fmt::Debug for PersonasPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonasPlan")
            .field("space", &self.space)
            .field("view", &self.view)
            .finish()
    }
}

impl PersonasTable {
    /// `view` of `space` over `lake`; its schema comes from planning it.
    pub fn try_new(ctx: &SessionContext, lake: Arc<Lake>, space: &str, view: View) -> Result<Self> {
        let schema = plan(&Inputs::new(ctx, &lake), space, view)?
            .schema()
            .inner()
            .clone();
        Ok(OnDemand::new(
            schema,
            PersonasPlan {
                lake,
                space: space.to_string(),
                view,
            },
        ))
    }
}

#[async_trait]
impl LazyPlan for PersonasPlan {
    async fn plan(&self, ctx: &SessionContext) -> Result<DataFrame> {
        plan(&Inputs::new(ctx, &self.lake), &self.space, self.view)
    }
}

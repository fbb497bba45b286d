//! The psync-lake engine: the Profiles Sync views as DataFusion plans and the
//! run that publishes them.
//!
//! - [`session`]: the `SessionContext` every command uses.
//! - [`inputs`]: landed tables as the views read them.
//! - [`views`]: one module per view.
//! - [`lease`]: the renewed claim a run holds on its destination.
//! - [`stop`]: a signal's request that a run stop.
//! - [`status`]: what a destination holds: last run, views, lease, state.
//! - [`run`]: a whole run, a module per stage (plan, execute, stage, publish) and mode;
//!   `materialize` and `publish` are its old paths.
//! - [`incremental`]: what an incremental run saves and reads back.
//! - [`catalog`]: the tables and views of the SQL shell.
//! - [`sql`]: the session and statements of `query` and the Python package.
//! - [`verify`]: published views against a full recomputation.
//! - [`extras`]: the Personas and `_resolved` views and the health report of a run.
//! - [`health`]: the identity health tables.
//! - [`blame`]: naming the landed file behind a query error.
//! - [`parse`]: sizes, durations and instants given as text.
//! - [`explain`]: one person: its merge tree, identifiers and trait sources.

pub mod blame;
pub mod catalog;
pub mod completeness;
pub mod error;
pub mod explain;
pub mod extras;
pub mod functions;
pub mod health;
mod host;
pub mod incremental;
pub mod inputs;
pub mod lease;
pub mod on_demand;
pub mod parse;
pub mod run;
pub mod session;
pub mod sql;
pub mod status;
pub mod stop;
pub mod verify;
pub mod views;

pub use error::{CoreError, Result};
pub use lease::LeaseOptions;
/// The run under its first name: `psync_core::materialize::...` paths keep working.
pub use run as materialize;
pub use run::publish;
pub use run::{MaterializeOptions, OnChange, RunMode, RunReport, materialize};
pub use session::{EngineOptions, locate, new_context, views_context};
pub use stop::Stop;
pub use views::View;

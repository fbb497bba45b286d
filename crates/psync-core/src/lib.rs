//! The psync-lake engine: the Profiles Sync views as DataFusion plans and the
//! run that publishes them.
//!
//! - [`session`]: the `SessionContext` every command uses.
//! - [`inputs`]: landed tables as the views read them.
//! - [`views`]: one module per view.
//! - [`publish`]: writing views so readers never see a partial one.
//! - [`materialize`]: a whole run.
//! - [`catalog`]: the tables and views of the SQL shell.

pub mod catalog;
pub mod error;
pub mod functions;
pub mod inputs;
pub mod materialize;
pub mod publish;
pub mod session;
pub mod views;

pub use error::{CoreError, Result};
pub use materialize::{MaterializeOptions, RunReport, materialize};
pub use session::{EngineOptions, locate, new_context};
pub use views::View;

//! Reading a Segment Profiles Sync lake (SPEC §2): one folder per landed table,
//! Parquet files nested and of drifting schemas, column names in any case.
//!
//! - [`Location`]: a root in an object store.
//! - [`LocalStore`]: the local file system, with conditional overwrites.
//! - [`azure`]: Azure URLs and settings, and [`AzureStore`] (whole-object renames).
//! - [`Lake`]: the tables under a root, listed and footer-read once.
//! - [`LakeTable`]: a table as a DataFusion `TableProvider` with a normalised schema.
//! - [`delta`]: Delta tables, read at a version of their transaction log.
//! - [`delta_out`]: views published as Delta tables, one version per run.
//! - [`schema`]: the normalisation rules.

mod adapter;
pub mod azure;
mod catalog;
pub mod delta;
pub mod delta_out;
mod error;
mod local;
mod location;
pub mod schema;
mod table;

pub use adapter::CaseInsensitiveAdapterFactory;
pub use azure::{AzureOptions, AzureStore};
pub use catalog::{Lake, SPACE_PREFIXES, ensure_schema, is_space};
pub use delta::DeltaAt;
pub use error::{LakeError, Result, is_not_found, root_message};
pub use local::LocalStore;
pub use location::{Location, StoreOptions};
pub use table::{LakeFile, LakeTable};

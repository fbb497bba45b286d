//! `psync_lake`: psync-lake as a Python module. It runs the CLI's core code
//! (`psync-core`): [`lake::Lake`] opens a lake as `query` does and runs
//! `materialize`, `verify` and `explain`; results are Arrow data handed over
//! through the Arrow PyCapsule interface ([`result::QueryResult`]).
//!
//! ```text
//! lake     Lake: sql, tables, materialize, verify, explain, register
//! result   QueryResult: __arrow_c_stream__ (pyarrow, Polars, DuckDB)
//! ffi      register(ctx): tables and UDAFs for datafusion-python
//! wait     the engine's tasks, the GIL released, stopped by Ctrl-C
//! options  keyword arguments named and parsed as the CLI's flags
//! errors   PsyncError and its subclasses
//! ```

mod errors;
mod ffi;
mod lake;
mod options;
mod result;
mod stream;
mod wait;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Writes a deterministic synthetic lake under `dest` (the CLI's `generate`);
/// returns `{"tables": [{"table", "rows", "files"}], "merges", "dropped_recursive"}`.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // one argument per keyword (CLI flag)
#[pyo3(signature = (dest, *, profiles=1000, traits=8, seed=1, rows_per_file=500_000, events=true, personas=true))]
fn generate<'py>(
    py: Python<'py>,
    dest: PathBuf,
    profiles: usize,
    traits: usize,
    seed: u64,
    rows_per_file: usize,
    events: bool,
    personas: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = psync_generate::GenOptions {
        profiles,
        traits,
        seed,
        rows_per_file,
        events,
        personas,
        ..Default::default()
    };
    let summary = py
        .detach(|| psync_generate::generate(&dest, &opts))
        .map_err(|e| {
            let e =
                anyhow::Error::new(e).context(format!("generating a lake in {}", dest.display()));
            errors::to_py(&e)
        })?;
    let tables = PyList::empty(py);
    for (table, rows, files) in &summary.tables {
        let t = PyDict::new(py);
        t.set_item("table", table)?;
        t.set_item("rows", rows)?;
        t.set_item("files", files)?;
        tables.append(t)?;
    }
    let out = PyDict::new(py);
    out.set_item("tables", tables)?;
    out.set_item("merges", summary.merges)?;
    out.set_item("dropped_recursive", summary.dropped_recursive)?;
    Ok(out)
}

/// Logs on stderr at the level of `PSYNC_LOG` (as the CLI's `--log`; warnings
/// by default), SAS signatures redacted.
fn init_logging() {
    let level = std::env::var("PSYNC_LOG").unwrap_or_else(|_| "warn".into());
    let filter = if level.contains("delta_kernel") {
        level
    } else {
        format!("{level},delta_kernel=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Another extension may have installed a subscriber already: then it logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| psync_lake_io::azure::RedactingStderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// psync-lake: current-state views of a Segment Profiles Sync lake.
#[pymodule]
fn psync_lake(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<lake::Lake>()?;
    m.add_class::<result::QueryResult>()?;
    m.add_class::<stream::QueryStream>()?;
    m.add_class::<ffi::TableExport>()?;
    m.add_class::<ffi::AggregateExport>()?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add("PsyncError", py.get_type::<errors::PsyncError>())?;
    m.add("LakeError", py.get_type::<errors::LakeError>())?;
    m.add("QueryError", py.get_type::<errors::QueryError>())?;
    m.add("PublishError", py.get_type::<errors::PublishError>())?;
    m.add("LockedError", py.get_type::<errors::LockedError>())?;
    m.add("ConfigError", py.get_type::<errors::ConfigError>())?;
    m.add("UnknownIdError", py.get_type::<errors::UnknownIdError>())?;
    Ok(())
}

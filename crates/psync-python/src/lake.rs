//! `Lake`: one lake (and optionally a destination of `materialize`) opened as the
//! CLI's `query` opens it; `materialize`, `verify` and `explain` run the CLI's
//! core code with keyword arguments named as its flags.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use datafusion::arrow::datatypes::Schema;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContextProvider;
use datafusion::physical_plan::{
    EmptyRecordBatchStream, SendableRecordBatchStream, collect, execute_stream,
};
use datafusion::sql::parser::Statement;
use psync_core::explain::{Explained, to_json};
use psync_core::materialize::{MaterializeOptions, NoProgress};
use psync_core::publish::OutputFormat;
use psync_core::sql::LakeSession;
use psync_core::verify::{VerifyOptions, verify};
use psync_core::{EngineOptions, LeaseOptions, OnChange, RunMode, Stop, View};
use psync_lake_io::DeltaAt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tokio::runtime::Runtime;

use crate::errors::{Query, QueryError, UnknownIdError, config, to_py};
use crate::ffi::{AggregateExport, TableExport};
use crate::options;
use crate::result::QueryResult;
use crate::stream::QueryStream;
use crate::wait::{OnSignal, wait};

/// A Profiles Sync lake: its landed tables by name, and the views (from `dest`
/// when it holds them, otherwise computed from the lake when queried).
///
/// `Lake(source, dest=None, *, threads=None, memory_limit=None,
/// source_version=None, source_timestamp=None, **storage_options)`; the storage
/// options are the CLI's store flags (`s3_endpoint`, `s3_region`,
/// `s3_allow_http`, `azure_account`, ...), read after the AWS_* / AZURE_* environment.
#[pyclass(module = "psync_lake", frozen)]
pub struct Lake {
    rt: Arc<Runtime>,
    source: String,
    dest: Option<String>,
    at: DeltaAt,
    engine: EngineOptions,
    /// Opened again after `materialize`, so that queries see the new views.
    session: RwLock<Arc<LakeSession>>,
    /// The sessions whose tables `register` handed out: their capsules hold
    /// them weakly, so they live as long as the lake.
    exported: Mutex<Vec<Arc<dyn TaskContextProvider + Send + Sync>>>,
}

impl Lake {
    /// The session, and the statements of `query` with `params` as its variables.
    fn statements(
        &self,
        query: &str,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(Arc<LakeSession>, Vec<Statement>)> {
        let mut vars = psync_core::sql::params::Vars::new();
        if let Some(p) = params {
            for (k, v) in p.iter() {
                vars.insert(k.extract()?, v.str()?.to_cow()?.into_owned());
            }
        }
        let session = self.session();
        let statements = psync_core::sql::statements(&session.ctx, query, &vars, &self.engine)
            .map_err(|e| QueryError::new_err(psync_core::error::one_line(&e)))?;
        Ok((session, statements))
    }

    fn session(&self) -> Arc<LakeSession> {
        match self.session.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn reopen(&self, py: Python<'_>) -> PyResult<()> {
        let session = open(
            py,
            &self.rt,
            &self.source,
            self.dest.as_deref(),
            &self.at,
            &self.engine,
        )?;
        match self.session.write() {
            Ok(mut s) => *s = Arc::new(session),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(session),
        }
        Ok(())
    }

    /// The engine options of one call: the lake's, with its overrides.
    fn engine_with(
        &self,
        threads: Option<usize>,
        memory_limit: Option<&Bound<'_, PyAny>>,
        spill_dir: Option<std::path::PathBuf>,
        no_spill: bool,
        batch_size: Option<usize>,
    ) -> PyResult<EngineOptions> {
        Ok(EngineOptions {
            threads: threads.or(self.engine.threads),
            memory_limit: options::size(memory_limit)?.or(self.engine.memory_limit),
            batch_size: batch_size.or(self.engine.batch_size),
            spill_dir: spill_dir.or_else(|| self.engine.spill_dir.clone()),
            no_spill: no_spill || self.engine.no_spill,
            store: self.engine.store.clone(),
        })
    }

    fn dest_or(&self, dest: Option<String>, call: &str) -> PyResult<String> {
        dest.or_else(|| self.dest.clone()).ok_or_else(|| {
            config(format!(
                "{call} needs a destination: Lake(source, dest=...) or {call}(dest=...)"
            ))
        })
    }
}

/// Opens the session `query` opens, the GIL released.
fn open(
    py: Python<'_>,
    rt: &Runtime,
    source: &str,
    dest: Option<&str>,
    at: &DeltaAt,
    engine: &EngineOptions,
) -> PyResult<LakeSession> {
    // A local destination not written yet (the first `materialize` makes it)
    // holds no views: they are computed on demand until then.
    let dest = dest.filter(|d| !is_missing_folder(d));
    let (source, dest, at, engine) = (
        source.to_string(),
        dest.map(str::to_string),
        at.clone(),
        engine.clone(),
    );
    let work =
        async move { Ok(psync_core::sql::open(&source, dest.as_deref(), &at, &engine).await?) };
    wait(py, rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))
}

/// Whether `location` is a local folder that does not exist.
fn is_missing_folder(location: &str) -> bool {
    let path = location.strip_prefix("file://").unwrap_or(location);
    !path.contains("://") && !std::path::Path::new(path).exists()
}

/// A JSON value (a run record, a comparison) as Python objects.
fn json_to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| config(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

#[pymethods]
impl Lake {
    #[new]
    #[allow(clippy::too_many_arguments)] // one argument per keyword (CLI flag)
    #[pyo3(signature = (source, dest=None, *, threads=None, memory_limit=None, source_version=None, source_timestamp=None, **storage_options))]
    fn new(
        py: Python<'_>,
        source: String,
        dest: Option<String>,
        threads: Option<usize>,
        memory_limit: Option<&Bound<'_, PyAny>>,
        source_version: Option<u64>,
        source_timestamp: Option<String>,
        storage_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let engine = EngineOptions {
            threads,
            memory_limit: options::size(memory_limit)?,
            store: options::store_options(storage_options)?,
            ..Default::default()
        };
        let at = options::source_at(source_version, source_timestamp.as_deref())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(engine.threads())
            .thread_name("psync-lake")
            .enable_all()
            .build()
            .map_err(|e| to_py(&anyhow::Error::new(e).context("starting the runtime")))?;
        let session = open(py, &rt, &source, dest.as_deref(), &at, &engine)?;
        Ok(Lake {
            rt: Arc::new(rt),
            source,
            dest,
            at,
            engine,
            session: RwLock::new(Arc::new(session)),
            exported: Mutex::new(vec![]),
        })
    }

    /// The lake's root, as given.
    #[getter]
    fn source(&self) -> &str {
        &self.source
    }

    /// The destination of `materialize`, as given (or `None`).
    #[getter]
    fn dest(&self) -> Option<&str> {
        self.dest.as_deref()
    }

    /// Runs the SQL statements of `query` (the CLI's `query -c`): `:name`, `$name`
    /// and `:"name"` are the values of `params` (as `-v name=value`). Returns the
    /// last statement's rows; the GIL is released while it runs, and Ctrl-C stops it.
    #[pyo3(signature = (query, params=None))]
    fn sql(
        &self,
        py: Python<'_>,
        query: &str,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<QueryResult> {
        let (session, statements) = self.statements(query, params)?;
        let work = async move {
            let ctx = &session.ctx;
            let mut last = (Arc::new(Schema::empty()), vec![]);
            for statement in statements {
                let run = async {
                    let plan = psync_core::sql::physical_plan(ctx, statement).await?;
                    let schema = plan.schema();
                    Ok::<_, DataFusionError>((schema, collect(plan, ctx.task_ctx()).await?))
                };
                last = run
                    .await
                    .map_err(|e| Query(psync_core::sql::query_error(&e)))?;
            }
            Ok(last)
        };
        let (schema, batches) =
            wait(py, &self.rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))?;
        Ok(QueryResult::new(schema, batches))
    }

    /// As [`Lake::sql`], but the last statement's rows come as they are computed,
    /// read once (see `QueryStream`): for results larger than memory, or to start
    /// on the first rows early. The statements before it run to the end first.
    #[pyo3(signature = (query, params=None))]
    fn stream(
        &self,
        py: Python<'_>,
        query: &str,
        params: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<QueryStream> {
        let (session, statements) = self.statements(query, params)?;
        let work = async move {
            let ctx = &session.ctx;
            let n = statements.len();
            let mut last: SendableRecordBatchStream =
                Box::pin(EmptyRecordBatchStream::new(Arc::new(Schema::empty())));
            for (i, statement) in statements.into_iter().enumerate() {
                let run = async {
                    let plan = psync_core::sql::physical_plan(ctx, statement).await?;
                    if i + 1 < n {
                        collect(plan, ctx.task_ctx()).await?;
                        return Ok(None);
                    }
                    execute_stream(plan, ctx.task_ctx()).map(Some)
                };
                let stream = run
                    .await
                    .map_err(|e: DataFusionError| Query(psync_core::sql::query_error(&e)))?;
                if let Some(s) = stream {
                    last = s;
                }
            }
            Ok(last)
        };
        let stream = wait(py, &self.rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))?;
        Ok(QueryStream::start(Arc::clone(&self.rt), stream))
    }

    /// The tables and views a query can name, landed tables first: a list of
    /// `{"name", "origin", "rows"}` (`rows` when known without a scan).
    fn tables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in &self.session().entries {
            let d = PyDict::new(py);
            d.set_item("name", &e.name)?;
            d.set_item("origin", e.origin.to_string())?;
            d.set_item("rows", e.rows)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Computes the views and publishes them under the destination (the CLI's
    /// `materialize`; each keyword is its flag). Returns the run record as a dict
    /// (what `materialize --json` prints), or with `explain=True` the views'
    /// physical plans as text. The GIL is released while it runs; Ctrl-C stops
    /// the run as SIGINT stops the CLI's (KeyboardInterrupt says what it published).
    #[pyo3(signature = (*, views=None, mode="full", as_of=None, format="parquet", on_change="rebuild",
        no_health=false, explain=false, lease_timeout=None, break_lock=false, dest=None,
        source_version=None, source_timestamp=None, threads=None, memory_limit=None,
        spill_dir=None, no_spill=false, batch_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn materialize<'py>(
        &self,
        py: Python<'py>,
        views: Option<&Bound<'py, PyAny>>,
        mode: &str,
        as_of: Option<&str>,
        format: &str,
        on_change: &str,
        no_health: bool,
        explain: bool,
        lease_timeout: Option<&Bound<'py, PyAny>>,
        break_lock: bool,
        dest: Option<String>,
        source_version: Option<u64>,
        source_timestamp: Option<&str>,
        threads: Option<usize>,
        memory_limit: Option<&Bound<'py, PyAny>>,
        spill_dir: Option<std::path::PathBuf>,
        no_spill: bool,
        batch_size: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dest = self.dest_or(dest, "materialize")?;
        let on_change = match options::choice("on_change", on_change, &["rebuild", "fail"])? {
            "fail" => OnChange::Fail,
            _ => OnChange::Rebuild,
        };
        let mode = match (
            as_of,
            options::choice("mode", mode, &["full", "incremental"])?,
        ) {
            (Some(t), "full") => RunMode::AsOf(options::instant(t)?),
            (Some(_), _) => {
                return Err(config(
                    "as_of is a full run: it cannot be given with mode='incremental'",
                ));
            }
            (None, "incremental") => RunMode::Incremental { on_change },
            (None, _) => RunMode::Full,
        };
        let format = match options::choice("format", format, &["parquet", "delta"])? {
            "delta" => OutputFormat::Delta,
            _ => OutputFormat::Parquet,
        };
        let source_at = match (source_version, source_timestamp) {
            (None, None) => self.at.clone(),
            (v, t) => options::source_at(v, t)?,
        };
        let stop = Stop::new();
        let opts = MaterializeOptions {
            source: self.source.clone(),
            dest: dest.clone(),
            views: options::views(views, &View::DEFAULT)?,
            engine: self.engine_with(threads, memory_limit, spill_dir, no_spill, batch_size)?,
            lease: LeaseOptions {
                timeout: match lease_timeout {
                    Some(t) => options::duration(t)?,
                    None => Duration::from_secs(60),
                },
                break_lock,
            },
            stop: stop.clone(),
            mode,
            health: !no_health,
            source_at,
            format,
        };
        if explain {
            let work = async move {
                psync_core::materialize::explain(&opts)
                    .await
                    .context("planning the views")
            };
            let text = wait(py, &self.rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))?;
            return Ok(text.into_pyobject(py)?.into_any());
        }
        let what = format!("materialize {} -> {dest}", self.source);
        let work = async move {
            psync_core::materialize(&opts, &NoProgress)
                .await
                .context(what)
        };
        let report = wait(py, &self.rt, work, OnSignal::Stop(stop))?.map_err(|e| to_py(&e))?;
        if self.dest.as_deref() == Some(dest.as_str()) {
            self.reopen(py)?;
        }
        json_to_py(py, &report)
    }

    /// Recomputes the views in full and compares them with the published ones
    /// (the CLI's `verify --json`): a list with one dict per view; its `ok`
    /// is whether they agree.
    #[pyo3(signature = (*, views=None, dest=None, threads=None, memory_limit=None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        views: Option<&Bound<'py, PyAny>>,
        dest: Option<String>,
        threads: Option<usize>,
        memory_limit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dest = self.dest_or(dest, "verify")?;
        let opts = VerifyOptions {
            source: self.source.clone(),
            dest: dest.clone(),
            views: options::views(views, &View::ALL)?,
            engine: self.engine_with(threads, memory_limit, None, false, None)?,
            source_at: self.at.clone(),
        };
        let what = format!("verify {} against {dest}", self.source);
        let work = async move { verify(&opts).await.context(what) };
        let checks = wait(py, &self.rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))?;
        let list = json_to_py(py, &checks)?;
        for (item, check) in list.try_iter()?.zip(&checks) {
            item?.set_item("ok", check.ok())?;
        }
        Ok(list)
    }

    /// One person (the CLI's `explain --json`): whom `id` (a segment_id, or
    /// type:value such as `email:jane.kim@segment.com`) resolves to, its merge
    /// tree, identifiers and the update row behind each trait, as a dict. An ID
    /// the lake does not know raises UnknownIdError.
    fn explain<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let (source, dest, engine) = (self.source.clone(), self.dest.clone(), self.engine.clone());
        let work = async move {
            match psync_core::explain::explain(&source, dest.as_deref(), &id, &engine).await? {
                Explained::Found(e) => Ok(Ok(to_json(&e)?)),
                Explained::Unknown(line) => Ok(Err(line)),
            }
        };
        match wait(py, &self.rt, work, OnSignal::Abort)?.map_err(|e| to_py(&e))? {
            Ok(value) => json_to_py(py, &value),
            Err(line) => Err(UnknownIdError::new_err(line)),
        }
    }

    /// Registers the lake's tables and views (those of Personas spaces aside:
    /// they live in schemas of their own) and psync's aggregate functions
    /// (`last_seen`, `latest`, ...) in a datafusion-python `SessionContext`;
    /// returns the table names. Their scans run in this lake's engine: keep the
    /// lake alive while `ctx` uses them.
    fn register(&self, py: Python<'_>, ctx: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let datafusion = py.import("datafusion")?;
        let session = self.session();
        let task_ctx: Arc<dyn TaskContextProvider + Send + Sync> = Arc::new(session.ctx.clone());
        match self.exported.lock() {
            Ok(mut v) => v.push(Arc::clone(&task_ctx)),
            Err(poisoned) => poisoned.into_inner().push(Arc::clone(&task_ctx)),
        }
        let names: Vec<String> = session
            .entries
            .iter()
            .map(|e| e.name.clone())
            .filter(|n| !n.contains('.'))
            .collect();
        let lookup = {
            let (session, names) = (Arc::clone(&session), names.clone());
            async move {
                let mut providers = vec![];
                for n in &names {
                    providers.push(session.ctx.table_provider(n.as_str()).await?);
                }
                Ok(providers)
            }
        };
        let providers = wait(py, &self.rt, lookup, OnSignal::Abort)?.map_err(|e| to_py(&e))?;
        for (name, provider) in names.iter().zip(providers) {
            let export = TableExport::new(
                provider,
                &session.ctx,
                Arc::clone(&task_ctx),
                self.rt.handle().clone(),
            );
            ctx.call_method1("register_table", (name, export))?;
        }
        for udaf in psync_functions::all() {
            let name = udaf.name().to_string();
            let f = datafusion
                .getattr("AggregateUDF")?
                .call1((name, AggregateExport::new(udaf)))?;
            ctx.call_method1("register_udaf", (f,))?;
        }
        Ok(names)
    }
}

//! The one way the product builds a [`SessionContext`]: thread count, memory pool
//! and spilling, plain (non-view) strings, and every psync function registered.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use psync_functions::SinglePhaseWideAggregates;
use psync_lake_io::{LakeError, Location, StoreOptions};

use crate::functions::sha1_hex;

/// Engine settings shared by every command.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Worker threads and partitions; all cores when `None`.
    pub threads: Option<usize>,
    /// Memory the query engine may use before it spills to disk; unbounded when `None`.
    pub memory_limit: Option<usize>,
    /// Rows per batch; DataFusion's default when `None`.
    pub batch_size: Option<usize>,
    /// Where spill files go; the system temp directory when `None`.
    pub spill_dir: Option<PathBuf>,
    /// Never spill: a query that outgrows the memory limit fails instead.
    pub no_spill: bool,
    /// Settings of remote stores (S3).
    pub store: StoreOptions,
}

impl EngineOptions {
    /// The number of threads these options resolve to.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// Builds a context with `options`, psync's functions registered.
pub fn new_context(options: &EngineOptions) -> Result<SessionContext> {
    let mut config = SessionConfig::new().with_target_partitions(options.threads());
    if let Some(b) = options.batch_size {
        config = config.with_batch_size(b.max(1));
    }
    let opts = config.options_mut();
    // Strings stay Utf8 end to end: views written out must be plain UTF-8, and
    // Utf8View values would drag whole buffers into aggregation state.
    opts.execution.parquet.schema_force_view_types = false;
    opts.sql_parser.map_string_types_to_utf8view = false;
    if let Some(limit) = options.memory_limit {
        // Each sort sets this much aside for merging its spill files (10 MB by
        // default); under a small limit that alone would exhaust the pool.
        let per_sort = limit / (8 * options.threads());
        opts.execution.sort_spill_reservation_bytes = per_sort.clamp(64 * 1024, 10 * 1024 * 1024);
    }
    // Footers are read once by the catalog and found again by the scans.
    let mut runtime = RuntimeEnvBuilder::new().with_metadata_cache_limit(512 * 1024 * 1024);
    if let Some(limit) = options.memory_limit {
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
    }
    let mut disk = DiskManagerBuilder::default();
    if options.no_spill {
        disk = disk.with_mode(DiskManagerMode::Disabled);
    } else if let Some(dir) = &options.spill_dir {
        disk = disk.with_mode(DiskManagerMode::Directories(vec![dir.clone()]));
    }
    runtime = runtime.with_disk_manager_builder(disk);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.build_arc()?)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(SinglePhaseWideAggregates))
        .build();
    let ctx = SessionContext::new_with_state(state);
    psync_functions::register_all(&ctx);
    ctx.register_udf(sha1_hex().as_ref().clone());
    Ok(ctx)
}

/// A context for computing views: [`new_context`] with the join order as the
/// view code writes it. Every join there has the id graph (one row per profile,
/// held in memory) on its build side; DataFusion's hash joins cannot spill, and
/// with row counts known on one side only it could otherwise build a hash table
/// of all trait updates.
pub fn views_context(options: &EngineOptions) -> Result<SessionContext> {
    let ctx = new_context(options)?;
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let optimizer = &mut state.config_mut().options_mut().optimizer;
        optimizer.join_reordering = false;
        // One hash table of the graph shared by every partition, probed by the
        // updates where they are: the updates are not repartitioned for the join.
        optimizer.hash_join_single_partition_threshold = usize::MAX;
        optimizer.hash_join_single_partition_threshold_rows = usize::MAX;
    }
    Ok(ctx)
}

/// Parses `input` as a location with `options`' store settings and makes its
/// store known to `ctx`.
pub fn locate(
    ctx: &SessionContext,
    input: &str,
    options: &EngineOptions,
) -> Result<Location, LakeError> {
    let location = Location::parse_with(input, &options.store)?;
    location.register(ctx);
    Ok(location)
}

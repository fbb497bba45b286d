//! The engine flags shared by the commands that compute views.

use psync_core::EngineOptions;

use crate::size::parse_size;

/// Threads, memory and spilling.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Memory the engine may use before spilling to disk, e.g. 2G [default: unbounded].
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<usize>,
    /// Folder for spill files [default: the system temp folder].
    #[arg(long)]
    spill_dir: Option<std::path::PathBuf>,
    /// Never spill to disk: fail when the memory limit is reached.
    #[arg(long, conflicts_with = "spill_dir")]
    no_spill: bool,
    /// Rows per batch inside the engine [default: 8192].
    #[arg(long, hide = true)]
    batch_size: Option<usize>,
    #[command(flatten)]
    store: crate::store::StoreArgs,
}

impl EngineArgs {
    /// The engine options these flags give.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            threads: self.threads,
            memory_limit: self.memory_limit,
            batch_size: self.batch_size,
            spill_dir: self.spill_dir.clone(),
            no_spill: self.no_spill,
            store: self.store.options(),
        }
    }
}

/// The tokio runtime a command runs on: one worker per engine thread.
pub fn runtime(engine: &EngineOptions) -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(engine.threads())
        .enable_all()
        .build()
        .context("starting the runtime")
}

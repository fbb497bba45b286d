//! `psync-lake`: current-state views from a Segment Profiles Sync lake.

mod engine;
mod explain;
mod generate;
mod materialize;
mod query;
mod report;
mod signals;
mod size;
mod source;
mod status;
mod store;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Turn a Segment Profiles Sync lake into its current state: id_graph,
/// external_id_mapping and profile_traits, as Parquet that any engine reads by path.
#[derive(Debug, Parser)]
#[command(name = "psync-lake", version, propagate_version = true)]
struct Cli {
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "PSYNC_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute the views from a lake and publish them under a destination.
    Materialize(materialize::Args),
    /// An SQL shell over the landed tables and the views (interactive, or -c / -f / stdin).
    Query(query::Args),
    /// One person: whom a segment_id or type:value resolves to, its merge tree, its
    /// identifiers and the update row behind each trait (text, or --json).
    Explain(explain::Args),
    /// Recompute the views in full and compare them with the published ones (exit 1 on any difference).
    Verify(verify::Args),
    /// Write a deterministic synthetic lake (for trying things out and benchmarks).
    Generate(generate::Args),
    /// Turn the identity health tables a run wrote under <dest>/_psync/health/ into one HTML page.
    Report(report::Args),
    /// What a destination holds: the last run, whether its views are that run's, the lease,
    /// the incremental state (exit 0 healthy, 3 locked by a live run, 4 needs attention).
    Status(status::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // --quiet means errors only: warnings are still in the run record.
    let quiet = matches!(&cli.command, Command::Materialize(a) if a.quiet);
    let level = if quiet { "error" } else { cli.log.as_str() };
    // The Delta kernel logs every error it returns; the error itself reaches the
    // user as one line, so its logs show only when asked for by name.
    let filter = if level.contains("delta_kernel") {
        level.to_string()
    } else {
        format!("{level},delta_kernel=off")
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| psync_lake_io::azure::RedactingStderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Materialize(args) => materialize::run(args).map(|()| true),
        Command::Query(args) => query::run(args).map(|()| true),
        Command::Explain(args) => explain::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Generate(args) => generate::run(args).map(|()| true),
        Command::Report(args) => report::run(args).map(|()| true),
        Command::Status(args) => return status::run(args).unwrap_or_else(fail),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(e),
    }
}

/// Prints the error on one line; exit code 2 (0 on a closed pipe; 130/143 when a
/// signal stopped the command, with its line alone).
fn fail(e: anyhow::Error) -> ExitCode {
    if is_broken_pipe(&e) {
        return ExitCode::SUCCESS;
    }
    if let Some(stopped) = e
        .chain()
        .filter_map(|c| c.downcast_ref::<psync_core::CoreError>())
        .find(|c| c.signal().is_some())
    {
        eprintln!("{stopped}");
        return ExitCode::from(signals::exit_code(stopped.signal().unwrap_or_default()));
    }
    eprintln!("error: {}", one_line(&e));
    ExitCode::from(2)
}

/// The error and its causes on one line, without repeating a cause already in the message.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    psync_core::error::one_line(e.as_ref())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

//! `psync-lake query`: an SQL shell over the landed tables and the views.
//!
//! ```text
//! exec     statements from -c / --run / -f / stdin / the prompt, one task per statement
//! command  backslash commands (\d, \timing, \format, \i, \run, \set, \o, \?, \q)
//! pack     the query pack: queries/*.sql built into the binary
//! helper   rustyline: statements end at ';', Tab completes names
//! print    table / csv / json / ndjson to any io::Write
//! stream_table  a table printed as its rows arrive, for long results
//! output   \o FILE: results to .csv / .json / .ndjson / .txt / .parquet
//! progress the line on stderr of a statement running longer than a second
//! ```

mod command;
mod exec;
mod helper;
mod output;
mod pack;
mod print;
mod progress;
mod stream_table;

use psync_core::EngineOptions;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::size::parse_size;
use exec::Shell;
pub use print::Format;

/// Options of `query`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lake root: every landed table becomes a table of that name.
    #[arg(long)]
    source: String,
    /// A destination of `materialize`: its views are read from there; views it
    /// does not hold are computed from the lake when queried.
    #[arg(long)]
    dest: Option<String>,
    /// SQL to run (repeatable; runs before any -f file), then exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// A file of SQL statements to run (repeatable), then exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A query of the pack to run by name (repeatable; after -c, before -f), then
    /// exit. `--run list` (or `\run` in the shell) lists them.
    #[arg(long = "run", value_name = "NAME")]
    runs: Vec<String>,
    /// Set a variable, written :NAME or $NAME in SQL (a string, or a number when
    /// the value is one) and :"NAME" for a column name (repeatable).
    #[arg(short = 'v', long = "var", value_name = "NAME=VALUE", value_parser = psync_core::sql::params::parse_var)]
    vars: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Rows shown by the table format before it truncates (other formats print all).
    #[arg(long, default_value_t = 1000)]
    max_rows: usize,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Memory the engine may use before spilling to disk, e.g. 2G [default: unbounded].
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<usize>,
    #[command(flatten)]
    source_at: crate::source::SourceAtArgs,
    #[command(flatten)]
    store: crate::store::StoreArgs,
}

/// Runs `query`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let engine = EngineOptions {
        threads: a.threads,
        memory_limit: a.memory_limit,
        store: a.store.options(),
        ..Default::default()
    };
    let rt = crate::engine::runtime(&engine)?;
    let psync_core::sql::LakeSession { ctx, entries } = rt.block_on(psync_core::sql::open(
        &a.source,
        a.dest.as_deref(),
        &a.source_at.at(),
        &engine,
    ))?;
    let interactive = exec::interactive(&a.commands, &a.files) && a.runs.is_empty();
    let mut shell = Shell {
        ctx,
        entries,
        format: a.format,
        timing: false,
        max_rows: a.max_rows.max(1),
        engine,
        vars: a.vars.into_iter().collect(),
        output: None,
        progress: interactive && std::io::stderr().is_terminal(),
    };
    let result = if interactive {
        exec::run_interactive(&rt, &mut shell)
    } else {
        exec::run_script(&rt, &mut shell, &a.commands, &a.runs, &a.files)
    };
    let closed = shell.output.take().map_or(Ok(()), output::Output::close);
    result.and(closed)
}

//! `psync-lake status`: what a destination holds, as text or JSON, with an exit
//! code a scheduler can test before it starts a run.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use psync_core::status::{DestStatus, Health, file_state_word, status, verdict_word};
use psync_lake_io::Location;

use crate::size::human_bytes;

/// Options of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The destination (folder, file:// URL or s3://bucket/prefix).
    #[arg(long)]
    dest: String,
    /// Print the status as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Another host's lease not renewed for this long counts as stale (as in materialize).
    #[arg(long, value_parser = psync_core::parse::parse_duration, default_value = "60s")]
    lease_timeout: std::time::Duration,
    #[command(flatten)]
    store: crate::store::StoreArgs,
}

/// Runs `status`: exit 0 when the destination is healthy and unlocked, 3 when a
/// live run holds it, 4 when it holds a stale lock or views no run record names.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Multi-threaded: the Delta kernel, which reads a Delta destination's logs, runs
    // its I/O on a multi-threaded runtime only.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let dest = Location::parse_with(&a.dest, &a.store.options())?;
    let s = runtime
        .block_on(status(&dest, a.lease_timeout))
        .with_context(|| format!("status of {}", a.dest))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(ExitCode::from(s.health.exit_code()))
}

/// The text form.
fn render(s: &DestStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "destination  {}", s.dest);
    match &s.last_run {
        None => {
            let _ = writeln!(o, "last run     none (no run has completed here)");
        }
        Some(r) => {
            let _ = writeln!(
                o,
                "last run     {} ({}), started {}, took {:.2}s",
                r.run_id, r.mode, r.started_at, r.seconds
            );
            for (view, rows) in &r.rows {
                let _ = writeln!(o, "  {view:<40} {rows:>12} rows");
            }
            let _ = writeln!(
                o,
                "  cycles broken {}, warnings {}",
                r.cycles_broken,
                r.warnings.len()
            );
            for w in &r.warnings {
                let _ = writeln!(o, "  warning: {w}");
            }
        }
    }
    let recorded = s
        .files
        .iter()
        .filter(|f| f.state == psync_core::status::FileState::AsRecorded)
        .count();
    let _ = writeln!(
        o,
        "views        {recorded} of {} published files as the last run recorded them{}",
        s.files.len(),
        if s.files_recorded || s.last_run.is_none() {
            ""
        } else {
            " (its record predates file tracking: not compared)"
        }
    );
    for f in s
        .files
        .iter()
        .filter(|f| f.state != psync_core::status::FileState::AsRecorded)
    {
        let _ = writeln!(o, "  {:<40} {}", f.path, file_state_word(f.state));
    }
    match &s.lock {
        None => {
            let _ = writeln!(o, "lease        none");
        }
        Some(l) => {
            let who = l.holder.as_ref().map_or_else(
                || "an unreadable lock".to_string(),
                |h| format!("{}, since {}", h.describe(), h.acquired_at),
            );
            let _ = writeln!(
                o,
                "lease        {}: {who}; {} ({})",
                verdict_word(l.verdict),
                l.why,
                l.url
            );
        }
    }
    if s.staging_left > 0 {
        let _ = writeln!(
            o,
            "staging      {} folder(s) under _psync/tmp/ left by stopped runs (the next run removes them)",
            s.staging_left
        );
    }
    match &s.state {
        None => {
            let _ = writeln!(o, "state        none (no incremental run saved one)");
        }
        Some(st) => {
            let segments: Vec<String> = st
                .segments
                .iter()
                .map(|(t, (n, b))| format!("{t} {n} ({})", human_bytes(*b)))
                .collect();
            let _ = writeln!(
                o,
                "state        {} landed files processed ({}), by run {}; segments: {}",
                st.files_processed,
                human_bytes(st.bytes_processed),
                st.run_id,
                segments.join(", ")
            );
        }
    }
    let verdict = match s.health {
        Health::Ok => "ok".to_string(),
        Health::Locked => "locked by a live run (exit 3)".to_string(),
        Health::NeedsAttention => "needs attention (exit 4)".to_string(),
    };
    let _ = writeln!(o, "status       {verdict}");
    for p in &s.problems {
        let _ = writeln!(o, "  {p}");
    }
    o
}

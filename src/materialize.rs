//! `psync-lake materialize`: a run with a progress display and a summary table.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use psync_core::materialize::{MaterializeOptions, Progress, ViewReport};
use psync_core::{LeaseOptions, RunMode, RunReport, Stop, View, materialize};

/// How much of the history a run recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Rebuild every view from the whole history.
    Full,
    /// Read only the files landed since the last incremental run, plus the state it
    /// saved under <dest>/_psync/state/; the views equal a full run's. The first
    /// run (no state yet) reads everything.
    Incremental,
}

/// What an incremental run does when a file it processed before changed or vanished.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnChange {
    /// Warn and rebuild every view from the lake as it is now.
    Rebuild,
    /// Stop with an error naming the file; nothing is written.
    Fail,
}

/// How the views are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// <dest>/<view>/<view>.parquet, replaced whole by each run.
    Parquet,
    /// <dest>/<view>/ a Delta table: each run commits a new version of every view
    /// it publishes (an incremental run rewrites each view whole); the versions of
    /// one consistent snapshot are in <dest>/_psync/views.json.
    Delta,
}

/// Options of `materialize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lake root: a folder, file:// URL or s3://bucket/prefix with one sub-folder per landed table.
    #[arg(long)]
    source: String,
    /// Where to publish (folder or s3://bucket/prefix): <dest>/<view>/<view>.parquet, run records in <dest>/_psync/.
    #[arg(long)]
    dest: String,
    /// Run mode.
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Rebuild the views as they stood at this instant (RFC 3339, e.g.
    /// 2024-05-01T00:00:00Z, or a date): only updates with timestamp <= it; rows
    /// with a NULL timestamp count as older. A full run; no state is saved.
    #[arg(long, value_parser = psync_core::parse::parse_instant, conflicts_with = "mode")]
    as_of: Option<i64>,
    /// Output format of the views.
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// Incremental runs: what to do when a landed file processed before changed or vanished.
    #[arg(long, value_enum, default_value = "rebuild")]
    on_change: OnChange,
    /// Views to publish, comma-separated [default: id_graph,external_id_mapping,profile_traits,
    /// and users,audience_membership,computed_traits of every Personas space]; add
    /// <table>_resolved for an event table with canonical_segment_id, and
    /// id_graph_history for every segment_id's canonical over time.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<View>()))]
    views: Vec<View>,
    /// Do not write the identity health tables (<dest>/_psync/health/, read by `report`).
    #[arg(long)]
    no_health: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the run record (JSON) on stdout instead of the summary table.
    #[arg(long)]
    json: bool,
    /// Print each view's physical plan instead of running it.
    #[arg(long)]
    explain: bool,
    /// Another host's lease on the destination not renewed for this long is stale,
    /// and taken over (a lease of this host is taken over at once when its process
    /// is gone, and never while it runs). E.g. 60s, 2m.
    #[arg(long, value_parser = psync_core::parse::parse_duration, default_value = "60s")]
    lease_timeout: std::time::Duration,
    /// The former name of --lease-timeout, in minutes.
    #[arg(long, hide = true, conflicts_with = "lease_timeout")]
    stale_lock_minutes: Option<u64>,
    /// Take over the destination's lease whoever holds it (only when you know
    /// that run is dead: a live holder stops when it notices, before publishing more).
    #[arg(long)]
    break_lock: bool,
    #[command(flatten)]
    source_at: crate::source::SourceAtArgs,
    #[command(flatten)]
    engine: crate::engine::EngineArgs,
}

/// A spinner on stderr, only when stderr is a terminal.
struct Display {
    bar: Option<ProgressBar>,
}

impl Display {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Display { bar }
    }
}

impl Progress for Display {
    fn stage(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(match name {
                "listing" => "listing the lake and reading footers".to_string(),
                "resolve" => "resolving the id graph".to_string(),
                "publishing" => "publishing".to_string(),
                "state" => "saving the incremental state".to_string(),
                view => format!("computing and writing {view}"),
            });
        }
    }

    fn view_done(&self, r: &ViewReport) {
        if let Some(bar) = &self.bar {
            bar.println(format!(
                "  {:<22} {:>12} rows  {:>7.2}s",
                r.view, r.rows, r.seconds
            ));
        }
    }
}

/// Runs `materialize`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mode = match (a.as_of, a.mode) {
        (Some(t), _) => RunMode::AsOf(t),
        (None, Mode::Full) => RunMode::Full,
        (None, Mode::Incremental) => RunMode::Incremental {
            on_change: match a.on_change {
                OnChange::Rebuild => psync_core::OnChange::Rebuild,
                OnChange::Fail => psync_core::OnChange::Fail,
            },
        },
    };
    let engine = a.engine.options();
    let opts = MaterializeOptions {
        source: a.source.clone(),
        dest: a.dest.clone(),
        views: if a.views.is_empty() {
            View::DEFAULT.to_vec()
        } else {
            a.views.clone()
        },
        engine: engine.clone(),
        lease: LeaseOptions {
            timeout: a
                .stale_lock_minutes
                .map_or(a.lease_timeout, |m| Duration::from_secs(m * 60)),
            break_lock: a.break_lock,
        },
        stop: Stop::new(),
        mode,
        health: !a.no_health,
        source_at: a.source_at.at(),
        format: match a.format {
            Format::Parquet => psync_core::publish::OutputFormat::Parquet,
            Format::Delta => psync_core::publish::OutputFormat::Delta,
        },
    };
    let runtime = crate::engine::runtime(&engine)?;
    if a.explain {
        let text = runtime
            .block_on(psync_core::materialize::explain(&opts))
            .context("planning the views")?;
        print!("{text}");
        return Ok(());
    }
    let opts = MaterializeOptions {
        stop: crate::signals::install(&runtime)?,
        ..opts
    };
    let display = Display::new(a.quiet);
    let report = runtime
        .block_on(materialize(&opts, &display))
        .with_context(|| format!("materialize {} -> {}", a.source, a.dest));
    if let Some(bar) = &display.bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !a.quiet {
        print_summary(&report);
    }
    Ok(())
}

fn print_summary(r: &RunReport) {
    if r.mode == "nothing-new" {
        eprintln!(
            "nothing new since the last run: no file changed ({:.2}s)",
            r.seconds
        );
        return;
    }
    // One width for both tables: the longest name (Personas views are long).
    let w = r
        .inputs
        .iter()
        .map(|i| i.table.len())
        .chain(r.views.iter().map(|v| v.view.len()))
        .max()
        .unwrap_or(0)
        .max(30);
    eprintln!("{:<w$} {:>8} {:>14}", "input table", "files", "rows");
    for i in &r.inputs {
        eprintln!("{:<w$} {:>8} {:>14}", i.table, i.files, i.rows);
    }
    eprintln!();
    eprintln!("{:<w$} {:>14} {:>9}  file", "view", "rows", "seconds");
    for v in &r.views {
        let version = v
            .delta_version
            .map(|n| format!(" (Delta version {n})"))
            .unwrap_or_default();
        eprintln!(
            "{:<w$} {:>14} {:>9.2}  {}{version}",
            v.view, v.rows, v.seconds, v.file
        );
    }
    if r.patched {
        eprintln!("(views patched: only the rows the new files reach were recomputed)");
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let mode = match &r.as_of {
        Some(t) => format!("as of {t}"),
        None => r.mode.clone(),
    };
    eprintln!("run {} ({mode}) finished in {:.2}s", r.run_id, r.seconds);
}

//! `psync-lake verify`: recompute the views in full and compare them with the published ones.

use anyhow::Context;
use psync_core::View;
use psync_core::verify::{VerifyOptions, ViewCheck, verify};

/// Options of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lake root the views were computed from (folder, file:// URL or s3://bucket/prefix).
    #[arg(long)]
    source: String,
    /// Where the views were published.
    #[arg(long)]
    dest: String,
    /// Views to check, comma-separated [default: all].
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<View>()))]
    views: Vec<View>,
    /// Print the comparison as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source_at: crate::source::SourceAtArgs,
    #[command(flatten)]
    engine: crate::engine::EngineArgs,
}

/// Runs `verify`; `Ok(false)` when some view differs.
pub fn run(a: Args) -> anyhow::Result<bool> {
    let engine = a.engine.options();
    let opts = VerifyOptions {
        source: a.source.clone(),
        dest: a.dest.clone(),
        views: if a.views.is_empty() {
            View::ALL.to_vec()
        } else {
            a.views.clone()
        },
        engine: engine.clone(),
        source_at: a.source_at.at(),
    };
    let runtime = crate::engine::runtime(&engine)?;
    let stop = crate::signals::install(&runtime)?;
    let checks = runtime
        .block_on(async {
            // Nothing of verify's is under the destination: dropping it is stopping it
            // (its temp folder goes with it).
            tokio::select! {
                checks = verify(&opts) => checks,
                signal = stop.wait() => Err(psync_core::CoreError::Interrupted {
                    signal: signal.to_string(),
                    published: vec![],
                    left: vec![],
                }),
            }
        })
        .with_context(|| format!("verify {} against {}", a.source, a.dest))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print_checks(&checks);
    }
    Ok(checks.iter().all(ViewCheck::ok))
}

fn print_checks(checks: &[ViewCheck]) {
    println!(
        "{:<22} {:>12} {:>12} {:>9} {:>9} {:>9}  result",
        "view", "expected", "published", "missing", "extra", "different"
    );
    for c in checks {
        println!(
            "{:<22} {:>12} {:>12} {:>9} {:>9} {:>9}  {}",
            c.view,
            c.expected_rows,
            c.published_rows,
            c.missing,
            c.extra,
            c.different,
            if c.ok() { "ok" } else { "DIFFERS" }
        );
        if let Some(p) = &c.problem {
            println!("  {p}");
        }
        for e in &c.examples {
            println!("  {e}");
        }
    }
}

//! `psync-lake report`: the identity health report a run left under
//! `<dest>/_psync/health/`, as one self-contained HTML page.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use psync_core::{EngineOptions, health, locate, new_context};
use psync_lake_io::Lake;

/// Options of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The destination a run published to (folder, file:// URL or s3://bucket/prefix).
    #[arg(long)]
    dest: String,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Print the text summary only (no page is written).
    #[arg(long)]
    summary_only: bool,
    #[command(flatten)]
    store: crate::store::StoreArgs,
}

/// Runs `report`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let engine = EngineOptions {
        threads: Some(2),
        store: a.store.options(),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let ctx = new_context(&engine)?;
    let report = runtime.block_on(async {
        let dest = locate(&ctx, &a.dest, &engine)?;
        let dir = dest.join(&health::DIR);
        let missing = || {
            anyhow::anyhow!(
                "no health report under {} (expected {}/<table>/*.parquet: run psync-lake materialize with this --dest first)",
                a.dest,
                dir.display
            )
        };
        if dest.local_dir.as_ref().is_some_and(|d| !d.join("_psync").join("health").is_dir()) {
            return Err(missing());
        }
        let tables = Arc::new(Lake::open(&ctx.state(), dir.clone()).await?);
        let read = |name: &'static str| {
            let tables = Arc::clone(&tables);
            let ctx = ctx.clone();
            async move {
                match tables.table(name) {
                    Some(t) => Ok(Some(ctx.read_table(Arc::new(t.clone()))?)),
                    None => Ok(None),
                }
            }
        };
        health::read_report(read).await?.ok_or_else(missing)
    })?;
    let text = psync_report::summary_text(&report);
    if a.summary_only {
        println!("{text}");
        return Ok(());
    }
    let page = psync_report::render(&report, &a.dest)?;
    if a.out.is_dir() {
        bail!(
            "{} is a folder; --out takes the HTML file to write",
            a.out.display()
        );
    }
    std::fs::write(&a.out, page).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("{text}");
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

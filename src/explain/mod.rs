//! `psync-lake explain`: one person of a lake — whom an ID resolves to, its merge
//! tree, identifiers and the update row behind every trait — as text or JSON.
//!
//! ```text
//! core::explain::Explainer::find ─► merge_tree / identifiers / trait_sources (DataFrames)
//!   ─► collected ─► text (text.rs) or one JSON object
//! ```

mod text;

use std::io::Write;

use psync_core::EngineOptions;
use psync_core::explain::{Explained, explain, to_json};

/// Options of `explain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lake root (folder, file:// URL or s3://bucket/prefix).
    #[arg(long)]
    source: String,
    /// A destination of `materialize`: also say where its published id_graph
    /// puts the ID (it differs from the lake when rows landed since that run).
    #[arg(long)]
    dest: Option<String>,
    /// A segment_id, or an identifier as type:value (email:jane.kim@segment.com).
    id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    store: crate::store::StoreArgs,
}

/// Runs `explain`; `Ok(false)` (exit 1) when the lake does not know the ID.
pub fn run(a: Args) -> anyhow::Result<bool> {
    let engine = EngineOptions {
        threads: a.threads,
        store: a.store.options(),
        ..Default::default()
    };
    let rt = crate::engine::runtime(&engine)?;
    let e = match rt.block_on(explain(&a.source, a.dest.as_deref(), &a.id, &engine))? {
        Explained::Found(e) => e,
        Explained::Unknown(line) => {
            eprintln!("error: {line}");
            return Ok(false);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        let value = to_json(&e)?;
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        text::write(&mut out, &e)?;
    }
    out.flush()?;
    Ok(true)
}

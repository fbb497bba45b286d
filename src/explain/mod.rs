//! `psync-lake explain`: one person of a lake — whom an ID resolves to, its merge
//! tree, identifiers and the update row behind every trait — as text or JSON.
//!
//! ```text
//! core::explain::Explainer::find ─► merge_tree / identifiers / trait_sources (DataFrames)
//!   ─► collected ─► text (text.rs) or one JSON object
//! ```

mod text;

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use datafusion::prelude::{DataFrame, col, lit};
use psync_core::explain::{Explainer, Person, explain_context, unknown};
use psync_core::{EngineOptions, locate, new_context};
use psync_lake_io::Lake;
use serde_json::{Value, json};

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

/// The sections of one explanation, collected.
pub struct Explanation {
    pub person: Person,
    pub merge_tree: Vec<RecordBatch>,
    pub identifiers: Vec<RecordBatch>,
    pub traits: Vec<RecordBatch>,
    /// With `--dest`: the canonical the published id_graph gives the ID's
    /// segment_id (`None` inside when it has no row for it).
    pub published: Option<Option<String>>,
}

/// Runs `explain`; `Ok(false)` (exit 1) when the lake does not know the ID.
pub fn run(a: Args) -> anyhow::Result<bool> {
    let engine = EngineOptions {
        threads: a.threads,
        store: a.store.options(),
        ..Default::default()
    };
    let rt = crate::engine::runtime(&engine)?;
    let explanation = rt.block_on(explain(&a, &engine))?;
    let Some(e) = explanation else {
        return Ok(false);
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

async fn explain(a: &Args, engine: &EngineOptions) -> anyhow::Result<Option<Explanation>> {
    let ctx = explain_context(&new_context(engine)?);
    let lake = Lake::open(&ctx.state(), locate(&ctx, &a.source, engine)?).await?;
    let explainer = Explainer::new(&ctx, &lake);
    let Some(found) = explainer.find(&a.id).await? else {
        eprintln!("error: {}", unknown(a.id.trim(), &lake));
        return Ok(None);
    };
    let merge_tree = explainer.merge_tree(&found)?.collect().await?;
    let identifiers = explainer.identifiers(&found).await?.collect().await?;
    let traits = explainer.trait_sources(&found).await?.collect().await?;
    let published = match &a.dest {
        Some(d) => Some(published_canonical(&ctx, d, engine, &found.person.segment_id).await?),
        None => None,
    };
    Ok(Some(Explanation {
        person: found.person,
        merge_tree,
        identifiers,
        traits,
        published,
    }))
}

/// The canonical the published `id_graph` under `dest` gives `segment_id`
/// (the file is sorted by segment_id: only the row group holding it is read).
async fn published_canonical(
    ctx: &datafusion::prelude::SessionContext,
    dest: &str,
    engine: &EngineOptions,
    segment_id: &str,
) -> anyhow::Result<Option<String>> {
    let views = Lake::open(&ctx.state(), locate(ctx, dest, engine)?).await?;
    let table = views
        .table("id_graph")
        .with_context(|| format!("no published id_graph under {dest}"))?;
    let df: DataFrame = ctx
        .read_table(Arc::new(table.clone()))?
        .filter(col("segment_id").eq(lit(segment_id)))?;
    let batches = df
        .select_columns(&["canonical_segment_id"])?
        .collect()
        .await?;
    Ok(
        psync_core::explain::column_texts(&batches, "canonical_segment_id")
            .into_iter()
            .flatten()
            .next(),
    )
}

/// Rows as JSON objects, NULLs included.
fn rows_json(batches: &[RecordBatch]) -> anyhow::Result<Value> {
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(json!([]));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// The explanation as one JSON object.
pub fn to_json(e: &Explanation) -> anyhow::Result<Value> {
    let p = &e.person;
    let mut v = json!({
        "asked": p.asked,
        "identifier": p.identifier.as_ref().map(|(t, v)| json!({"type": t, "value": v})),
        "segment_id": p.segment_id,
        "canonical_segment_id": p.canonical_segment_id,
        "segment_ids": p.members,
        "cycles_broken": p.cycles_broken,
        "merge_tree": rows_json(&e.merge_tree)?,
        "identifiers": rows_json(&e.identifiers)?,
        "traits": rows_json(&e.traits)?,
    });
    if let Some(published) = &e.published {
        v["published_canonical_segment_id"] = json!(published);
    }
    Ok(v)
}

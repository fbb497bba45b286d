//! One explanation, collected: what `psync-lake explain` prints and the Python
//! package's `Lake.explain` returns.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SessionContext, col, lit};
use psync_lake_io::Lake;
use serde_json::{Value, json};

use super::{Explainer, Person, explain_context, unknown};
use crate::error::{CoreError, Result};
use crate::session::{EngineOptions, locate, new_context};

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

/// What [`explain`] found.
pub enum Explained {
    /// The lake knows the ID.
    Found(Box<Explanation>),
    /// It does not: the line that says so.
    Unknown(String),
}

/// Explains `id` (a segment_id, or type:value) from the lake at `source`; with
/// `dest`, also where that destination's published id_graph puts it.
pub async fn explain(
    source: &str,
    dest: Option<&str>,
    id: &str,
    engine: &EngineOptions,
) -> Result<Explained> {
    let ctx = explain_context(&new_context(engine)?);
    let lake = Lake::open(&ctx.state(), locate(&ctx, source, engine)?).await?;
    let explainer = Explainer::new(&ctx, &lake);
    let Some(found) = explainer.find(id).await? else {
        return Ok(Explained::Unknown(unknown(id.trim(), &lake)));
    };
    let merge_tree = explainer.merge_tree(&found)?.collect().await?;
    let identifiers = explainer.identifiers(&found).await?.collect().await?;
    let traits = explainer.trait_sources(&found).await?.collect().await?;
    let published = match dest {
        Some(d) => Some(published_canonical(&ctx, d, engine, &found.person.segment_id).await?),
        None => None,
    };
    Ok(Explained::Found(Box::new(Explanation {
        person: found.person,
        merge_tree,
        identifiers,
        traits,
        published,
    })))
}

/// The canonical the published `id_graph` under `dest` gives `segment_id`
/// (the file is sorted by segment_id: only the row group holding it is read).
async fn published_canonical(
    ctx: &SessionContext,
    dest: &str,
    engine: &EngineOptions,
    segment_id: &str,
) -> Result<Option<String>> {
    let views = Lake::open(&ctx.state(), locate(ctx, dest, engine)?).await?;
    let table = views
        .table("id_graph")
        .ok_or_else(|| CoreError::Config(format!("no published id_graph under {dest}")))?;
    let df: DataFrame = ctx
        .read_table(Arc::new(table.clone()))?
        .filter(col("segment_id").eq(lit(segment_id)))?;
    let batches = df
        .select_columns(&["canonical_segment_id"])?
        .collect()
        .await?;
    Ok(super::column_texts(&batches, "canonical_segment_id")
        .into_iter()
        .flatten()
        .next())
}

/// Rows as JSON objects, NULLs included.
fn rows_json(batches: &[RecordBatch]) -> Result<Value> {
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for b in batches {
        w.write(b).map_err(DataFusionError::from)?;
    }
    w.finish().map_err(DataFusionError::from)?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(json!([]));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CoreError::Config(format!("explain rows as JSON: {e}")))
}

/// The explanation as one JSON object.
pub fn to_json(e: &Explanation) -> Result<Value> {
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

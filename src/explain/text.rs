//! The text of `psync-lake explain`: the person, its merge tree drawn from the
//! canonical down, then aligned tables of its identifiers and trait sources.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use psync_core::explain::column_texts;

use psync_core::explain::Explanation;

/// One column of collected rows as text ("" for NULL).
fn column(batches: &[RecordBatch], name: &str) -> Vec<String> {
    column_texts(batches, name)
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

/// Writes `rows` under `header`, each column padded to its widest cell.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            s.push(' ');
            s.push_str(cell);
            s.push_str(&" ".repeat(w - cell.chars().count() + 1));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Writes the explanation as text.
pub fn write(out: &mut dyn Write, e: &Explanation) -> std::io::Result<()> {
    let p = &e.person;
    writeln!(out, "{}", p.canonical_segment_id)?;
    match &p.identifier {
        Some((t, v)) => writeln!(
            out,
            "  asked for {t}:{v}: its latest external_id_mapping_updates row is on {}",
            p.segment_id
        )?,
        None if p.segment_id != p.canonical_segment_id => {
            writeln!(out, "  asked for {}, merged into it", p.segment_id)?
        }
        None => {}
    }
    if let Some(published) = &e.published {
        let now = &p.canonical_segment_id;
        match published {
            Some(c) if c == now => writeln!(
                out,
                "  the published id_graph agrees: {} -> {c}",
                p.segment_id
            )?,
            Some(c) => writeln!(
                out,
                "  the published id_graph says {} -> {c}: rows landed since its run change it",
                p.segment_id
            )?,
            None => writeln!(
                out,
                "  the published id_graph has no row for {}: it landed since that run",
                p.segment_id
            )?,
        }
    }
    if p.cycles_broken > 0 {
        writeln!(
            out,
            "  {} merge cycle(s) broken at their oldest edge",
            p.cycles_broken
        )?;
    }
    writeln!(out)?;
    merge_tree(out, e)?;
    writeln!(out)?;
    identifiers(out, e)?;
    writeln!(out)?;
    traits(out, e)
}

/// One merge tree node's text: what its latest id_graph_updates row did.
fn node_text(r: &BTreeMap<&str, String>) -> String {
    let sid = &r["segment_id"];
    let mut s = sid.clone();
    if r["note"] == psync_core::explain::MERGE_TREE_NOTES[0] {
        s.push_str("  [no id_graph_updates row]");
        return s;
    }
    let verb = if r["parent"].is_empty() && r["points_to"] == *sid {
        "created"
    } else {
        "merged"
    };
    let at = if r["timestamp"].is_empty() {
        "(no timestamp)".to_string()
    } else {
        r["timestamp"].clone()
    };
    s.push_str(&format!("  {verb} {at}"));
    let by = [
        r["triggering_event_type"].as_str(),
        r["triggering_event_id"].as_str(),
    ]
    .iter()
    .filter(|v| !v.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ");
    if !by.is_empty() {
        s.push_str(&format!(" by {by}"));
    }
    if !r["seq"].is_empty() {
        s.push_str(&format!(" (seq {})", r["seq"]));
    }
    match r["note"].as_str() {
        "" => {}
        "cycle broken here" => s.push_str(&format!(
            "  [cycle broken here: its latest row points to {}, the cycle's oldest edge, ignored]",
            r["points_to"]
        )),
        "recursive entry missing" => s.push_str(&format!(
            "  [recursive entry missing: points to {}, merged since]",
            r["points_to"]
        )),
        other => s.push_str(&format!("  [{other}]")),
    }
    s
}

fn merge_tree(out: &mut dyn Write, e: &Explanation) -> std::io::Result<()> {
    const COLUMNS: [&str; 8] = [
        "segment_id",
        "parent",
        "points_to",
        "timestamp",
        "seq",
        "triggering_event_type",
        "triggering_event_id",
        "note",
    ];
    let cols: Vec<Vec<String>> = COLUMNS.iter().map(|c| column(&e.merge_tree, c)).collect();
    let rows: Vec<BTreeMap<&str, String>> = (0..cols[0].len())
        .map(|i| {
            COLUMNS
                .iter()
                .zip(&cols)
                .map(|(c, v)| (*c, v[i].clone()))
                .collect()
        })
        .collect();
    let noun = if rows.len() == 1 {
        "segment_id"
    } else {
        "segment_ids"
    };
    writeln!(out, "merge tree: {} {noun}", rows.len())?;
    // Rows come oldest first: children are listed in merge order.
    let mut children: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut roots = vec![];
    for (i, r) in rows.iter().enumerate() {
        match r["parent"].as_str() {
            "" => roots.push(i),
            parent => children.entry(parent).or_default().push(i),
        }
    }
    let mut shown = BTreeSet::new();
    for &root in &roots {
        writeln!(out, "  {}", node_text(&rows[root]))?;
        shown.insert(root);
        draw(
            out,
            &rows,
            &children,
            &rows[root]["segment_id"],
            "  ",
            &mut shown,
        )?;
    }
    // A parent outside the tree would be a bug; show its rows rather than hide them.
    for (i, r) in rows.iter().enumerate() {
        if !shown.contains(&i) {
            writeln!(out, "  ? {}", node_text(r))?;
        }
    }
    Ok(())
}

fn draw(
    out: &mut dyn Write,
    rows: &[BTreeMap<&str, String>],
    children: &BTreeMap<&str, Vec<usize>>,
    node: &str,
    prefix: &str,
    shown: &mut BTreeSet<usize>,
) -> std::io::Result<()> {
    let Some(kids) = children.get(node) else {
        return Ok(());
    };
    for (k, &i) in kids.iter().enumerate() {
        if !shown.insert(i) {
            continue;
        }
        let last = k + 1 == kids.len();
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        writeln!(out, "{prefix}{branch}{}", node_text(&rows[i]))?;
        let deeper = format!("{prefix}{more}");
        draw(out, rows, children, &rows[i]["segment_id"], &deeper, shown)?;
    }
    Ok(())
}

fn identifiers(out: &mut dyn Write, e: &Explanation) -> std::io::Result<()> {
    let cols: Vec<Vec<String>> = [
        "external_id_type",
        "external_id_value",
        "first_seen",
        "segment_id",
    ]
    .iter()
    .map(|c| column(&e.identifiers, c))
    .collect();
    let rows: Vec<Vec<String>> = (0..cols[0].len())
        .map(|i| cols.iter().map(|c| c[i].clone()).collect())
        .collect();
    writeln!(out, "identifiers: {}", rows.len())?;
    if rows.is_empty() {
        return Ok(());
    }
    table(out, &["type", "value", "first seen", "on"], &rows)
}

fn traits(out: &mut dyn Write, e: &Explanation) -> std::io::Result<()> {
    let base = ["trait", "value", "segment_id", "seq", "timestamp"];
    // Provenance columns (event_source_id, context_*) that hold anything.
    let extra: Vec<String> = e
        .traits
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| !base.contains(&n.as_str()) && n != "uuid_ts")
                .filter(|n| column(&e.traits, n).iter().any(|v| !v.is_empty()))
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<&str> = base
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    let cols: Vec<Vec<String>> = names.iter().map(|c| column(&e.traits, c)).collect();
    let rows: Vec<Vec<String>> = (0..cols[0].len())
        .map(|i| cols.iter().map(|c| c[i].clone()).collect())
        .collect();
    let set = cols[1].iter().filter(|v| !v.is_empty()).count();
    writeln!(out, "traits: {} ({set} with a value)", rows.len())?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut header = vec!["trait", "value", "set by", "seq", "at"];
    header.extend(extra.iter().map(String::as_str));
    table(out, &header, &rows)
}

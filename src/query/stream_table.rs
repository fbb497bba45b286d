//! A table printed while its rows arrive: for a statement whose rows are still
//! coming after a second, the rows so far set the column widths, and later rows
//! are printed as they come in those widths (a longer value is cut with `…`).
//! The borders are those of the buffered table, so both look alike.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The open table: its column widths, fixed by the first rows.
pub struct StreamingTable {
    widths: Vec<usize>,
}

impl StreamingTable {
    /// Prints the header and the rows of `first`, and fixes the widths by them.
    pub fn start(
        out: &mut dyn Write,
        schema: &SchemaRef,
        first: &[RecordBatch],
    ) -> anyhow::Result<Self> {
        let mut widths: Vec<usize> = schema
            .fields()
            .iter()
            .map(|f| f.name().chars().count())
            .collect();
        let mut rows = vec![];
        for b in first {
            rows.extend(cells(b)?);
        }
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let table = StreamingTable { widths };
        table.border(out)?;
        let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        table.line(out, &header)?;
        table.border(out)?;
        for row in &rows {
            table.line(out, row)?;
        }
        out.flush()?;
        Ok(table)
    }

    /// Prints the first `take` rows of `batch`.
    pub fn rows(
        &self,
        out: &mut dyn Write,
        batch: &RecordBatch,
        take: usize,
    ) -> anyhow::Result<()> {
        for row in cells(&batch.slice(0, take.min(batch.num_rows())))? {
            self.line(out, &row)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Closes the table with its bottom border.
    pub fn end(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        self.border(out)
    }

    fn border(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut s = String::from("+");
        for w in &self.widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        writeln!(out, "{s}")?;
        Ok(())
    }

    fn line(&self, out: &mut dyn Write, cells: &[String]) -> anyhow::Result<()> {
        let mut s = String::from("|");
        for (w, cell) in self.widths.iter().zip(cells) {
            let cut: String = if cell.chars().count() > *w {
                cell.chars()
                    .take(w.saturating_sub(1))
                    .chain(['…'])
                    .collect()
            } else {
                cell.clone()
            };
            let pad = w - cut.chars().count();
            s.push(' ');
            s.push_str(&cut);
            s.push_str(&" ".repeat(pad + 1));
            s.push('|');
        }
        writeln!(out, "{s}")?;
        Ok(())
    }
}

/// A batch's values as text, row by row, as the buffered table shows them.
fn cells(batch: &RecordBatch) -> anyhow::Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_display_error(true);
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|r| {
            formatters
                .iter()
                .map(|f| f.value(r).to_string().replace('\n', "\\n"))
                .collect()
        })
        .collect())
}

//! Writing query results to any `io::Write`: an aligned table (with a row count
//! and elapsed time, truncated past `max_rows`), CSV, a JSON array, or NDJSON.

use std::io::Write;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::{ArrayWriter, LineDelimitedWriter};
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::stream_table::StreamingTable;

/// A table whose rows still arrive this long after its statement started is
/// printed as they come (see [`StreamingTable`]).
const STREAM_AFTER: Duration = Duration::from_secs(1);

/// Output formats of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table with a row count (for people).
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| format!("unknown format '{s}' (table, csv, json, ndjson)"))
    }
}

/// Accumulates one statement's batches and writes them in a format.
pub struct Printer {
    format: Format,
    max_rows: usize,
    /// Batches kept for the table format (up to `max_rows` rows).
    kept: Vec<RecordBatch>,
    kept_rows: usize,
    total_rows: usize,
    csv_header_written: bool,
    json: Option<ArrayWriter<Vec<u8>>>,
    started: Instant,
    stream_after: Duration,
    streaming: Option<StreamingTable>,
}

impl Printer {
    /// A printer for one statement's result.
    pub fn new(format: Format, max_rows: usize) -> Self {
        Printer {
            format,
            max_rows,
            kept: vec![],
            kept_rows: 0,
            total_rows: 0,
            csv_header_written: false,
            json: None,
            started: Instant::now(),
            stream_after: STREAM_AFTER,
            streaming: None,
        }
    }

    /// A printer whose table streams once `after` has passed (for tests).
    #[cfg(test)]
    fn streaming_after(format: Format, max_rows: usize, after: Duration) -> Self {
        Printer {
            stream_after: after,
            ..Printer::new(format, max_rows)
        }
    }

    /// Whether the next batch goes to the output at once (a buffered table's
    /// rows wait for the end, or for [`STREAM_AFTER`]).
    pub fn prints_now(&self) -> bool {
        self.format != Format::Table
            || self.streaming.is_some()
            || self.started.elapsed() >= self.stream_after
    }

    /// Writes (or, for tables, keeps) one batch.
    pub fn batch(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> anyhow::Result<()> {
        self.total_rows += batch.num_rows();
        match self.format {
            Format::Table => {
                let room = self.max_rows.saturating_sub(self.kept_rows);
                let take = room.min(batch.num_rows());
                if let Some(table) = &self.streaming {
                    table.rows(out, batch, take)?;
                    self.kept_rows += take;
                } else if take > 0 {
                    self.kept.push(batch.slice(0, take));
                    self.kept_rows += take;
                    if self.started.elapsed() >= self.stream_after {
                        let kept = std::mem::take(&mut self.kept);
                        self.streaming = Some(StreamingTable::start(out, &batch.schema(), &kept)?);
                    }
                }
            }
            Format::Csv => {
                // Render into a buffer first: the CSV writer turns an io::Error into
                // a string, which would hide a closed pipe (`| head`) from main.
                let mut w = CsvWriterBuilder::new()
                    .with_header(!self.csv_header_written)
                    .build(Vec::new());
                w.write(batch)?;
                out.write_all(&w.into_inner())?;
                self.csv_header_written = true;
            }
            Format::Ndjson => {
                let mut w = LineDelimitedWriter::new(&mut *out);
                w.write(batch)?;
                w.finish()?;
            }
            Format::Json => {
                // A JSON array needs its closing bracket at the end: buffer it.
                self.json
                    .get_or_insert_with(|| ArrayWriter::new(Vec::new()))
                    .write(batch)?;
            }
        }
        Ok(())
    }

    /// Finishes the statement's output.
    pub fn finish(
        mut self,
        out: &mut dyn Write,
        schema: &SchemaRef,
        elapsed: Duration,
        timing: bool,
    ) -> anyhow::Result<()> {
        match self.format {
            Format::Table => {
                if let Some(table) = &self.streaming {
                    table.end(out)?;
                } else {
                    if self.kept.is_empty() {
                        self.kept.push(RecordBatch::new_empty(schema.clone()));
                    }
                    if !schema.fields().is_empty() {
                        writeln!(out, "{}", pretty_format_batches(&self.kept)?)?;
                    }
                }
                let noun = if self.total_rows == 1 { "row" } else { "rows" };
                let shown = if self.total_rows > self.kept_rows {
                    format!(
                        " (showing the first {}; use --max-rows or \\format csv for all)",
                        self.kept_rows
                    )
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{} {noun}{shown} in {:.3}s",
                    self.total_rows,
                    elapsed.as_secs_f64()
                )?;
            }
            Format::Csv => {
                if !self.csv_header_written && !schema.fields().is_empty() {
                    let header: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    writeln!(out, "{}", header.join(","))?;
                }
            }
            Format::Json => match self.json.take() {
                Some(mut w) => {
                    w.finish()?;
                    out.write_all(&w.into_inner())?;
                    writeln!(out)?;
                }
                None => writeln!(out, "[]")?,
            },
            Format::Ndjson => {}
        }
        if timing && self.format != Format::Table {
            eprintln!("{:.3}s", elapsed.as_secs_f64());
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap()
    }

    fn render(format: Format, max_rows: usize) -> String {
        let b = batch();
        let mut out = vec![];
        let mut p = Printer::new(format, max_rows);
        p.batch(&mut out, &b).unwrap();
        p.batch(&mut out, &b).unwrap();
        p.finish(&mut out, &b.schema(), Duration::from_millis(5), false)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(render(Format::Csv, 10), "id,n\na,1\n,2\na,1\n,2\n");
        assert_eq!(
            render(Format::Ndjson, 10),
            "{\"id\":\"a\",\"n\":1}\n{\"n\":2}\n{\"id\":\"a\",\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(
            render(Format::Json, 10),
            "[{\"id\":\"a\",\"n\":1},{\"n\":2},{\"id\":\"a\",\"n\":1},{\"n\":2}]\n"
        );
        let t = render(Format::Table, 3);
        assert!(t.contains("| a  | 1 |"), "{t}");
        assert!(t.contains("4 rows (showing the first 3"), "{t}");
    }

    #[test]
    fn a_slow_table_streams_and_looks_like_a_buffered_one() {
        let b = batch();
        let mut out = vec![];
        let mut p = Printer::streaming_after(Format::Table, 3, Duration::ZERO);
        p.batch(&mut out, &b).unwrap();
        // The first batch is out before the statement ends.
        let first = String::from_utf8(out.clone()).unwrap();
        assert!(first.contains("| a  | 1 |"), "{first}");
        p.batch(&mut out, &b).unwrap();
        p.finish(&mut out, &b.schema(), Duration::from_millis(5), false)
            .unwrap();
        let streamed = String::from_utf8(out).unwrap();
        let buffered = render(Format::Table, 3);
        assert_eq!(streamed, buffered);
    }
}

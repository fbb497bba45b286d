//! `\o FILE`: statement results written to a file instead of the terminal, in
//! the format its extension names: `.csv`, `.json`, `.ndjson`/`.jsonl`, `.txt`
//! (the table format) or `.parquet` (one file; every statement written to it
//! must have the same columns, as a Parquet file has one schema).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use super::print::{Format, Printer};

/// Where `\o` sends results.
pub struct Output {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    Text {
        format: Format,
        file: BufWriter<File>,
        printer: Option<Printer>,
    },
    Parquet {
        file: Option<File>,
        writer: Option<(ArrowWriter<File>, SchemaRef)>,
    },
}

impl Output {
    /// Creates (or truncates) `path`; its extension picks the format.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let format = match ext.as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "txt" => Some(Format::Table),
            "parquet" => None,
            _ => bail!(
                "cannot tell the format of {} from its extension: use .csv, .json, .ndjson, .txt or .parquet",
                path.display()
            ),
        };
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let kind = match format {
            Some(format) => Kind::Text {
                format,
                file: BufWriter::new(file),
                printer: None,
            },
            None => Kind::Parquet {
                file: Some(file),
                writer: None,
            },
        };
        Ok(Output {
            path: path.to_path_buf(),
            kind,
        })
    }

    /// The file results go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a statement's result of `schema`.
    pub fn begin(&mut self, schema: &SchemaRef) -> anyhow::Result<()> {
        match &mut self.kind {
            Kind::Text {
                format, printer, ..
            } => *printer = Some(Printer::new(*format, usize::MAX)),
            Kind::Parquet { file, writer } => match writer {
                Some((_, first)) if first.fields() != schema.fields() => bail!(
                    "{} already holds a result with other columns (a Parquet file has one schema); \\o ANOTHER.parquet for this one",
                    self.path.display()
                ),
                Some(_) => {}
                None => {
                    let Some(file) = file.take() else {
                        bail!("{} was closed after an error", self.path.display());
                    };
                    let props = WriterProperties::builder()
                        .set_compression(Compression::ZSTD(ZstdLevel::default()))
                        .build();
                    let w = ArrowWriter::try_new(file, schema.clone(), Some(props))
                        .with_context(|| format!("writing {}", self.path.display()))?;
                    *writer = Some((w, schema.clone()));
                }
            },
        }
        Ok(())
    }

    /// Writes one batch of the current statement.
    pub fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let path = &self.path;
        match &mut self.kind {
            Kind::Text { file, printer, .. } => {
                if let Some(p) = printer {
                    p.batch(file, batch)?;
                }
            }
            Kind::Parquet { writer, .. } => {
                if let Some((w, _)) = writer {
                    w.write(batch)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Ends the current statement's result.
    pub fn end(&mut self, schema: &SchemaRef, elapsed: Duration) -> anyhow::Result<()> {
        let path = &self.path;
        match &mut self.kind {
            Kind::Text { file, printer, .. } => {
                if let Some(p) = printer.take() {
                    p.finish(file, schema, elapsed, false)?;
                }
                file.flush()
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Kind::Parquet { writer, .. } => {
                if let Some((w, _)) = writer {
                    w.flush()
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Finishes the file (a Parquet file's footer is written here).
    pub fn close(mut self) -> anyhow::Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> anyhow::Result<()> {
        let path = &self.path;
        match &mut self.kind {
            Kind::Text { file, .. } => file
                .flush()
                .with_context(|| format!("writing {}", path.display())),
            Kind::Parquet { writer, file } => {
                file.take();
                match writer.take() {
                    Some((w, _)) => w
                        .close()
                        .map(|_| ())
                        .with_context(|| format!("writing {}", path.display())),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // A shell that ends by an error still leaves a readable file.
        let _ = self.close_inner();
    }
}

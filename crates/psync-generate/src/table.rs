//! A row buffer per landed table that flushes to numbered Parquet files.

use std::fs::{File, create_dir_all};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::GenError;

/// One column's values, appended straight into Arrow buffers.
pub enum Col {
    /// Strings.
    Str(StringBuilder),
    /// 64-bit integers.
    I64(Int64Builder),
    /// Doubles.
    F64(Float64Builder),
    /// Booleans.
    Bool(BooleanBuilder),
    /// Microseconds since the epoch, UTC.
    Ts(TimestampMicrosecondBuilder),
}

/// A value for [`Col`].
#[derive(Debug, Clone)]
pub enum Val {
    /// NULL.
    Null,
    /// A string.
    Str(String),
    /// An integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A timestamp (µs UTC).
    Ts(i64),
}

impl Col {
    /// An empty string column.
    pub fn str() -> Col {
        Col::Str(StringBuilder::new())
    }
    /// An empty integer column.
    pub fn i64() -> Col {
        Col::I64(Int64Builder::new())
    }
    /// An empty double column.
    pub fn f64() -> Col {
        Col::F64(Float64Builder::new())
    }
    /// An empty boolean column.
    pub fn bool() -> Col {
        Col::Bool(BooleanBuilder::new())
    }
    /// An empty timestamp column.
    pub fn ts() -> Col {
        Col::Ts(TimestampMicrosecondBuilder::new())
    }

    fn push(&mut self, v: Val) {
        match (self, v) {
            (Col::Str(c), Val::Str(s)) => c.append_value(s),
            (Col::I64(c), Val::I64(x)) => c.append_value(x),
            (Col::F64(c), Val::F64(x)) => c.append_value(x),
            (Col::Bool(c), Val::Bool(x)) => c.append_value(x),
            (Col::Ts(c), Val::Ts(x)) => c.append_value(x),
            (Col::Str(c), _) => c.append_null(),
            (Col::I64(c), _) => c.append_null(),
            (Col::F64(c), _) => c.append_null(),
            (Col::Bool(c), _) => c.append_null(),
            (Col::Ts(c), _) => c.append_null(),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Col::Str(_) => DataType::Utf8,
            Col::I64(_) => DataType::Int64,
            Col::F64(_) => DataType::Float64,
            Col::Bool(_) => DataType::Boolean,
            Col::Ts(_) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    fn take_array(&mut self) -> ArrayRef {
        match self {
            Col::Str(c) => Arc::new(c.finish()),
            Col::I64(c) => Arc::new(c.finish()),
            Col::F64(c) => Arc::new(c.finish()),
            Col::Bool(c) => Arc::new(c.finish()),
            Col::Ts(c) => Arc::new(c.finish().with_timezone("UTC")),
        }
    }
}

/// The columns of `id_graph_updates` as Segment lands them.
pub fn id_graph_columns() -> Vec<(String, Col)> {
    let s = |n: &str| (n.to_string(), Col::str());
    vec![
        s("segment_id"),
        s("canonical_segment_id"),
        s("triggering_event_type"),
        s("triggering_event_id"),
        ("seq".to_string(), Col::i64()),
        ("timestamp".to_string(), Col::ts()),
        ("uuid_ts".to_string(), Col::ts()),
    ]
}

/// Rows of one table waiting to be written.
pub struct TableBuf {
    dir: PathBuf,
    names: Vec<String>,
    cols: Vec<Col>,
    rows: usize,
    rows_per_file: usize,
    files: usize,
    /// Total rows written.
    pub written: u64,
    upper_case: bool,
    string_seq: bool,
    /// Day (`YYYY-MM-DD`) of the first buffered row, for the Hive folder.
    day: Option<String>,
}

impl TableBuf {
    /// A buffer for `<root>/<name>/` with the given columns.
    pub fn new(
        root: &Path,
        name: &str,
        cols: Vec<(String, Col)>,
        rows_per_file: usize,
        upper_case: bool,
        string_seq: bool,
    ) -> Self {
        let (names, cols) = cols.into_iter().unzip();
        TableBuf {
            dir: root.join(if upper_case {
                name.to_uppercase()
            } else {
                name.to_string()
            }),
            names,
            cols,
            rows: 0,
            rows_per_file: rows_per_file.max(1),
            files: 0,
            written: 0,
            upper_case,
            string_seq,
            day: None,
        }
    }

    /// Appends one row (values in column order); flushes when a file is full.
    pub fn push(&mut self, row: Vec<Val>, day: &str) -> Result<(), GenError> {
        debug_assert_eq!(row.len(), self.cols.len());
        if self.day.is_none() {
            self.day = Some(day.to_string());
        }
        for (c, v) in self.cols.iter_mut().zip(row) {
            c.push(v);
        }
        self.rows += 1;
        if self.rows >= self.rows_per_file {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered rows as the next file.
    pub fn flush(&mut self) -> Result<(), GenError> {
        if self.rows == 0 {
            return Ok(());
        }
        let day = self.day.take().unwrap_or_else(|| "unknown".into());
        let dir = self.dir.join(format!("day={day}"));
        create_dir_all(&dir).map_err(|e| GenError::Io(dir.display().to_string(), e))?;
        let path = dir.join(format!("part-{:05}.parquet", self.files));
        let mut fields = vec![];
        let mut arrays = vec![];
        for (name, col) in self.names.iter().zip(self.cols.iter_mut()) {
            let mut array = col.take_array();
            let mut dt = col.data_type();
            if name == "seq" && self.string_seq {
                array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                dt = DataType::Utf8;
            }
            let name = if self.upper_case {
                name.to_uppercase()
            } else {
                name.clone()
            };
            fields.push(Field::new(name, dt, true));
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        let file = File::create(&path).map_err(|e| GenError::Io(path.display().to_string(), e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(128 * 1024))
            .build();
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        self.written += self.rows as u64;
        self.rows = 0;
        self.files += 1;
        Ok(())
    }

    /// Files written so far.
    pub fn files(&self) -> usize {
        self.files
    }
}

//! A row buffer per landed table that flushes to numbered Parquet files.

use std::fs::{File, create_dir_all};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::GenError;

/// One column's values.
#[derive(Debug, Clone)]
pub enum Col {
    /// Strings.
    Str(Vec<Option<String>>),
    /// 64-bit integers.
    I64(Vec<Option<i64>>),
    /// Doubles.
    F64(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Microseconds since the epoch, UTC.
    Ts(Vec<Option<i64>>),
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
    fn empty_like(&self) -> Col {
        match self {
            Col::Str(_) => Col::Str(vec![]),
            Col::I64(_) => Col::I64(vec![]),
            Col::F64(_) => Col::F64(vec![]),
            Col::Bool(_) => Col::Bool(vec![]),
            Col::Ts(_) => Col::Ts(vec![]),
        }
    }

    fn push(&mut self, v: Val) {
        match (self, v) {
            (Col::Str(c), Val::Str(s)) => c.push(Some(s)),
            (Col::I64(c), Val::I64(x)) => c.push(Some(x)),
            (Col::F64(c), Val::F64(x)) => c.push(Some(x)),
            (Col::Bool(c), Val::Bool(x)) => c.push(Some(x)),
            (Col::Ts(c), Val::Ts(x)) => c.push(Some(x)),
            (Col::Str(c), _) => c.push(None),
            (Col::I64(c), _) => c.push(None),
            (Col::F64(c), _) => c.push(None),
            (Col::Bool(c), _) => c.push(None),
            (Col::Ts(c), _) => c.push(None),
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
        let fresh = self.empty_like();
        match std::mem::replace(self, fresh) {
            Col::Str(v) => Arc::new(StringArray::from(v)),
            Col::I64(v) => Arc::new(Int64Array::from(v)),
            Col::F64(v) => Arc::new(Float64Array::from(v)),
            Col::Bool(v) => Arc::new(BooleanArray::from(v)),
            Col::Ts(v) => Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")),
        }
    }
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

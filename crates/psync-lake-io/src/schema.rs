//! Schema normalisation (SPEC §2): every file of a table is read by lower-cased
//! column name; key columns get one fixed type whatever the warehouse wrote; other
//! columns (traits, event properties) get the widest type their files agree on.
//!
//! | column | accepted in a file | read as |
//! | --- | --- | --- |
//! | ids (`segment_id`, `external_id_value`, ...) | any string | `Utf8` |
//! | `seq` | integer, zero-scale decimal, decimal string | `Int64` |
//! | times (`timestamp`, `uuid_ts`, ...) | timestamp of any unit/zone, date, ISO string | `Timestamp(µs, UTC)` |
//! | anything else | any type; files may differ | the common type |

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{LakeError, Result};

/// Columns that hold identifiers and must be strings.
pub const ID_COLUMNS: &[&str] = &[
    "segment_id",
    "canonical_segment_id",
    "external_id_type",
    "external_id_value",
    "external_id_hash",
    "triggering_event_type",
    "triggering_event_id",
    "event_id",
    "event_source_id",
    "user_id",
    "anonymous_id",
    "merged_to",
];

/// Columns that hold points in time.
pub const TIME_COLUMNS: &[&str] = &[
    "timestamp",
    "uuid_ts",
    "received_at",
    "sent_at",
    "original_timestamp",
];

/// The numeric update sequence column.
pub const SEQ_COLUMN: &str = "seq";

/// The type every time column is read as.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The logical type of `name` given one file's physical type, or why it is refused.
fn key_column_type(name: &str, dt: &DataType) -> Option<Result<DataType, String>> {
    let is_string = matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(dt, DataType::Dictionary(_, v) if v.is_string());
    if ID_COLUMNS.contains(&name) {
        return Some(if is_string || dt == &DataType::Null {
            Ok(DataType::Utf8)
        } else {
            Err(format!("column '{name}' has type {dt}, expected a string"))
        });
    }
    if name == SEQ_COLUMN {
        return Some(match dt {
            DataType::Decimal32(_, s)
            | DataType::Decimal64(_, s)
            | DataType::Decimal128(_, s)
            | DataType::Decimal256(_, s)
                if *s != 0 =>
            {
                Err(format!(
                    "column 'seq' has type {dt}; expected an integer (scale 0)"
                ))
            }
            _ if dt.is_integer() || dt.is_decimal() || is_string || dt == &DataType::Null => {
                Ok(DataType::Int64)
            }
            _ => Err(format!(
                "column 'seq' has type {dt}, expected an integer or a decimal string"
            )),
        });
    }
    if TIME_COLUMNS.contains(&name) {
        return Some(match dt {
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null => {
                Ok(time_type())
            }
            _ if is_string => Ok(time_type()),
            _ => Err(format!(
                "column '{name}' has type {dt}, expected a timestamp"
            )),
        });
    }
    None
}

/// The logical form of a non-key type: no views, no dictionaries, µs UTC times.
fn plain(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => plain(v),
        DataType::Timestamp(_, _) => time_type(),
        other => other.clone(),
    }
}

/// The common type of two non-key types, if there is a lossless-enough one.
fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Null, x) | (x, Null) => Some(x.clone()),
        (x, y) if x.is_integer() && y.is_integer() => Some(Int64),
        (x, y) if x.is_numeric() && y.is_numeric() => Some(Float64),
        (Utf8, x) | (x, Utf8) if !x.is_nested() => Some(Utf8),
        _ => None,
    }
}

/// One file's schema, with lower-cased names.
#[derive(Debug, Clone)]
pub struct FileSchema {
    /// The file, for messages.
    pub file: String,
    /// Lower-cased column name → physical type.
    pub columns: Vec<(String, DataType)>,
}

impl FileSchema {
    /// Lower-cases `schema`'s names and checks them for clashes and bad key types.
    pub fn new(file: String, schema: &Schema) -> Result<Self> {
        let mut seen = BTreeMap::new();
        let mut columns = vec![];
        for f in schema.fields() {
            let lower = f.name().to_lowercase();
            if let Some(prev) = seen.insert(lower.clone(), f.name().clone()) {
                return Err(LakeError::Schema {
                    file,
                    message: format!("columns '{prev}' and '{}' differ only in case", f.name()),
                });
            }
            if let Some(Err(message)) = key_column_type(&lower, f.data_type()) {
                return Err(LakeError::Schema { file, message });
            }
            columns.push((lower, f.data_type().clone()));
        }
        Ok(FileSchema { file, columns })
    }
}

/// Unifies the schemas of a table's files into the table's logical schema:
/// lower-case names in first-seen order, each column its normalised type.
pub fn unify(files: &[FileSchema]) -> Result<SchemaRef> {
    let mut order: Vec<String> = vec![];
    let mut types: BTreeMap<String, (DataType, &str)> = BTreeMap::new();
    for fs in files {
        for (name, dt) in &fs.columns {
            let logical = match key_column_type(name, dt) {
                Some(Ok(t)) => t,
                Some(Err(message)) => {
                    return Err(LakeError::Schema {
                        file: fs.file.clone(),
                        message,
                    });
                }
                None => plain(dt),
            };
            match types.get(name) {
                None => {
                    order.push(name.clone());
                    types.insert(name.clone(), (logical, fs.file.as_str()));
                }
                Some((prev, prev_file)) => {
                    let Some(t) = widen(prev, &logical) else {
                        return Err(LakeError::Schema {
                            file: fs.file.clone(),
                            message: format!(
                                "column '{name}' has type {logical} here but {prev} in {prev_file}"
                            ),
                        });
                    };
                    let prev_file = *prev_file;
                    types.insert(name.clone(), (t, prev_file));
                }
            }
        }
    }
    let fields: Vec<Field> = order
        .iter()
        .map(|n| Field::new(n, types[n].0.clone(), true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(file: &str, cols: &[(&str, DataType)]) -> Result<FileSchema> {
        let schema = Schema::new(
            cols.iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        );
        FileSchema::new(file.into(), &schema)
    }

    #[test]
    fn upper_case_and_mixed_types_unify() {
        let a = fs(
            "a.parquet",
            &[
                ("SEGMENT_ID", DataType::Utf8View),
                ("SEQ", DataType::Utf8),
                ("TIMESTAMP", DataType::Timestamp(TimeUnit::Nanosecond, None)),
                ("EMAIL", DataType::Utf8),
            ],
        )
        .unwrap();
        let b = fs(
            "b.parquet",
            &[
                ("segment_id", DataType::Utf8),
                ("seq", DataType::Int32),
                (
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                ),
                ("age", DataType::Int32),
            ],
        )
        .unwrap();
        let s = unify(&[a, b]).unwrap();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["segment_id", "seq", "timestamp", "email", "age"]);
        assert_eq!(s.field(1).data_type(), &DataType::Int64);
        assert_eq!(s.field(2).data_type(), &time_type());
        assert_eq!(s.field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn wrong_key_type_names_the_file() {
        let e = fs("bad.parquet", &[("segment_id", DataType::Int64)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.parquet: column 'segment_id'"), "{e}");
    }

    #[test]
    fn conflicting_trait_types_name_both_files() {
        let a = fs(
            "a.parquet",
            &[(
                "x",
                DataType::List(Arc::new(Field::new("i", DataType::Int32, true))),
            )],
        )
        .unwrap();
        let b = fs("b.parquet", &[("x", DataType::Boolean)]).unwrap();
        let e = unify(&[a, b]).unwrap_err().to_string();
        assert!(e.contains("a.parquet") && e.contains("b.parquet"), "{e}");
    }

    #[test]
    fn numeric_traits_widen() {
        assert_eq!(
            widen(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
        assert_eq!(
            widen(&DataType::Int32, &DataType::Float32),
            Some(DataType::Float64)
        );
        assert_eq!(
            widen(&DataType::Boolean, &DataType::Utf8),
            Some(DataType::Utf8)
        );
    }
}

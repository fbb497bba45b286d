//! The landed tables as the views see them: a [`DataFrame`] with the columns a
//! view needs, whatever the lake holds (a missing table reads as empty, a missing
//! optional column as NULL), plus the warnings that go into the run record.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::Result;
use datafusion::logical_expr::JoinType;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, ident, lit};
use psync_lake_io::Lake;
use psync_lake_io::schema::{SEQ_COLUMN, time_type};

/// `id_graph_updates`: one row per profile creation or merge.
pub const ID_GRAPH_UPDATES: &str = "id_graph_updates";
/// `external_id_mapping_updates`: the segment_id each identifier was seen on.
pub const EXTERNAL_ID_MAPPING_UPDATES: &str = "external_id_mapping_updates";
/// `profile_traits_updates`: trait values written on identify calls and merges.
pub const PROFILE_TRAITS_UPDATES: &str = "profile_traits_updates";

/// The order-key columns, most significant first (SPEC §3).
pub const ORDER_COLUMNS: [&str; 3] = [SEQ_COLUMN, "timestamp", "uuid_ts"];

/// The order-key columns as expressions, for `last_seen`/`latest` calls.
pub fn order_key() -> Vec<Expr> {
    ORDER_COLUMNS.iter().map(|c| col(*c)).collect()
}

/// A column a view reads, with the type it is read as.
#[derive(Debug, Clone, Copy)]
pub struct Needed {
    /// Lower-case column name.
    pub name: &'static str,
    /// `Utf8` for ids, `Int64` for seq, times as µs UTC.
    pub kind: ColumnKind,
    /// Whether a table without this column is an error (else it reads as NULL).
    pub required: bool,
}

/// The types columns are normalised to.
#[derive(Debug, Clone, Copy)]
pub enum ColumnKind {
    /// An identifier.
    Id,
    /// The numeric sequence.
    Seq,
    /// A point in time.
    Time,
}

impl ColumnKind {
    fn data_type(self) -> DataType {
        match self {
            ColumnKind::Id => DataType::Utf8,
            ColumnKind::Seq => DataType::Int64,
            ColumnKind::Time => time_type(),
        }
    }
}

/// A required id column.
pub const fn id(name: &'static str) -> Needed {
    Needed {
        name,
        kind: ColumnKind::Id,
        required: true,
    }
}

/// An optional id column.
pub const fn opt_id(name: &'static str) -> Needed {
    Needed {
        name,
        kind: ColumnKind::Id,
        required: false,
    }
}

/// The three order-key columns, all optional (a NULL key sorts lowest).
pub const ORDER_NEEDED: [Needed; 3] = [
    Needed {
        name: "seq",
        kind: ColumnKind::Seq,
        required: false,
    },
    Needed {
        name: "timestamp",
        kind: ColumnKind::Time,
        required: false,
    },
    Needed {
        name: "uuid_ts",
        kind: ColumnKind::Time,
        required: false,
    },
];

/// Warnings gathered while planning and running; they go to the run record.
#[derive(Debug, Default, Clone)]
pub struct Warnings(pub Vec<String>);

impl Warnings {
    /// Records one warning and logs it.
    pub fn push(&mut self, message: String) {
        tracing::warn!("{message}");
        self.0.push(message);
    }
}

/// Reads landed tables for the views.
#[derive(Clone)]
pub struct Inputs<'a> {
    ctx: &'a SessionContext,
    lake: &'a Lake,
    /// Rows read along with a table's landed rows: an incremental run's saved state.
    overlay: HashMap<String, DataFrame>,
    /// Per table, only the rows whose key columns are among these keys' rows: an
    /// incremental run recomputes the keys a delta touches.
    only: HashMap<String, (DataFrame, Vec<String>)>,
    /// Per table, a predicate its rows must pass, pushed into the Parquet scan
    /// (row groups whose statistics rule it out are not read): `explain` reads
    /// one person's rows of a large lake.
    filters: HashMap<String, Expr>,
    /// Only updates at or before this instant (µs since the epoch, UTC); a NULL
    /// timestamp counts as older than any.
    as_of: Option<i64>,
}

impl<'a> Inputs<'a> {
    /// Inputs from `lake`, planned in `ctx`.
    pub fn new(ctx: &'a SessionContext, lake: &'a Lake) -> Self {
        Inputs {
            ctx,
            lake,
            overlay: HashMap::new(),
            only: HashMap::new(),
            filters: HashMap::new(),
            as_of: None,
        }
    }

    /// Reads only the rows of `table` whose `columns` equal a row of `keys` (whose
    /// columns are matched by position). `keys` should be small: it is the hash
    /// join's build side.
    pub fn only(mut self, table: &str, keys: DataFrame, columns: &[&str]) -> Self {
        let columns = columns.iter().map(|c| c.to_string()).collect();
        self.only.insert(table.to_string(), (keys, columns));
        self
    }

    /// Reads only the rows of `table` for which `predicate` (over the table's
    /// columns, by lower-case name) is true; a second call replaces the first.
    pub fn filter(mut self, table: &str, predicate: Expr) -> Self {
        self.filters.insert(table.to_string(), predicate);
        self
    }

    /// Reads `rows` (matched to the table's columns by name) as part of `table`.
    pub fn with_overlay(mut self, table: &str, rows: DataFrame) -> Self {
        self.overlay.insert(table.to_string(), rows);
        self
    }

    /// Keeps only updates with `timestamp <= micros` (or a NULL timestamp).
    pub fn as_of(mut self, micros: Option<i64>) -> Self {
        self.as_of = micros;
        self
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        self.lake
    }

    /// The context.
    pub fn ctx(&self) -> &SessionContext {
        self.ctx
    }

    /// `table` with every column it has (the trait pivot needs them all); `None`
    /// when the lake has no such table.
    pub fn whole(&self, table: &str) -> Result<Option<DataFrame>> {
        let landed = match self.lake.table(table) {
            Some(t) => Some(self.ctx.read_table(Arc::new(t.clone()))?),
            None => None,
        };
        let df = match (landed, self.overlay.get(table)) {
            (Some(l), Some(o)) => l.union_by_name(o.clone())?,
            (Some(l), None) => l,
            (None, Some(o)) => o.clone(),
            (None, None) => return Ok(None),
        };
        let df = match self.as_of {
            Some(t) if df.schema().has_column_with_unqualified_name("timestamp") => {
                let bound = lit(ScalarValue::TimestampMicrosecond(
                    Some(t),
                    Some("UTC".into()),
                ));
                let ts = col("timestamp");
                df.filter(ts.clone().is_null().or(ts.lt_eq(bound)))?
            }
            _ => df,
        };
        let df = match self.filters.get(table) {
            Some(predicate) => df.filter(predicate.clone())?,
            None => df,
        };
        match self.only.get(table) {
            Some((keys, columns)) => {
                // Key columns renamed apart from the table's.
                let renamed: Vec<String> =
                    (0..columns.len()).map(|i| format!("__only_{i}")).collect();
                let keys = keys.clone().select(
                    keys.schema()
                        .columns()
                        .iter()
                        .zip(&renamed)
                        .map(|(c, r)| Expr::Column(c.clone()).alias(r))
                        .collect::<Vec<_>>(),
                )?;
                let left: Vec<&str> = renamed.iter().map(String::as_str).collect();
                let right: Vec<&str> = columns.iter().map(String::as_str).collect();
                Ok(Some(keys.join(
                    df,
                    JoinType::RightSemi,
                    &left,
                    &right,
                    None,
                )?))
            }
            None => Ok(Some(df)),
        }
    }

    /// `table` projected to `needed`, typed as `needed` says. A missing table is
    /// empty (with a warning), a missing optional column NULL, a missing required
    /// column an error naming the table.
    pub fn select(
        &self,
        table: &str,
        needed: &[Needed],
        warnings: &mut Warnings,
    ) -> Result<DataFrame> {
        self.select_with(table, needed, &[], warnings)
    }

    /// [`Self::select`] plus the `extra` columns of the table, as landed (they
    /// must exist in the table's schema when the table exists).
    pub fn select_with(
        &self,
        table: &str,
        needed: &[Needed],
        extra: &[String],
        warnings: &mut Warnings,
    ) -> Result<DataFrame> {
        let Some(df) = self.whole(table)? else {
            warnings.push(format!(
                "table '{table}' not found in {}: read as empty",
                self.lake.location().display
            ));
            let schema = Schema::new(
                needed
                    .iter()
                    .map(|n| {
                        datafusion::arrow::datatypes::Field::new(n.name, n.kind.data_type(), true)
                    })
                    .collect::<Vec<_>>(),
            );
            return self
                .ctx
                .read_table(Arc::new(EmptyTable::new(Arc::new(schema))));
        };
        let have = df.schema().clone();
        let mut exprs = Vec::with_capacity(needed.len());
        for n in needed {
            if have.has_column_with_unqualified_name(n.name) {
                exprs.push(ident(n.name));
            } else if n.required {
                return Err(datafusion::error::DataFusionError::Plan(format!(
                    "table '{table}' in {} has no column '{}'",
                    self.lake.location().display,
                    n.name
                )));
            } else {
                let null = ScalarValue::try_from(&n.kind.data_type())?;
                exprs.push(lit(null).alias(n.name));
            }
        }
        exprs.extend(extra.iter().map(ident));
        df.select(exprs)
    }

    /// The columns of `table` that `keep` accepts (by lower-case name), in
    /// landed order, with their types; none when the lake has no such table.
    pub fn columns_where(
        &self,
        table: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, DataType)> {
        self.lake
            .schema_of(table)
            .map(|s| {
                s.fields()
                    .iter()
                    .filter(|f| keep(f.name()))
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Warns about rows a view will skip because `column` is NULL, counted from
    /// the Parquet footers (no scan).
    pub fn warn_nulls(&self, table: &str, column: &str, warnings: &mut Warnings) {
        if let Some(t) = self.lake.table(table) {
            match t.null_count(column) {
                Some(0) => {}
                Some(n) => warnings.push(format!("{table}: {n} rows with NULL {column} skipped")),
                None => {}
            }
        }
    }
}

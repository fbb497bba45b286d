//! The per-row [`Accumulator`] of the three functions: a plain, obviously correct
//! implementation over `ScalarValue`s, used where DataFusion does not group
//! (window frames, ungrouped aggregates) and as the oracle the grouped
//! accumulator is tested against.

use std::cmp::Ordering;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::common::scalar::ScalarStructBuilder;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::Accumulator;

use crate::groups::{ValueShape, state_columns};
use crate::order::order_as_i64;
use crate::udaf::Modes;

/// A winner: its order key (None = NULL, lowest) and its value.
#[derive(Debug, Clone)]
struct Best {
    key: Vec<Option<i64>>,
    value: ScalarValue,
}

/// Per-row accumulator for `last_seen`, `latest` and `last_seen_struct`.
#[derive(Debug)]
pub(crate) struct LastSeenRow {
    shape: ValueShape,
    n: usize,
    ignore_nulls: bool,
    state_input: bool,
    state_output: Option<datafusion::arrow::datatypes::Fields>,
    best: Vec<Best>,
}

/// NULL sorts first; equal types otherwise compare by value.
fn cmp_scalar(a: &ScalarValue, b: &ScalarValue) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

impl LastSeenRow {
    pub(crate) fn new(modes: Modes) -> Result<Self> {
        let Modes {
            shape,
            n,
            ignore_nulls,
            state_input,
            state_output,
        } = modes;
        let best = shape
            .field_types()
            .iter()
            .map(|t| {
                Ok(Best {
                    key: vec![None; n],
                    value: ScalarValue::try_from(t)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LastSeenRow {
            shape,
            n,
            ignore_nulls,
            state_input,
            state_output,
            best,
        })
    }

    /// Offers one candidate to one field.
    fn offer(&mut self, field: usize, key: Vec<Option<i64>>, value: ScalarValue) {
        if self.ignore_nulls && value.is_null() {
            return;
        }
        let best = &mut self.best[field];
        let ord = key
            .cmp(&best.key)
            .then_with(|| cmp_scalar(&value, &best.value));
        if ord == Ordering::Greater {
            *best = Best { key, value };
        }
    }

    fn key_at(cols: &[Int64Array], row: usize) -> Vec<Option<i64>> {
        cols.iter()
            .map(|c| c.is_valid(row).then(|| c.value(row)))
            .collect()
    }
}

use datafusion::arrow::array::Array;

impl Accumulator for LastSeenRow {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.state_input {
            return self.merge_batch(&state_columns(values)?);
        }
        let Some((value, order)) = values.split_first() else {
            return internal_err!("last_seen: no arguments");
        };
        let fields = self.shape.split(value)?;
        let order = order.iter().map(order_as_i64).collect::<Result<Vec<_>>>()?;
        for row in 0..value.len() {
            let key = Self::key_at(&order, row);
            for (f, col) in fields.iter().enumerate() {
                self.offer(f, key.clone(), ScalarValue::try_from_array(col, row)?);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let m = self.best.len();
        if states.len() != m + m * self.n {
            return internal_err!("last_seen: unexpected state width {}", states.len());
        }
        let (fields, keys) = states.split_at(m);
        let keys = keys.iter().map(order_as_i64).collect::<Result<Vec<_>>>()?;
        let rows = fields.first().map_or(0, |f| f.len());
        for row in 0..rows {
            for (f, col) in fields.iter().enumerate() {
                let key = Self::key_at(&keys[f * self.n..(f + 1) * self.n], row);
                self.offer(f, key, ScalarValue::try_from_array(col, row)?);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let mut out: Vec<ScalarValue> = self.best.iter().map(|b| b.value.clone()).collect();
        for b in &self.best {
            out.extend(b.key.iter().map(|k| ScalarValue::Int64(*k)));
        }
        Ok(out)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if let Some(fields) = self.state_output.clone() {
            let mut builder = ScalarStructBuilder::new();
            for (field, value) in fields.iter().zip(self.state()?) {
                builder = builder.with_scalar(field.as_ref().clone(), value);
            }
            return builder.build();
        }
        match &self.shape {
            ValueShape::Single(_) => Ok(self.best[0].value.clone()),
            ValueShape::Struct(fields) => {
                let mut builder = ScalarStructBuilder::new();
                for (field, best) in fields.iter().zip(&self.best) {
                    builder = builder.with_scalar(field.as_ref().clone(), best.value.clone());
                }
                builder.build()
            }
        }
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .best
                .iter()
                .map(|b| b.value.size() + b.key.capacity() * 16)
                .sum::<usize>()
    }
}

//! The update order shared by every function here: order arguments are compared
//! lexicographically, each as a 64-bit integer, and a NULL sorts below any value.
//!
//! A key is stored as `i128` so that NULL (`i128::MIN`) sorts strictly below
//! every `i64`, `i64::MIN` included.

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, plan_err};

/// One order-key component; `NULL_KEY` is a NULL.
pub(crate) type Key = i128;

/// The encoding of a NULL order-key component: lower than any value.
pub(crate) const NULL_KEY: Key = i128::MIN;

/// The type an order argument is coerced to before it reaches an accumulator.
///
/// Integers and zero-scale decimals become `Int64`; dates and timestamps keep
/// their type (they are compared by their raw 64-bit value, which orders them
/// correctly within one column).
pub(crate) fn coerce_order_type(fn_name: &str, dt: &DataType) -> Result<DataType> {
    use DataType::*;
    Ok(match dt {
        Null | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Int64,
        Decimal32(_, 0) | Decimal64(_, 0) | Decimal128(_, 0) | Decimal256(_, 0) => Int64,
        Timestamp(_, _) | Date32 | Date64 => dt.clone(),
        other => {
            return plan_err!(
                "{fn_name}: an order argument must be an integer, a decimal with scale 0, a date or a timestamp, not {other}"
            );
        }
    })
}

/// Casts one order argument to `Int64` (timestamps and dates by their raw value).
pub(crate) fn order_as_i64(array: &ArrayRef) -> Result<Int64Array> {
    let as_int = match array.data_type() {
        DataType::Int64 => array.clone(),
        DataType::Date32 => cast(&cast(array, &DataType::Int32)?, &DataType::Int64)?,
        _ => cast(array, &DataType::Int64)?,
    };
    Ok(as_int.as_primitive::<Int64Type>().clone())
}

/// Encodes `order` (one array per order argument, all of `rows` rows) into a flat
/// row-major key buffer of stride `order.len()`, appended to `out`.
pub(crate) fn encode_keys(order: &[Int64Array], rows: usize, out: &mut Vec<Key>) {
    let n = order.len();
    let start = out.len();
    out.resize(start + rows * n, NULL_KEY);
    for (j, col) in order.iter().enumerate() {
        let values = col.values();
        match col.nulls().filter(|nulls| nulls.null_count() > 0) {
            None => {
                for (row, v) in values.iter().enumerate() {
                    out[start + row * n + j] = *v as Key;
                }
            }
            Some(nulls) => {
                for (row, v) in values.iter().enumerate() {
                    if nulls.is_valid(row) {
                        out[start + row * n + j] = *v as Key;
                    }
                }
            }
        }
    }
}

/// Decodes one component of a key back to a nullable `i64`.
pub(crate) fn decode_key(k: Key) -> Option<i64> {
    // Keys are only ever built from i64 values or NULL_KEY.
    (k != NULL_KEY).then_some(k as i64)
}

/// Compares two keys of equal length lexicographically.
#[inline]
pub(crate) fn cmp_keys(a: &[Key], b: &[Key]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.cmp(y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn null_sorts_below_min() {
        let a = Arc::new(Int64Array::from(vec![None, Some(i64::MIN), Some(3)])) as ArrayRef;
        let a = order_as_i64(&a).unwrap();
        let mut keys = vec![];
        encode_keys(&[a], 3, &mut keys);
        assert!(keys[0] < keys[1] && keys[1] < keys[2]);
        assert_eq!(decode_key(keys[0]), None);
        assert_eq!(decode_key(keys[1]), Some(i64::MIN));
    }

    #[test]
    fn lexicographic() {
        assert_eq!(cmp_keys(&[1, 2], &[1, 3]), Ordering::Less);
        assert_eq!(cmp_keys(&[2, NULL_KEY], &[1, 3]), Ordering::Greater);
        assert_eq!(cmp_keys(&[1, 3], &[1, 3]), Ordering::Equal);
    }

    #[test]
    fn rejects_strings() {
        assert!(coerce_order_type("f", &DataType::Utf8).is_err());
        assert_eq!(
            coerce_order_type("f", &DataType::Int32).unwrap(),
            DataType::Int64
        );
    }
}

//! The [`AggregateUDFImpl`] shared by `last_seen`, `latest` and `last_seen_struct`;
//! they differ only in whether NULL values are skipped and in how the value
//! argument splits into fields.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature, Volatility,
};

use crate::groups::{LastSeenGroups, ValueShape};
use crate::order::coerce_order_type;
use crate::row::LastSeenRow;

/// Which of the three functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Last non-NULL value.
    LastSeen,
    /// Value of the latest row, NULL included.
    Latest,
    /// Last non-NULL value of every field of a struct, each field on its own.
    LastSeenStruct,
    /// `last_seen_struct`, returning its state (every field's value and order
    /// key) so that it can be stored and merged later.
    LastSeenState,
    /// Merges states of `last_seen_state` (or of itself) into one state.
    LastSeenMerge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LastSeen => "last_seen",
            Kind::Latest => "latest",
            Kind::LastSeenStruct => "last_seen_struct",
            Kind::LastSeenState => "last_seen_state",
            Kind::LastSeenMerge => "last_seen_merge",
        }
    }

    fn ignore_nulls(self) -> bool {
        !matches!(self, Kind::Latest)
    }

    /// Whether the result is a state struct (see [`state_struct_fields`]).
    fn returns_state(self) -> bool {
        matches!(self, Kind::LastSeenState | Kind::LastSeenMerge)
    }
}

/// The name of the state-struct field holding order argument `j` of `field`.
pub fn state_key_name(field: &str, j: usize) -> String {
    format!("_k{j}_{field}")
}

/// The fields of the state struct returned by `last_seen_state` and
/// `last_seen_merge`: every value field (nullable), then one `Int64` per field
/// and order argument, field-major, named by [`state_key_name`]. This is also
/// the layout of the functions' intermediate state, so a stored state is merged
/// exactly like a partial aggregate.
pub fn state_struct_fields(values: &Fields, n: usize) -> Fields {
    let mut out: Vec<FieldRef> = nullable(values).iter().cloned().collect();
    for f in values.iter() {
        for j in 0..n {
            out.push(Arc::new(Field::new(
                state_key_name(f.name(), j),
                DataType::Int64,
                true,
            )));
        }
    }
    out.into()
}

/// Splits a state struct's fields into the value fields and the number of order
/// arguments; `None` when the fields are not laid out as [`state_struct_fields`].
pub fn parse_state_struct(fields: &Fields) -> Option<(Fields, usize)> {
    let first = fields.first()?;
    let m = fields
        .iter()
        .position(|f| f.name() == &state_key_name(first.name(), 0))?;
    let n = (fields.len() - m) / m;
    let values: Fields = fields.iter().take(m).cloned().collect();
    let expected = state_struct_fields(&values, n);
    let same = expected.len() == fields.len()
        && expected
            .iter()
            .zip(fields.iter())
            .skip(m)
            .all(|(a, b)| a.name() == b.name() && b.data_type() == &DataType::Int64);
    same.then_some((values, n))
}

/// A last-by-order aggregate function; see the crate docs for semantics.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LastSeenUdaf {
    kind: Kind,
    signature: Signature,
}

impl LastSeenUdaf {
    /// The function of the given kind.
    pub fn new(kind: Kind) -> Self {
        LastSeenUdaf {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The value fields and the number of order arguments, from the argument types.
    fn shape(&self, arg_types: &[DataType]) -> Result<(ValueShape, usize)> {
        let name = self.kind.name();
        let Some(value_type) = arg_types.first() else {
            return plan_err!("{name} needs arguments");
        };
        let n = arg_types.len() - 1;
        match (self.kind, value_type) {
            (Kind::LastSeenMerge, DataType::Struct(fields)) => match parse_state_struct(fields) {
                Some((values, n)) => Ok((ValueShape::Struct(values), n)),
                None => plan_err!(
                    "last_seen_merge: the argument must be a state returned by last_seen_state, not a struct of {} fields",
                    fields.len()
                ),
            },
            (Kind::LastSeenStruct | Kind::LastSeenState, DataType::Struct(fields)) => {
                Ok((ValueShape::Struct(nullable(fields)), n))
            }
            (Kind::LastSeenStruct | Kind::LastSeenState | Kind::LastSeenMerge, other) => {
                plan_err!(
                    "{name}: the first argument must be a struct (e.g. named_struct(...)), not {other}"
                )
            }
            (_, dt) => Ok((ValueShape::Single(dt.clone()), n)),
        }
    }

    /// How the accumulators read their input and what they return.
    fn modes(&self, arg_types: &[DataType]) -> Result<Modes> {
        let (shape, n) = self.shape(arg_types)?;
        let output = match (&shape, self.kind.returns_state()) {
            (ValueShape::Struct(values), true) => Some(state_struct_fields(values, n)),
            _ => None,
        };
        Ok(Modes {
            shape,
            n,
            ignore_nulls: self.kind.ignore_nulls(),
            state_input: self.kind == Kind::LastSeenMerge,
            state_output: output,
        })
    }
}

fn arg_types(fields: &[FieldRef]) -> Vec<DataType> {
    fields.iter().map(|f| f.data_type().clone()).collect()
}

/// Every result field can be NULL (a group may never see a value).
fn nullable(fields: &Fields) -> Fields {
    fields
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect()
}

/// Replaces view types (which would drag whole input buffers into the state) by
/// their plain counterparts, recursively through structs.
fn without_views(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    Arc::new(
                        f.as_ref()
                            .clone()
                            .with_data_type(without_views(f.data_type())),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What an accumulator needs to know about its call.
#[derive(Debug, Clone)]
pub(crate) struct Modes {
    /// The value fields.
    pub shape: ValueShape,
    /// Order arguments (per field).
    pub n: usize,
    /// Whether NULL values are skipped.
    pub ignore_nulls: bool,
    /// The argument is a state struct, merged like a partial aggregate.
    pub state_input: bool,
    /// The result is the state, as a struct of these fields.
    pub state_output: Option<Fields>,
}

fn documentation(kind: Kind) -> &'static Documentation {
    static DOCS: LazyLock<[Documentation; 5]> = LazyLock::new(|| {
        use datafusion::logical_expr::aggregate_doc_sections::DOC_SECTION_GENERAL;
        [
            Documentation::builder(
                DOC_SECTION_GENERAL,
                "The last non-NULL `value` in update order: greatest order key wins (compared \
                 argument by argument, NULL lowest); on a full tie the greatest value wins.",
                "last_seen(value, order_key [, order_key ...])",
            )
            .with_sql_example(
                "```sql\nSELECT segment_id, last_seen(email, seq, \"timestamp\", uuid_ts) AS email\nFROM profile_traits_updates GROUP BY segment_id;\n```",
            )
            .with_argument("value", "Any expression; NULLs are skipped.")
            .with_argument("order_key", "Integer, zero-scale decimal, date or timestamp.")
            .build(),
            Documentation::builder(
                DOC_SECTION_GENERAL,
                "The `value` of the latest row in update order, even when it is NULL; on a full \
                 tie of the order key the greatest value wins.",
                "latest(value, order_key [, order_key ...])",
            )
            .with_sql_example(
                "```sql\nSELECT segment_id, latest(canonical_segment_id, seq, \"timestamp\", uuid_ts)\nFROM id_graph_updates GROUP BY segment_id;\n```",
            )
            .with_argument("value", "Any expression.")
            .with_argument("order_key", "Integer, zero-scale decimal, date or timestamp.")
            .build(),
            Documentation::builder(
                DOC_SECTION_GENERAL,
                "`last_seen` applied to every field of a struct at once, sharing one pass and \
                 one order-key comparison per row: returns a struct of the same fields.",
                "last_seen_struct(named_struct('a', a, 'b', b, ...), order_key [, order_key ...])",
            )
            .with_sql_example(
                "```sql\nSELECT segment_id,\n  last_seen_struct(named_struct('email', email, 'plan', plan), seq, \"timestamp\") AS t\nFROM profile_traits_updates GROUP BY segment_id;\n```",
            )
            .with_argument("value", "A struct; each field is tracked on its own, NULLs skipped.")
            .with_argument("order_key", "Integer, zero-scale decimal, date or timestamp.")
            .build(),
            Documentation::builder(
                DOC_SECTION_GENERAL,
                "`last_seen_struct`, returning its state: every field's last non-NULL value and \
                 the order key it came with (fields `_k0_<field>`, `_k1_<field>`, ...). States \
                 can be stored and merged later with `last_seen_merge`, exactly as if all rows \
                 had been aggregated at once.",
                "last_seen_state(named_struct('a', a, ...), order_key [, order_key ...])",
            )
            .with_sql_example(
                "```sql\nSELECT segment_id,\n  last_seen_state(named_struct('email', email), seq, \"timestamp\") AS s\nFROM profile_traits_updates GROUP BY segment_id;\n```",
            )
            .with_argument("value", "A struct; each field is tracked on its own, NULLs skipped.")
            .with_argument("order_key", "Integer, zero-scale decimal, date or timestamp.")
            .build(),
            Documentation::builder(
                DOC_SECTION_GENERAL,
                "Merges states returned by `last_seen_state` (or by itself) into one state; \
                 the values are `s.<field>`.",
                "last_seen_merge(state)",
            )
            .with_sql_example(
                "```sql\nSELECT owner, last_seen_merge(s)['email'] AS email FROM states GROUP BY owner;\n```",
            )
            .with_argument("state", "A struct as returned by `last_seen_state`.")
            .build(),
        ]
    });
    &DOCS[kind as usize]
}

impl AggregateUDFImpl for LastSeenUdaf {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.kind.name();
        if self.kind == Kind::LastSeenMerge {
            return match arg_types {
                [state] => Ok(vec![without_views(state)]),
                _ => plan_err!("{name} takes exactly one argument, a state"),
            };
        }
        let Some((value, order)) = arg_types.split_first() else {
            return plan_err!("{name} needs a value and at least one order key");
        };
        if order.is_empty() {
            return plan_err!(
                "{name} needs at least one order key after the value, e.g. {name}(x, seq)"
            );
        }
        std::iter::once(Ok(without_views(value)))
            .chain(order.iter().map(|t| coerce_order_type(name, t)))
            .collect()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let modes = self.modes(arg_types)?;
        Ok(match (modes.state_output, modes.shape) {
            (Some(state), _) => DataType::Struct(state),
            (None, ValueShape::Single(dt)) => dt,
            (None, ValueShape::Struct(fields)) => DataType::Struct(fields),
        })
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(LastSeenRow::new(
            self.modes(&arg_types(args.expr_fields))?,
        )?))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let Modes { shape, n, .. } = self.modes(&arg_types(args.input_fields))?;
        let types = shape.field_types();
        let mut out: Vec<FieldRef> = types
            .iter()
            .enumerate()
            .map(|(f, t)| Arc::new(Field::new(format!("{}[{f}]", args.name), t.clone(), true)))
            .collect();
        for f in 0..types.len() {
            for j in 0..n {
                out.push(Arc::new(Field::new(
                    format!("{}[{f}].key{j}", args.name),
                    DataType::Int64,
                    true,
                )));
            }
        }
        Ok(out)
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(LastSeenGroups::new(
            self.modes(&arg_types(args.expr_fields))?,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(documentation(self.kind))
    }
}

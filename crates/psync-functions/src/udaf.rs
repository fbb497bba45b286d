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
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LastSeen => "last_seen",
            Kind::Latest => "latest",
            Kind::LastSeenStruct => "last_seen_struct",
        }
    }

    fn ignore_nulls(self) -> bool {
        !matches!(self, Kind::Latest)
    }
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

    fn shape(&self, value_type: &DataType) -> Result<ValueShape> {
        match (self.kind, value_type) {
            (Kind::LastSeenStruct, DataType::Struct(fields)) => {
                Ok(ValueShape::Struct(nullable(fields)))
            }
            (Kind::LastSeenStruct, other) => {
                plan_err!(
                    "last_seen_struct: the first argument must be a struct (e.g. named_struct(...)), not {other}"
                )
            }
            (_, dt) => Ok(ValueShape::Single(dt.clone())),
        }
    }
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

fn documentation(kind: Kind) -> &'static Documentation {
    static DOCS: LazyLock<[Documentation; 3]> = LazyLock::new(|| {
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
        match self.shape(&arg_types[0])? {
            ValueShape::Single(dt) => Ok(dt),
            ValueShape::Struct(fields) => Ok(DataType::Struct(fields)),
        }
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let shape = self.shape(args.expr_fields[0].data_type())?;
        let n = args.expr_fields.len() - 1;
        Ok(Box::new(LastSeenRow::new(
            shape,
            n,
            self.kind.ignore_nulls(),
        )?))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let shape = self.shape(args.input_fields[0].data_type())?;
        let n = args.input_fields.len() - 1;
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
        let shape = self.shape(args.expr_fields[0].data_type())?;
        let n = args.expr_fields.len() - 1;
        Ok(Box::new(LastSeenGroups::new(
            shape,
            n,
            self.kind.ignore_nulls(),
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(documentation(self.kind))
    }
}

//! Where each of a person's trait values came from.
//!
//! ```text
//! members' profile_traits_updates rows (segment_id IN members, pushed into the scan)
//!   ─► last_seen_state(all traits)  (the incremental state's function: each
//!      trait's last non-NULL value and the order key it won with)
//!   ─► one row per trait ⟕ the rows holding that value with that key
//!      (one per trait: the smallest segment_id on a full tie)
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::empty::EmptyTable;
use datafusion::functions_nested::expr_fn::make_array;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{ExprFunctionExt, JoinType, Operator, binary_expr, cast};
use datafusion::prelude::{DataFrame, Expr, col, get_field, ident, lit, named_struct};
use psync_functions::state_key_name;
use psync_lake_io::schema::time_type;

use super::{Explainer, Found, in_list};
use crate::error::Result;
use crate::inputs::{
    Inputs, ORDER_COLUMNS, ORDER_NEEDED, PROFILE_TRAITS_UPDATES, Warnings, id, order_key,
};
use crate::views::profile_traits::{traits_of, traits_struct};

/// The columns of profile_traits_updates that say where a row came from, as landed.
fn provenance(inputs: &Inputs<'_>) -> Vec<(String, DataType)> {
    inputs.columns_where(PROFILE_TRAITS_UPDATES, |c| {
        c == "event_source_id" || c.starts_with("context_")
    })
}

/// The columns of `trait_sources('ID')` over `inputs`: `trait`, `value` (as
/// text), the source row's `segment_id`, `seq`, `timestamp`, `uuid_ts`, then its
/// `event_source_id` and `context_*` columns, as landed.
pub fn trait_sources_schema(inputs: &Inputs<'_>) -> SchemaRef {
    let mut fields = vec![
        Field::new("trait", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("segment_id", DataType::Utf8, true),
        Field::new("seq", DataType::Int64, true),
        Field::new("timestamp", time_type(), true),
        Field::new("uuid_ts", time_type(), true),
    ];
    fields.extend(
        provenance(inputs)
            .into_iter()
            .map(|(n, t)| Field::new(n, t, true)),
    );
    Arc::new(Schema::new(fields))
}

impl Explainer<'_> {
    /// One row per trait of `profile_traits`, in landed order: the person's value
    /// (NULL when none) and the update row that set it (see
    /// [`trait_sources_schema`]).
    pub async fn trait_sources(&self, f: &Found) -> Result<DataFrame> {
        let ctx = self.inputs.ctx();
        let traits = traits_of(&self.inputs);
        if traits.is_empty() {
            let empty = EmptyTable::new(trait_sources_schema(&self.inputs));
            return Ok(ctx.read_table(Arc::new(empty))?);
        }
        let extras: Vec<String> = provenance(&self.inputs)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut needed = vec![id("segment_id")];
        needed.extend(ORDER_NEEDED);
        let mut read: Vec<String> = traits.iter().map(|(t, _)| t.clone()).collect();
        read.extend(extras.iter().cloned());
        let updates = self
            .inputs
            .clone()
            .filter(
                PROFILE_TRAITS_UPDATES,
                in_list("segment_id", &f.person.members),
            )
            .select_with(
                PROFILE_TRAITS_UPDATES,
                &needed,
                &read,
                &mut Warnings::default(),
            )?
            .filter(col("segment_id").is_not_null())?
            .cache()
            .await?;

        // Every member's rows belong to the person: one group.
        let mut args = vec![traits_struct(&traits)];
        args.extend(order_key());
        let key = |t: &str, j: usize| get_field(col("s"), state_key_name(t, j));
        let winners = updates
            .clone()
            .aggregate(
                vec![],
                vec![psync_functions::last_seen_state().call(args).alias("s")],
            )?
            .select(vec![
                make_array(
                    traits
                        .iter()
                        .enumerate()
                        .map(|(i, (t, _))| {
                            named_struct(vec![
                                lit("trait"),
                                lit(t.as_str()),
                                lit("position"),
                                lit(i as i64),
                                lit("value"),
                                cast(get_field(col("s"), t.as_str()), DataType::Utf8),
                                lit("k0"),
                                key(t, 0),
                                lit("k1"),
                                key(t, 1),
                                lit("k2"),
                                key(t, 2),
                            ])
                        })
                        .collect(),
                )
                .alias("w"),
            ])?
            .unnest_columns(&["w"])?
            .select(vec![
                get_field(col("w"), "trait").alias("trait"),
                get_field(col("w"), "position").alias("position"),
                get_field(col("w"), "value").alias("value"),
                get_field(col("w"), "k0").alias("k0"),
                get_field(col("w"), "k1").alias("k1"),
                get_field(col("w"), "k2").alias("k2"),
            ])?;

        // Each row once per trait it holds a value of, keyed as the state keys it.
        let mut row_cols: Vec<Expr> = vec![
            col("segment_id"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ];
        row_cols.extend(extras.iter().map(ident));
        for (j, c) in ORDER_COLUMNS.iter().enumerate() {
            row_cols.push(cast(col(*c), DataType::Int64).alias(format!("c_k{j}")));
        }
        row_cols.push(
            make_array(
                traits
                    .iter()
                    .map(|(t, _)| {
                        named_struct(vec![
                            lit("trait"),
                            lit(t.as_str()),
                            lit("value"),
                            cast(ident(t), DataType::Utf8),
                        ])
                    })
                    .collect(),
            )
            .alias("tv"),
        );
        let mut candidate_cols = vec![
            get_field(col("tv"), "trait").alias("c_trait"),
            get_field(col("tv"), "value").alias("c_value"),
            col("c_k0"),
            col("c_k1"),
            col("c_k2"),
            col("segment_id"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ];
        candidate_cols.extend(extras.iter().map(ident));
        let candidates = updates
            .select(row_cols)?
            .unnest_columns(&["tv"])?
            .select(candidate_cols)?
            .filter(col("c_value").is_not_null())?;

        let same = |a: &str, b: &str| binary_expr(col(a), Operator::IsNotDistinctFrom, col(b));
        let joined = winners.join_on(
            candidates,
            JoinType::Left,
            vec![
                col("trait").eq(col("c_trait")),
                col("value").eq(col("c_value")),
                same("k0", "c_k0"),
                same("k1", "c_k1"),
                same("k2", "c_k2"),
            ],
        )?;
        let rank = row_number()
            .partition_by(vec![col("trait")])
            .order_by(vec![col("segment_id").sort(true, true)])
            .build()?
            .alias("rank");
        let mut out = vec![
            col("trait"),
            col("value"),
            col("segment_id"),
            col("seq"),
            col("timestamp"),
            col("uuid_ts"),
        ];
        out.extend(extras.iter().map(ident));
        Ok(joined
            .window(vec![rank])?
            .filter(col("rank").eq(lit(1u64)))?
            .sort(vec![col("position").sort(true, true)])?
            .select(out)?)
    }
}

//! The identity health report: what the id graph and the identifiers look like,
//! written by every run to `<dest>/_psync/health/<table>/<table>.parquet` and
//! turned into a page by `psync-lake report`.
//!
//! | table | one row per | columns |
//! | --- | --- | --- |
//! | `summary` | run | `run_id`, `computed_at`, `segment_ids`, `profiles`, `merged_away`, `merged_profiles`, `largest_profile`, `creations`, `merges`, `cycles_broken`, `missing_recursive_entries`, `profiles_without_traits`, `profiles_over_identifier_limits` |
//! | `daily` | day (UTC) with a creation or a merge | `day`, `creations`, `merges` |
//! | `profile_sizes` | profile size | `segment_ids` (per profile), `profiles` |
//! | `identifier_counts` | (type, identifiers per profile) | `external_id_type`, `identifiers`, `profiles` |
//! | `identifier_limits` | external_id_type | `external_id_type`, `limit_per_profile`, `profiles`, `profiles_over_limit`, `max_per_profile` |
//! | `missing_recursive` | segment_id whose latest update points at a profile merged since | `segment_id`, `points_to`, `canonical_segment_id` |
//!
//! Definitions:
//! - a *creation* is a segment_id's first `id_graph_updates` row pointing at
//!   itself, counted on the day of its timestamp;
//! - a *merge* is one `triggering_event_id` of rows whose segment_id points
//!   elsewhere (Segment's recursive entries share their merge's event, so they
//!   are not counted again; a row without event id counts on its own);
//! - a *profile* is a canonical segment_id; its size is the number of
//!   segment_ids that resolve to it, itself included;
//! - a *missing recursive entry* is a segment_id whose latest update points at
//!   a segment_id that was merged elsewhere since (one hop does not reach the
//!   canonical: Segment's recursive entry for it is late or lost);
//! - a profile *without traits* is a canonical profile of `profile_traits` whose
//!   every trait is NULL;
//! - identifier limits are Segment's defaults (`user_id`: 1, every other type:
//!   5), counted over all time; `identifier_counts` holds the whole distribution,
//!   so other limits can be checked by a query.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::expr_fn::{bool_or, count, max, min, sum};
use datafusion::logical_expr::{JoinType, cast, when};
use datafusion::prelude::{DataFrame, Expr, SessionContext, coalesce, col, concat, ident, lit};
use psync_lake_io::schema::time_type;

use crate::inputs::{ID_GRAPH_UPDATES, Inputs, ORDER_NEEDED, Warnings, id, opt_id};
use crate::views::id_graph::IdGraph;

/// The folder of the health tables under the destination.
pub const DIR: [&str; 2] = ["_psync", "health"];
/// One row of totals.
pub const SUMMARY: &str = "summary";
/// Creations and merges per day.
pub const DAILY: &str = "daily";
/// How many profiles have how many segment_ids.
pub const PROFILE_SIZES: &str = "profile_sizes";
/// How many profiles have how many identifiers of each type.
pub const IDENTIFIER_COUNTS: &str = "identifier_counts";
/// Profiles above Segment's default identifier limits, per type.
pub const IDENTIFIER_LIMITS: &str = "identifier_limits";
/// The segment_ids whose recursive entry is missing.
pub const MISSING_RECURSIVE: &str = "missing_recursive";
/// Every health table, in the order a run writes them.
pub const TABLES: [&str; 6] = [
    SUMMARY,
    DAILY,
    PROFILE_SIZES,
    IDENTIFIER_COUNTS,
    IDENTIFIER_LIMITS,
    MISSING_RECURSIVE,
];

/// Segment's default limit of identifiers of `external_id_type` per profile.
pub fn default_limit(external_id_type: &str) -> i64 {
    if external_id_type == "user_id" { 1 } else { 5 }
}

/// What the health report is computed from.
pub struct HealthInputs<'a> {
    /// The landed tables (all of their history: creations and merges per day).
    pub inputs: &'a Inputs<'a>,
    /// The resolved id graph.
    pub graph: &'a IdGraph,
    /// The `external_id_mapping` view.
    pub external_id_mapping: DataFrame,
    /// The `profile_traits` view, when the run has it.
    pub profile_traits: Option<DataFrame>,
    /// Cycles the id graph broke.
    pub cycles_broken: u64,
    /// The run computing it.
    pub run_id: &'a str,
}

/// Computes every health table (each small and held in memory), in [`TABLES`] order.
pub async fn compute(h: HealthInputs<'_>) -> Result<Vec<(&'static str, DataFrame)>> {
    let ctx = h.inputs.ctx();
    let (daily, creations, merges) = daily(h.inputs).await?;

    // A profile's size: the graph rows pointing at it, plus itself when it has no
    // row of its own (a canonical never created in id_graph_updates). One
    // grouping by one column: a canonical with a row is its own canonical.
    let per_profile = h
        .graph
        .df
        .clone()
        .aggregate(
            vec![col("canonical_segment_id").alias("c")],
            vec![
                count(lit(1)).alias("rows"),
                bool_or(col("segment_id").eq(col("canonical_segment_id"))).alias("has_row"),
            ],
        )?
        .select(vec![
            col("c"),
            (col("rows") + when(col("has_row"), lit(0i64)).otherwise(lit(1i64))?).alias("size"),
        ])?
        .cache()
        .await?;
    let sizes = per_profile
        .clone()
        .aggregate(
            vec![col("size").alias("segment_ids")],
            vec![count(lit(1)).alias("profiles")],
        )?
        .sort(vec![col("segment_ids").sort(true, true)])?
        .cache()
        .await?;
    let totals = one_row(per_profile.aggregate(
        vec![],
        vec![
            count(lit(1)).alias("profiles"),
            sum(col("size")).alias("segment_ids"),
            sum(when(col("size").gt_eq(lit(2i64)), lit(1i64)).otherwise(lit(0i64))?)
                .alias("merged_profiles"),
            max(col("size")).alias("largest"),
        ],
    )?)
    .await?;
    let profiles = totals.first().copied().flatten().unwrap_or(0);
    let segment_ids = totals.get(1).copied().flatten().unwrap_or(0);

    // Identifiers per profile and type.
    let per_type = h
        .external_id_mapping
        .aggregate(
            vec![col("canonical_segment_id"), col("external_id_type")],
            vec![count(lit(1)).alias("identifiers")],
        )?
        .with_column(
            "limit_per_profile",
            when(
                col("external_id_type").eq(lit("user_id")),
                lit(default_limit("user_id")),
            )
            .otherwise(lit(default_limit("")))?,
        )?
        .cache()
        .await?;
    let counts = per_type
        .clone()
        .aggregate(
            vec![col("external_id_type"), col("identifiers")],
            vec![count(lit(1)).alias("profiles")],
        )?
        .sort(vec![
            col("external_id_type").sort(true, true),
            col("identifiers").sort(true, true),
        ])?
        .cache()
        .await?;
    let over = col("identifiers").gt(col("limit_per_profile"));
    let limits = per_type
        .clone()
        .aggregate(
            vec![col("external_id_type")],
            vec![
                max(col("limit_per_profile")).alias("limit_per_profile"),
                count(lit(1)).alias("profiles"),
                sum(when(over.clone(), lit(1i64)).otherwise(lit(0i64))?)
                    .alias("profiles_over_limit"),
                max(col("identifiers")).alias("max_per_profile"),
            ],
        )?
        .sort(vec![col("external_id_type").sort(true, true)])?
        .cache()
        .await?;
    let over_limits = per_type
        .filter(over)?
        .select(vec![col("canonical_segment_id")])?
        .distinct()?
        .count()
        .await? as i64;

    let missing = missing_recursive(h.graph)?.cache().await?;
    let missing_count = missing.clone().count().await? as i64;

    let without_traits = match h.profile_traits {
        Some(pt) => Some(profiles_without_traits(pt)?.count().await? as i64),
        None => None,
    };

    let summary = summary(
        ctx,
        &Summary {
            run_id: h.run_id.to_string(),
            segment_ids,
            profiles,
            merged_profiles: totals.get(2).copied().flatten().unwrap_or(0),
            largest_profile: totals.get(3).copied().flatten().unwrap_or(0),
            creations,
            merges,
            cycles_broken: i64::try_from(h.cycles_broken).unwrap_or(i64::MAX),
            missing_recursive_entries: missing_count,
            profiles_without_traits: without_traits,
            profiles_over_identifier_limits: over_limits,
        },
    )?;
    Ok(vec![
        (SUMMARY, summary),
        (DAILY, daily),
        (PROFILE_SIZES, sizes),
        (IDENTIFIER_COUNTS, counts),
        (IDENTIFIER_LIMITS, limits),
        (MISSING_RECURSIVE, missing),
    ])
}

/// Creations and merges per day, and their totals.
async fn daily(inputs: &Inputs<'_>) -> Result<(DataFrame, i64, i64)> {
    let mut needed = vec![
        id("segment_id"),
        id("canonical_segment_id"),
        opt_id("triggering_event_id"),
    ];
    needed.extend(ORDER_NEEDED);
    // The id graph already warned about anything wrong with this table.
    let updates = inputs
        .select(ID_GRAPH_UPDATES, &needed, &mut Warnings::default())?
        .filter(
            col("segment_id")
                .is_not_null()
                .and(col("canonical_segment_id").is_not_null()),
        )?;
    let per_day = |df: DataFrame, key: Expr, what: &str| -> Result<DataFrame> {
        df.aggregate(
            vec![key.alias("k")],
            vec![min(col("timestamp")).alias("first")],
        )?
        .aggregate(
            vec![cast(col("first"), DataType::Date32).alias("day")],
            vec![count(lit(1)).alias(what)],
        )
    };
    let creations = per_day(
        updates
            .clone()
            .filter(col("segment_id").eq(col("canonical_segment_id")))?,
        col("segment_id"),
        "creations",
    )?;
    let merges = per_day(
        updates.filter(col("segment_id").not_eq(col("canonical_segment_id")))?,
        coalesce(vec![
            col("triggering_event_id"),
            concat(vec![
                col("segment_id"),
                lit(" > "),
                col("canonical_segment_id"),
            ]),
        ]),
        "merges",
    )?
    .select(vec![col("day").alias("m_day"), col("merges")])?;
    let daily = creations
        .join(merges, JoinType::Full, &["day"], &["m_day"], None)?
        // A second grouping folds the NULL days (rows without a timestamp) into one.
        .aggregate(
            vec![coalesce(vec![col("day"), col("m_day")]).alias("day")],
            vec![
                sum(coalesce(vec![col("creations"), lit(0i64)])).alias("creations"),
                sum(coalesce(vec![col("merges"), lit(0i64)])).alias("merges"),
            ],
        )?
        .sort(vec![col("day").sort(true, true)])?
        .cache()
        .await?;
    let totals = one_row(
        daily
            .clone()
            .aggregate(vec![], vec![sum(col("creations")), sum(col("merges"))])?,
    )
    .await?;
    Ok((
        daily,
        totals.first().copied().flatten().unwrap_or(0),
        totals.get(1).copied().flatten().unwrap_or(0),
    ))
}

/// The segment_ids whose latest update does not point at their canonical
/// (cycle breakers, which point at themselves now, excepted).
fn missing_recursive(graph: &IdGraph) -> Result<DataFrame> {
    graph
        .latest
        .clone()
        .select(vec![
            col("segment_id").alias("m_sid"),
            col("canonical_segment_id").alias("points_to"),
        ])?
        .join(
            graph.df.clone(),
            JoinType::Inner,
            &["m_sid"],
            &["segment_id"],
            None,
        )?
        .filter(
            col("points_to")
                .not_eq(col("canonical_segment_id"))
                .and(col("canonical_segment_id").not_eq(col("segment_id"))),
        )?
        .select(vec![
            col("segment_id"),
            col("points_to"),
            col("canonical_segment_id"),
        ])?
        .sort(vec![col("segment_id").sort(true, true)])
}

/// Canonical profiles of `profile_traits` whose every trait is NULL.
fn profiles_without_traits(profile_traits: DataFrame) -> Result<DataFrame> {
    let mut cond = col("merged_to").is_null();
    for f in profile_traits.schema().fields() {
        if f.name() != "canonical_segment_id" && f.name() != "merged_to" {
            cond = cond.and(ident(f.name()).is_null());
        }
    }
    profile_traits.filter(cond)
}

/// The totals of one health computation (the `summary` table's row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The run that computed it.
    pub run_id: String,
    /// segment_ids known (of the id graph, and the canonicals they point at).
    pub segment_ids: i64,
    /// Canonical profiles.
    pub profiles: i64,
    /// Profiles of two segment_ids or more.
    pub merged_profiles: i64,
    /// segment_ids of the largest profile.
    pub largest_profile: i64,
    /// Profile creations.
    pub creations: i64,
    /// Merges.
    pub merges: i64,
    /// Merge cycles broken.
    pub cycles_broken: i64,
    /// segment_ids whose recursive entry is missing.
    pub missing_recursive_entries: i64,
    /// Canonical profiles without any trait (`None`: the run had no profile_traits).
    pub profiles_without_traits: Option<i64>,
    /// Profiles with more identifiers of some type than its limit.
    pub profiles_over_identifier_limits: i64,
}

impl Summary {
    /// segment_ids merged into another profile.
    pub fn merged_away(&self) -> i64 {
        self.segment_ids - self.profiles
    }
}

/// The integer columns of the summary table, in order, after `run_id` and `computed_at`.
pub const SUMMARY_COUNTS: [&str; 11] = [
    "segment_ids",
    "profiles",
    "merged_away",
    "merged_profiles",
    "largest_profile",
    "creations",
    "merges",
    "cycles_broken",
    "missing_recursive_entries",
    "profiles_without_traits",
    "profiles_over_identifier_limits",
];

fn summary(ctx: &SessionContext, s: &Summary) -> Result<DataFrame> {
    let values = [
        Some(s.segment_ids),
        Some(s.profiles),
        Some(s.merged_away()),
        Some(s.merged_profiles),
        Some(s.largest_profile),
        Some(s.creations),
        Some(s.merges),
        Some(s.cycles_broken),
        Some(s.missing_recursive_entries),
        s.profiles_without_traits,
        Some(s.profiles_over_identifier_limits),
    ];
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("computed_at", time_type(), false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![s.run_id.clone()])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![chrono::Utc::now().timestamp_micros()])
                .with_timezone("UTC"),
        ),
    ];
    for (name, v) in SUMMARY_COUNTS.iter().zip(values) {
        fields.push(Field::new(*name, DataType::Int64, true));
        columns.push(Arc::new(Int64Array::from(vec![v])));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    ctx.read_batch(batch)
}

/// The first row of `df` as integers (NULL as `None`).
async fn one_row(df: DataFrame) -> Result<Vec<Option<i64>>> {
    for batch in df.collect().await? {
        if batch.num_rows() == 0 {
            continue;
        }
        let mut out = vec![];
        for c in batch.columns() {
            let c = cast_array(c, &DataType::Int64)?;
            let a = c.as_primitive::<Int64Type>();
            out.push((!a.is_null(0)).then(|| a.value(0)));
        }
        return Ok(out);
    }
    Ok(vec![])
}

// ---- reading a published report back ------------------------------------------

/// One day of [`DAILY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Days since 1970-01-01 (UTC); `None` for rows without a timestamp.
    pub day: Option<i32>,
    /// Profiles created that day.
    pub creations: i64,
    /// Merges that day.
    pub merges: i64,
}

/// One row of [`IDENTIFIER_LIMITS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The identifier type.
    pub external_id_type: String,
    /// Identifiers of that type a profile may have.
    pub limit_per_profile: i64,
    /// Profiles with at least one identifier of that type.
    pub profiles: i64,
    /// Profiles above the limit.
    pub profiles_over_limit: i64,
    /// Most identifiers of that type on one profile.
    pub max_per_profile: i64,
}

/// A published health report, read back.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// When it was computed (RFC 3339).
    pub computed_at: String,
    /// Creations and merges per day.
    pub daily: Vec<Day>,
    /// `(segment_ids per profile, profiles)`.
    pub profile_sizes: Vec<(i64, i64)>,
    /// Per identifier type.
    pub limits: Vec<Limit>,
    /// `(segment_id, points_to, canonical_segment_id)` of the first missing
    /// recursive entries (the count is in the summary).
    pub missing_recursive: Vec<(String, String, String)>,
}

/// Missing recursive entries a [`Report`] lists.
pub const LISTED_MISSING: usize = 20;

/// Reads the health tables a run published in `dest` (`read(table)` gives one
/// table's rows); `None` when there is no summary.
pub async fn read_report<F, Fut>(read: F) -> Result<Option<Report>>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = Result<Option<DataFrame>>>,
{
    let Some(summary) = read(SUMMARY).await? else {
        return Ok(None);
    };
    let mut report = Report::default();
    for batch in summary.collect().await? {
        if batch.num_rows() == 0 {
            continue;
        }
        let int = |name: &str| -> Result<Option<i64>> {
            let Some(c) = batch.column_by_name(name) else {
                return Ok(None);
            };
            let c = cast_array(c, &DataType::Int64)?;
            let a = c.as_primitive::<Int64Type>();
            Ok((!a.is_null(0)).then(|| a.value(0)))
        };
        let text = |name: &str| -> Result<String> {
            let Some(c) = batch.column_by_name(name) else {
                return Ok(String::new());
            };
            let c = cast_array(c, &DataType::Utf8)?;
            Ok(c.as_string::<i32>().value(0).to_string())
        };
        report.computed_at = text("computed_at")?;
        report.summary = Summary {
            run_id: text("run_id")?,
            segment_ids: int("segment_ids")?.unwrap_or(0),
            profiles: int("profiles")?.unwrap_or(0),
            merged_profiles: int("merged_profiles")?.unwrap_or(0),
            largest_profile: int("largest_profile")?.unwrap_or(0),
            creations: int("creations")?.unwrap_or(0),
            merges: int("merges")?.unwrap_or(0),
            cycles_broken: int("cycles_broken")?.unwrap_or(0),
            missing_recursive_entries: int("missing_recursive_entries")?.unwrap_or(0),
            profiles_without_traits: int("profiles_without_traits")?,
            profiles_over_identifier_limits: int("profiles_over_identifier_limits")?.unwrap_or(0),
        };
        break;
    }
    if let Some(df) = read(DAILY).await? {
        for b in df.collect().await? {
            let day = cast_array(column(&b, "day")?, &DataType::Date32)?;
            let day = day.as_primitive::<Date32Type>();
            let c = ints(&b, "creations")?;
            let m = ints(&b, "merges")?;
            for r in 0..b.num_rows() {
                report.daily.push(Day {
                    day: (!day.is_null(r)).then(|| day.value(r)),
                    creations: c.value(r),
                    merges: m.value(r),
                });
            }
        }
    }
    if let Some(df) = read(PROFILE_SIZES).await? {
        for b in df.collect().await? {
            let s = ints(&b, "segment_ids")?;
            let p = ints(&b, "profiles")?;
            for r in 0..b.num_rows() {
                report.profile_sizes.push((s.value(r), p.value(r)));
            }
        }
    }
    if let Some(df) = read(IDENTIFIER_LIMITS).await? {
        for b in df.collect().await? {
            let t = strings(&b, "external_id_type")?;
            let l = ints(&b, "limit_per_profile")?;
            let p = ints(&b, "profiles")?;
            let o = ints(&b, "profiles_over_limit")?;
            let m = ints(&b, "max_per_profile")?;
            for r in 0..b.num_rows() {
                report.limits.push(Limit {
                    external_id_type: t.value(r).to_string(),
                    limit_per_profile: l.value(r),
                    profiles: p.value(r),
                    profiles_over_limit: o.value(r),
                    max_per_profile: m.value(r),
                });
            }
        }
    }
    if let Some(df) = read(MISSING_RECURSIVE).await? {
        let first = df
            .sort(vec![col("segment_id").sort(true, true)])?
            .limit(0, Some(LISTED_MISSING))?;
        for b in first.collect().await? {
            let s = strings(&b, "segment_id")?;
            let p = strings(&b, "points_to")?;
            let c = strings(&b, "canonical_segment_id")?;
            for r in 0..b.num_rows() {
                report.missing_recursive.push((
                    s.value(r).to_string(),
                    p.value(r).to_string(),
                    c.value(r).to_string(),
                ));
            }
        }
    }
    Ok(Some(report))
}

fn column<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| DataFusionError::Plan(format!("health table without column '{name}'")))
}

fn ints(b: &RecordBatch, name: &str) -> Result<Int64Array> {
    let c = cast_array(column(b, name)?, &DataType::Int64)?;
    // NULL counts read as 0 (a day with only merges has no creations).
    let a = c.as_primitive::<Int64Type>();
    Ok(a.iter().map(|v| Some(v.unwrap_or(0))).collect())
}

fn strings(b: &RecordBatch, name: &str) -> Result<StringArray> {
    let c = cast_array(column(b, name)?, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().clone())
}

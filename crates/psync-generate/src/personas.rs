//! A small Personas space, `personas_default/`, as Segment syncs one: audiences
//! and computed traits sent both as identify calls (`identifies`, one column per
//! audience or trait) and as track calls (`audience_entered`, `audience_exited`,
//! `trait_computed`).
//!
//! Its own random stream (derived from the seed) keeps the Profiles Sync tables
//! byte-identical whether or not a space is written.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::table::{Col, TableBuf, Val};
use crate::{DAY_MICROS, GenError, GenOptions, GenSummary, T0_MICROS, day_of};

/// The space's folder.
pub const SPACE: &str = "personas_default";
/// Audiences of the space (boolean columns).
pub const AUDIENCES: [&str; 3] = ["first_time_shopper", "high_value", "churn_risk"];
/// Computed traits of the space: a double and an integer.
pub const TRAITS: [&str; 2] = ["total_revenue_180_days", "orders_30_days"];

struct Space {
    rng: ChaCha8Rng,
    identifies: TableBuf,
    entered: TableBuf,
    exited: TableBuf,
    computed: TableBuf,
    messages: u64,
}

impl Space {
    /// `(message id, received_at, uuid_ts)` for an event at `ts`.
    fn stamp(&mut self, ts: i64) -> (Val, i64, i64) {
        self.messages += 1;
        let received = ts + self.rng.random_range(0..2_000_000);
        let uuid_ts = received + self.rng.random_range(0..1_000_000);
        (
            Val::Str(format!("msg_{:x}", self.messages)),
            received,
            uuid_ts,
        )
    }

    /// An identify call setting one column (`column` of `columns`) to `value`.
    fn identify(&mut self, user: &str, ts: i64, column: usize, value: Val) -> Result<(), GenError> {
        let (id, received, uuid_ts) = self.stamp(ts);
        let mut row = vec![
            id,
            Val::Str(user.into()),
            Val::Ts(ts),
            Val::Ts(received),
            Val::Ts(uuid_ts),
        ];
        for c in 0..AUDIENCES.len() + TRAITS.len() {
            row.push(if c == column {
                value.clone()
            } else {
                Val::Null
            });
        }
        self.identifies.push(row, &day_of(ts))
    }

    /// Audience `a` entered (or exited) at `ts`, as a track call and an identify call.
    fn audience(&mut self, user: &str, a: usize, ts: i64, entered: bool) -> Result<(), GenError> {
        let (id, received, uuid_ts) = self.stamp(ts);
        let mut row = vec![
            id,
            Val::Str(user.into()),
            Val::Str(
                if entered {
                    "Audience Entered"
                } else {
                    "Audience Exited"
                }
                .into(),
            ),
            Val::Str(AUDIENCES[a].into()),
            Val::Ts(ts),
            Val::Ts(received),
            Val::Ts(uuid_ts),
        ];
        for k in 0..AUDIENCES.len() {
            row.push(if k == a {
                Val::Bool(entered)
            } else {
                Val::Null
            });
        }
        let day = day_of(ts);
        if entered {
            self.entered.push(row, &day)?;
        } else {
            self.exited.push(row, &day)?;
        }
        self.identify(user, ts, a, Val::Bool(entered))
    }

    /// Computed trait `t` now `value`, as a track call and an identify call.
    fn trait_computed(
        &mut self,
        user: &str,
        t: usize,
        ts: i64,
        value: Val,
    ) -> Result<(), GenError> {
        let (id, received, uuid_ts) = self.stamp(ts);
        let mut row = vec![
            id,
            Val::Str(user.into()),
            Val::Str("Trait Computed".into()),
            Val::Str(TRAITS[t].into()),
            Val::Ts(ts),
            Val::Ts(received),
            Val::Ts(uuid_ts),
        ];
        for k in 0..TRAITS.len() {
            row.push(if k == t { value.clone() } else { Val::Null });
        }
        self.computed.push(row, &day_of(ts))?;
        self.identify(user, ts, AUDIENCES.len() + t, value)
    }
}

/// Writes the space for users `u0`, `u1`, ... (the user_ids of the profiles)
/// between the start of the simulation and `end` (µs).
pub fn write(
    dest: &Path,
    opts: &GenOptions,
    end: i64,
    summary: &mut GenSummary,
) -> Result<(), GenError> {
    let (rpf, up) = (opts.rows_per_file, opts.upper_case);
    let s = |n: &str| (n.to_string(), Col::str());
    let t = |n: &str| (n.to_string(), Col::ts());
    // Track calls: the event, the audience_key or trait_key, then the values.
    let track = |key: &str| {
        vec![
            s("id"),
            s("user_id"),
            s("event"),
            s(key),
            t("timestamp"),
            t("received_at"),
            t("uuid_ts"),
        ]
    };
    let mut ident_cols = vec![
        s("id"),
        s("user_id"),
        t("timestamp"),
        t("received_at"),
        t("uuid_ts"),
    ];
    ident_cols.extend(AUDIENCES.iter().map(|a| (a.to_string(), Col::bool())));
    ident_cols.push((TRAITS[0].to_string(), Col::f64()));
    ident_cols.push((TRAITS[1].to_string(), Col::i64()));
    let mut audience_cols = track("audience_key");
    audience_cols.extend(AUDIENCES.iter().map(|a| (a.to_string(), Col::bool())));
    let mut exited_cols = track("audience_key");
    exited_cols.extend(AUDIENCES.iter().map(|a| (a.to_string(), Col::bool())));
    let mut trait_cols = track("trait_key");
    trait_cols.push((TRAITS[0].to_string(), Col::f64()));
    trait_cols.push((TRAITS[1].to_string(), Col::i64()));
    let table =
        |name: &str, cols| TableBuf::new(dest, &format!("{SPACE}/{name}"), cols, rpf, up, false);
    let mut space = Space {
        rng: ChaCha8Rng::seed_from_u64(opts.seed ^ 0x9e37_79b9_7f4a_7c15),
        identifies: table("identifies", ident_cols),
        entered: table("audience_entered", audience_cols),
        exited: table("audience_exited", exited_cols),
        computed: table("trait_computed", trait_cols),
        messages: 0,
    };
    let span = (end - T0_MICROS).max(DAY_MICROS);
    for i in 0..opts.profiles {
        // About half the profiles have a user_id that Personas computes for.
        if !space.rng.random_bool(0.5) {
            continue;
        }
        let user = format!("u{i}");
        for a in 0..AUDIENCES.len() {
            if !space.rng.random_bool(0.5) {
                continue;
            }
            let mut ts = T0_MICROS + space.rng.random_range(0..span);
            let toggles = space.rng.random_range(1..=3);
            for k in 0..toggles {
                space.audience(&user, a, ts, k % 2 == 0)?;
                // Now and then the next change has the same timestamp: received_at decides.
                if !space.rng.random_bool(0.05) {
                    ts += space.rng.random_range(DAY_MICROS / 24..7 * DAY_MICROS);
                }
            }
        }
        for k in 0..TRAITS.len() {
            if !space.rng.random_bool(0.6) {
                continue;
            }
            let mut ts = T0_MICROS + space.rng.random_range(0..span);
            for _ in 0..space.rng.random_range(1..=3) {
                let value = if k == 0 {
                    Val::F64(f64::from(space.rng.random_range(0..200_000)) / 100.0)
                } else {
                    Val::I64(space.rng.random_range(0..12))
                };
                space.trait_computed(&user, k, ts, value)?;
                ts += space.rng.random_range(DAY_MICROS / 24..3 * DAY_MICROS);
            }
        }
    }
    for (name, buf) in [
        ("identifies", &mut space.identifies),
        ("audience_entered", &mut space.entered),
        ("audience_exited", &mut space.exited),
        ("trait_computed", &mut space.computed),
    ] {
        buf.flush()?;
        summary
            .tables
            .push((format!("{SPACE}.{name}"), buf.written, buf.files()));
    }
    Ok(())
}

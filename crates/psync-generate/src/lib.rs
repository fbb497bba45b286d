//! Deterministic synthetic Profiles Sync lakes (`psync-lake generate`).
//!
//! The same options and seed always give the same rows. The history is simulated
//! in time order: profiles are created (one `id_graph_updates` self row and a few
//! external ids each), identify calls write trait updates (whole or partial rows,
//! with NULLs), and merges fold one canonical profile into another, landing
//! Segment's recursive entries for every earlier member (some dropped on request).
//! Merges of merged profiles give chains and re-merges.

mod case_study;
mod personas;
mod table;

pub use case_study::case_study;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use table::{Col, TableBuf, Val, id_graph_columns};

/// Errors while generating.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Writing a file failed.
    #[error("cannot write {0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Building Arrow data failed (a bug).
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Writing Parquet failed.
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// A bad option.
    #[error("{0}")]
    Options(String),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Profiles created.
    pub profiles: usize,
    /// Trait columns in `profile_traits_updates`.
    pub traits: usize,
    /// Names of the first trait columns, instead of `email`, `first_name`, ...
    /// (later ones are `trait_<k>`): a lake whose traits are not the sample's.
    pub trait_names: Vec<String>,
    /// Random seed.
    pub seed: u64,
    /// Average trait updates per profile.
    pub updates_per_profile: f64,
    /// Share of profile creations followed by a merge of two profiles.
    pub merge_rate: f64,
    /// Share of recursive entries that are not landed.
    pub drop_recursive: f64,
    /// Rows per Parquet file (more files when smaller).
    pub rows_per_file: usize,
    /// Upper-case table and column names, as Snowflake lands them.
    pub upper_case: bool,
    /// `seq` as a decimal string instead of an integer.
    pub string_seq: bool,
    /// Also write `identifies` and `tracks` event tables.
    pub events: bool,
    /// Also write a Personas space, `personas_default/` (its `identifies`,
    /// `audience_entered`, `audience_exited` and `trait_computed`), when `events` is set.
    pub personas: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            profiles: 1000,
            traits: 8,
            trait_names: vec![],
            seed: 1,
            updates_per_profile: 4.0,
            merge_rate: 0.15,
            drop_recursive: 0.0,
            rows_per_file: 500_000,
            upper_case: false,
            string_seq: false,
            events: true,
            personas: true,
        }
    }
}

/// Rows and files written per table.
#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    /// `(table, rows, files)`.
    pub tables: Vec<(String, u64, usize)>,
    /// Merges simulated.
    pub merges: u64,
    /// Recursive entries dropped.
    pub dropped_recursive: u64,
}

/// Names of the first trait columns; later ones are `trait_<k>`.
const TRAIT_NAMES: &[&str] = &[
    "email",
    "first_name",
    "plan",
    "age",
    "lifetime_value",
    "is_vip",
    "city",
    "last_seen_at",
];

/// The type of trait `k`: string, integer, double, boolean, timestamp by turns.
fn trait_col(k: usize) -> Col {
    match k % 8 {
        3 => Col::i64(),
        4 => Col::f64(),
        5 => Col::bool(),
        7 => Col::ts(),
        _ => Col::str(),
    }
}

fn trait_name(k: usize, names: &[String]) -> String {
    if !names.is_empty() {
        return names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("trait_{k}"));
    }
    TRAIT_NAMES
        .get(k)
        .map_or_else(|| format!("trait_{k}"), |s| s.to_string())
}

pub(crate) const T0_MICROS: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;
const PLANS: &[&str] = &["free", "starter", "pro", "enterprise"];
const CITIES: &[&str] = &["Lisbon", "Austin", "Osaka", "Nairobi", "Oslo", "Lima"];
const EVENTS: &[&str] = &[
    "Product Viewed",
    "Order Completed",
    "Signed Up",
    "Cart Viewed",
];
const TRIGGERS: &[&str] = &["identify", "page", "track", "screen"];

struct Sim {
    rng: ChaCha8Rng,
    opts: GenOptions,
    seq: i64,
    now: i64,
    /// Current canonical of each profile.
    canon: Vec<u32>,
    /// Members (ever merged in, transitively) of each canonical profile.
    members: Vec<Vec<u32>>,
    ids: TableBuf,
    ext: TableBuf,
    traits: TableBuf,
    identifies: Option<TableBuf>,
    tracks: Option<TableBuf>,
    merges: u64,
    dropped: u64,
    emails: Vec<u32>,
}

fn sid(i: u32) -> String {
    format!("sid_{i:08x}")
}

pub(crate) fn day_of(micros: i64) -> String {
    let days = micros.div_euclid(DAY_MICROS);
    // Civil-from-days (Howard Hinnant), enough for a folder name.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Sim {
    fn tick(&mut self) -> (i64, i64, i64, String) {
        self.now += self.rng.random_range(1_000_000..30_000_000);
        self.seq += 1;
        let uuid_ts = self.now + self.rng.random_range(0..5_000_000);
        (self.seq, self.now, uuid_ts, day_of(self.now))
    }

    fn create(&mut self, i: u32) -> Result<(), GenError> {
        let (seq, ts, uuid_ts, day) = self.tick();
        let trigger = TRIGGERS[self.rng.random_range(0..TRIGGERS.len())];
        self.ids.push(
            vec![
                Val::Str(sid(i)),
                Val::Str(sid(i)),
                Val::Str(trigger.into()),
                Val::Str(format!("evt_{seq:x}")),
                Val::I64(seq),
                Val::Ts(ts),
                Val::Ts(uuid_ts),
            ],
            &day,
        )?;
        let anon = format!("anon-{:016x}", self.rng.random::<u64>());
        self.ext_id(i, "anonymous_id", anon, ts, &day)?;
        if self.rng.random_bool(0.7) {
            self.ext_id(i, "email", format!("user{i}@example.com"), ts, &day)?;
            self.emails.push(i);
        }
        if self.rng.random_bool(0.5) {
            self.ext_id(i, "user_id", format!("u{i}"), ts, &day)?;
        }
        Ok(())
    }

    fn ext_id(
        &mut self,
        i: u32,
        kind: &str,
        value: String,
        ts: i64,
        day: &str,
    ) -> Result<(), GenError> {
        self.seq += 1;
        let hash = if self.rng.random_bool(0.9) {
            Val::Str(sha1_smol::Sha1::from(format!("{kind}{value}")).hexdigest())
        } else {
            Val::Null
        };
        let row = vec![
            Val::Str(sid(i)),
            Val::Str(kind.into()),
            Val::Str(value),
            hash,
            Val::I64(self.seq),
            Val::Ts(ts),
            Val::Ts(ts + 1_000_000),
        ];
        self.ext.push(row, day)
    }

    fn trait_value(&mut self, k: usize, owner: u32) -> Val {
        if self.rng.random_bool(0.1) {
            return Val::Null;
        }
        match k % 8 {
            0 => Val::Str(format!(
                "user{owner}+{}@example.com",
                self.rng.random_range(0..3)
            )),
            1 => Val::Str(format!("Name{}", self.rng.random_range(0..500))),
            2 => Val::Str(PLANS[self.rng.random_range(0..PLANS.len())].into()),
            3 => Val::I64(self.rng.random_range(18..90)),
            4 => Val::F64(f64::from(self.rng.random_range(0..100_000)) / 100.0),
            5 => Val::Bool(self.rng.random_bool(0.2)),
            6 => Val::Str(CITIES[self.rng.random_range(0..CITIES.len())].into()),
            7 => Val::Ts(self.now - self.rng.random_range(0..30 * DAY_MICROS)),
            _ => Val::Str(format!("v{}", self.rng.random_range(0..1000))),
        }
    }

    /// An identify call on profile `i` (or, sometimes, an old id of it).
    fn identify(&mut self, i: u32) -> Result<(), GenError> {
        let target = {
            let c = self.canon[i as usize];
            // Late events still arrive on merged-away ids now and then.
            if self.rng.random_bool(0.1) { i } else { c }
        };
        let (seq, ts, uuid_ts, day) = self.tick();
        let full = self.rng.random_bool(0.3);
        let mut row = vec![
            Val::Str(sid(target)),
            Val::I64(seq),
            Val::Ts(ts),
            Val::Ts(uuid_ts),
            Val::Str("analytics-ruby".into()),
        ];
        for k in 0..self.opts.traits {
            let v = if full || self.rng.random_bool(0.3) {
                self.trait_value(k, i)
            } else {
                Val::Null
            };
            row.push(v);
        }
        let duplicate = self.rng.random_bool(0.01);
        if duplicate {
            self.traits.push(row.clone(), &day)?;
        }
        self.traits.push(row, &day)?;
        if let Some(t) = self.identifies.as_mut() {
            t.push(
                vec![
                    Val::Str(sid(target)),
                    Val::Str(format!("evt_{seq:x}")),
                    Val::Str("src_web".into()),
                    Val::Str(format!("u{i}")),
                    Val::Ts(ts),
                    Val::Ts(ts + 500_000),
                    Val::Ts(uuid_ts),
                ],
                &day,
            )?;
        }
        if self.tracks.is_some() {
            let n = self.rng.random_range(0..3);
            for _ in 0..n {
                let (seq, ts, uuid_ts, day) = self.tick();
                let event = EVENTS[self.rng.random_range(0..EVENTS.len())];
                let revenue = if event == "Order Completed" {
                    Val::F64(f64::from(self.rng.random_range(100..50_000)) / 100.0)
                } else {
                    Val::Null
                };
                let row = vec![
                    Val::Str(sid(target)),
                    Val::Str(format!("evt_{seq:x}")),
                    Val::Str("src_web".into()),
                    Val::Str(event.into()),
                    Val::Ts(ts),
                    Val::Ts(ts + 500_000),
                    Val::Ts(uuid_ts),
                    revenue,
                ];
                if let Some(t) = self.tracks.as_mut() {
                    t.push(row, &day)?;
                }
            }
        }
        Ok(())
    }

    /// Merges canonical `a` into canonical `b`.
    fn merge(&mut self, a: u32, b: u32) -> Result<(), GenError> {
        let (seq, ts, uuid_ts, day) = self.tick();
        let event = format!("evt_{seq:x}");
        self.ids.push(
            vec![
                Val::Str(sid(a)),
                Val::Str(sid(b)),
                Val::Str("identify".into()),
                Val::Str(event.clone()),
                Val::I64(seq),
                Val::Ts(ts),
                Val::Ts(uuid_ts),
            ],
            &day,
        )?;
        let moved = std::mem::take(&mut self.members[a as usize]);
        for &m in &moved {
            self.canon[m as usize] = b;
            if m == a {
                continue;
            }
            if self
                .rng
                .random_bool(self.opts.drop_recursive.clamp(0.0, 1.0))
            {
                self.dropped += 1;
                continue;
            }
            self.seq += 1;
            let row = vec![
                Val::Str(sid(m)),
                Val::Str(sid(b)),
                Val::Str("identify".into()),
                Val::Str(event.clone()),
                Val::I64(self.seq),
                Val::Ts(ts),
                Val::Ts(uuid_ts),
            ];
            self.ids.push(row, &day)?;
        }
        self.members[b as usize].extend(moved);
        // The merge writes the surviving profile's traits again (a partial row here).
        self.seq += 1;
        let mut row = vec![
            Val::Str(sid(b)),
            Val::I64(self.seq),
            Val::Ts(ts),
            Val::Ts(uuid_ts),
            Val::Null,
        ];
        for k in 0..self.opts.traits {
            let v = if k % 3 == 0 {
                self.trait_value(k, b)
            } else {
                Val::Null
            };
            row.push(v);
        }
        self.traits.push(row, &day)?;
        self.merges += 1;
        Ok(())
    }

    fn random_canonical(&mut self, upto: u32) -> u32 {
        let i = self.rng.random_range(0..upto);
        self.canon[i as usize]
    }
}

/// Writes a synthetic lake under `dest` (one folder per table).
pub fn generate(dest: &Path, opts: &GenOptions) -> Result<GenSummary, GenError> {
    if opts.profiles == 0 {
        return Err(GenError::Options("--profiles must be at least 1".into()));
    }
    if opts.profiles > u32::MAX as usize / 2 {
        return Err(GenError::Options("--profiles is too large".into()));
    }
    let (rpf, up, ss) = (opts.rows_per_file, opts.upper_case, opts.string_seq);
    let s = |n: &str| (n.to_string(), Col::str());
    let i = |n: &str| (n.to_string(), Col::i64());
    let t = |n: &str| (n.to_string(), Col::ts());
    let f = |n: &str| (n.to_string(), Col::f64());
    let ids = TableBuf::new(dest, "id_graph_updates", id_graph_columns(), rpf, up, ss);
    let ext = TableBuf::new(
        dest,
        "external_id_mapping_updates",
        vec![
            s("segment_id"),
            s("external_id_type"),
            s("external_id_value"),
            s("external_id_hash"),
            i("seq"),
            t("timestamp"),
            t("uuid_ts"),
        ],
        rpf,
        up,
        ss,
    );
    let mut trait_cols = vec![
        s("segment_id"),
        i("seq"),
        t("timestamp"),
        t("uuid_ts"),
        s("context_library_name"),
    ];
    trait_cols.extend((0..opts.traits).map(|k| (trait_name(k, &opts.trait_names), trait_col(k))));
    let traits = TableBuf::new(dest, "profile_traits_updates", trait_cols, rpf, up, ss);
    let identifies = opts.events.then(|| {
        TableBuf::new(
            dest,
            "identifies",
            vec![
                s("segment_id"),
                s("event_id"),
                s("event_source_id"),
                s("user_id"),
                t("timestamp"),
                t("received_at"),
                t("uuid_ts"),
            ],
            rpf,
            up,
            false,
        )
    });
    let tracks = opts.events.then(|| {
        TableBuf::new(
            dest,
            "tracks",
            vec![
                s("segment_id"),
                s("event_id"),
                s("event_source_id"),
                s("event"),
                t("timestamp"),
                t("received_at"),
                t("uuid_ts"),
                f("revenue"),
            ],
            rpf,
            up,
            false,
        )
    });
    let n = opts.profiles as u32;
    let mut sim = Sim {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        opts: opts.clone(),
        seq: 0,
        now: T0_MICROS,
        canon: (0..n).collect(),
        members: (0..n).map(|i| vec![i]).collect(),
        ids,
        ext,
        traits,
        identifies,
        tracks,
        merges: 0,
        dropped: 0,
        emails: vec![],
    };
    let updates = opts.updates_per_profile.max(0.0);
    for p in 0..n {
        sim.create(p)?;
        // Identify calls: on average `updates` per profile, spread over recent profiles.
        let mut budget = updates;
        while budget > 0.0 {
            if budget < 1.0 && !sim.rng.random_bool(budget) {
                break;
            }
            budget -= 1.0;
            let back = sim.rng.random_range(0..=p.min(50));
            sim.identify(p - back)?;
        }
        if p > 0 && sim.rng.random_bool(opts.merge_rate.clamp(0.0, 1.0)) {
            let a = sim.random_canonical(p + 1);
            let b = sim.random_canonical(p + 1);
            if a != b {
                sim.merge(a, b)?;
            }
        }
        // A second email now and then, so identifier limits are exercised.
        if p % 97 == 0 && !sim.emails.is_empty() {
            let who = sim.emails[sim.rng.random_range(0..sim.emails.len())];
            let c = sim.canon[who as usize];
            let (_, ts, _, day) = sim.tick();
            sim.ext_id(
                c,
                "email",
                format!("alt{p}.user{who}@example.com"),
                ts,
                &day,
            )?;
        }
    }
    let mut summary = GenSummary {
        merges: sim.merges,
        dropped_recursive: sim.dropped,
        ..Default::default()
    };
    for (name, buf) in [
        ("id_graph_updates", Some(&mut sim.ids)),
        ("external_id_mapping_updates", Some(&mut sim.ext)),
        ("profile_traits_updates", Some(&mut sim.traits)),
        ("identifies", sim.identifies.as_mut()),
        ("tracks", sim.tracks.as_mut()),
    ] {
        if let Some(buf) = buf {
            buf.flush()?;
            summary
                .tables
                .push((name.to_string(), buf.written, buf.files()));
        }
    }
    // A space's tables are event tables too: `events: false` leaves them out.
    if opts.personas && opts.events {
        personas::write(dest, opts, sim.now, &mut summary)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day_of(T0_MICROS), "2024-01-01");
        assert_eq!(day_of(T0_MICROS + 59 * DAY_MICROS), "2024-02-29");
    }

    #[test]
    fn same_seed_same_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let opts = GenOptions {
            profiles: 200,
            rows_per_file: 150,
            ..Default::default()
        };
        let sa = generate(a.path(), &opts).unwrap();
        let sb = generate(b.path(), &opts).unwrap();
        assert_eq!(sa.tables, sb.tables);
        assert!(sa.merges > 0);
        let read = |root: &Path| {
            std::fs::read(root.join("profile_traits_updates/day=2024-01-01/part-00000.parquet"))
                .unwrap()
        };
        assert_eq!(read(a.path()), read(b.path()));
    }
}

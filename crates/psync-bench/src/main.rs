//! `psync-bench`: psync-lake side by side with DuckDB (hand-written and dbt-style
//! SQL), Polars, stock DataFusion SQL and the Parquet scan floor, on one generated
//! lake, with the same thread count, one system after the other.
//!
//! Every system runs as a child process (wall time and peak RSS are the child's),
//! writes the three views as `<out>/<view>/<view>.parquet`, and is checked against
//! psync-lake's output (`rows_equal`) before its timings are reported. The Python
//! systems are the scripts in `python/`, embedded here and written next to the run.

mod lake;
mod measure;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use lake::LakeParams;
use measure::{Cmd, RssProbe, Sample};

/// The scripts the Python systems run, written to `<out>/scripts/` at each run.
const SCRIPTS: &[(&str, &str)] = &[
    ("common.py", include_str!("../python/common.py")),
    ("duckdb_views.py", include_str!("../python/duckdb_views.py")),
    ("polars_views.py", include_str!("../python/polars_views.py")),
    ("prep.py", include_str!("../python/prep.py")),
    ("compare.py", include_str!("../python/compare.py")),
    ("split.py", include_str!("../python/split.py")),
    ("delta.py", include_str!("../python/delta.py")),
];

const REFERENCE: &str = "psync-lake";
/// Every system, in running order (`--systems` picks some).
const SYSTEMS: &[&str] = &[
    REFERENCE,
    DELTA_INPUT,
    "duckdb-best",
    "duckdb-dbt",
    "datafusion-sql",
    "polars",
    "scan-floor",
];
/// psync-lake on the same lake landed as Delta tables (the same data files plus a log).
const DELTA_INPUT: &str = "psync-lake-delta";
/// The independent exact model psync-lake's own `rows_equal` is taken from.
const ORACLE: &str = "duckdb-best";

/// Benchmark psync-lake against DuckDB, Polars and stock DataFusion on one generated lake.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Profiles in the generated lake.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: usize,
    /// Trait columns in the generated lake.
    #[arg(long, default_value_t = 20)]
    traits: usize,
    /// Average trait updates (identify calls) per profile.
    #[arg(long, default_value_t = 4.0)]
    updates_per_profile: f64,
    /// Share of Segment's recursive id_graph entries left out, so that merge chains
    /// longer than one hop must be followed.
    #[arg(long, default_value_t = 0.2)]
    drop_recursive: f64,
    /// Also time psync-lake's incremental mode on a delta of this share of the
    /// lake's update rows (every row from a cutoff time on, landed as new files), e.g. 0.01.
    #[arg(long)]
    delta: Option<f64>,
    /// Timed repetitions per system (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Threads every system gets [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Working folder: the lake, every system's output, logs, results.json
    /// [default: <temp dir>/psync-bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The psync-lake binary [default: psync-lake next to this executable].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The Python with duckdb, polars and pyarrow
    /// [default: ~/.cache/psync-lake/venv/bin/python].
    #[arg(long, env = "PSYNC_PYTHON")]
    python: Option<PathBuf>,
    /// Only these systems (psync-lake, the reference, always runs), comma-separated:
    /// psync-lake, psync-lake-delta (the lake as Delta tables), duckdb-best, duckdb-dbt,
    /// datafusion-sql, polars, scan-floor.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
}

/// What `split.py` did.
#[derive(Debug, Deserialize)]
struct Split {
    cutoff: String,
    base_rows: u64,
    delta_rows: u64,
}

/// What `prep.py` found in the lake.
#[derive(Debug, Deserialize)]
struct LakeInfo {
    input_rows: std::collections::BTreeMap<String, u64>,
    traits: Vec<String>,
    hops: u32,
    cycles: bool,
}

/// One line of `results.json`.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    system: String,
    /// `all` (the three views in one run) or `scan` (the scan floor).
    view: String,
    /// Median wall time of the repetitions.
    seconds: Option<f64>,
    /// Highest peak RSS over the repetitions.
    peak_rss_mb: Option<f64>,
    /// Whether every view holds the same rows as psync-lake's (null: nothing to compare).
    rows_equal: Option<bool>,
    runs: Vec<f64>,
    input_rows: u64,
    rows_per_second: Option<f64>,
    ratio_to_psync_lake: Option<f64>,
    /// Per view: the comparison with psync-lake (counts and samples of differing rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One system: how to run it and where its views land.
struct System {
    name: &'static str,
    view: &'static str,
    cmd: Cmd,
    /// Its destination (views are compared with psync-lake's), or None (scan floor).
    dest: Option<PathBuf>,
    note: Option<String>,
}

struct Bench {
    args: Args,
    threads: usize,
    out: PathBuf,
    bin: PathBuf,
    python: PathBuf,
    probe: RssProbe,
    scripts: PathBuf,
    input_rows: u64,
}

/// What the other systems compute: the three core views, no Personas views and no
/// health report (which a psync-lake run adds by default).
const CORE_ONLY: [&str; 3] = [
    "--views",
    "id_graph,external_id_mapping,profile_traits",
    "--no-health",
];

fn main() {
    match run() {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool> {
    let args = Args::parse();
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if let Some(d) = args.delta
        && !(d > 0.0 && d < 1.0)
    {
        bail!("--delta must be between 0 and 1 (e.g. 0.01)");
    }
    for s in &args.systems {
        if !SYSTEMS.contains(&s.as_str()) {
            bail!(
                "unknown system '{s}' (expected some of: {})",
                SYSTEMS.join(", ")
            );
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("psync-bench"));
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize()?;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no folder for the current executable")?
            .join("psync-lake"),
    };
    if !bin.is_file() {
        bail!(
            "no psync-lake binary at {} (build it with `cargo build --release`, or pass --bin)",
            bin.display()
        );
    }
    let bin = bin.canonicalize()?;
    let python = args.python.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".cache/psync-lake/venv/bin/python")
    });
    Cmd::new(&python)
        .args(["-c", "import duckdb, polars, pyarrow"])
        .output()
        .with_context(|| {
            format!(
                "{} cannot import duckdb, polars and pyarrow (set PSYNC_PYTHON or --python; \
                 .ci/run makes a venv with them)",
                python.display()
            )
        })?;
    let probe = RssProbe::detect();

    let lake_dir = out.join("lake");
    let params = LakeParams {
        profiles: args.profiles,
        traits: args.traits,
        updates_per_profile: args.updates_per_profile,
        drop_recursive: args.drop_recursive,
        seed: 1,
    };
    lake::ensure(&bin, &lake_dir, &params)?;

    let scripts = out.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    for (name, text) in SCRIPTS {
        std::fs::write(scripts.join(name), text)?;
    }
    std::fs::create_dir_all(out.join("logs"))?;

    let mut bench = Bench {
        args,
        threads,
        out,
        bin,
        python,
        probe,
        scripts,
        input_rows: 0,
    };
    let info: LakeInfo = serde_json::from_str(
        &bench
            .python_cmd("prep.py")
            .arg("--lake")
            .arg(&lake_dir)
            .arg("--sql-dir")
            .arg(bench.out.join("sql"))
            .arg("--stock-out")
            .arg(bench.dest("datafusion-sql"))
            .args(["--threads", &threads.to_string()])
            .output()
            .context("preparing the run (prep.py)")?,
    )
    .context("reading prep.py's output")?;
    bench.input_rows = info.input_rows.values().sum();
    eprintln!(
        "lake: {} input rows ({}), {} traits; {} thread(s), {} rep(s); peak RSS by {}",
        bench.input_rows,
        info.input_rows
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        info.traits.len(),
        threads,
        bench.args.reps,
        bench.probe.describe()
    );
    if info.cycles {
        eprintln!("note: the lake has merge cycles; stock DataFusion SQL does not break them");
    }

    let mut entries = vec![];
    for system in bench.systems(&lake_dir, &info) {
        let wanted = system.name == REFERENCE
            || bench.args.systems.is_empty()
            || bench.args.systems.iter().any(|s| s == system.name);
        if wanted {
            if system.name == DELTA_INPUT {
                bench.land_as_delta(&lake_dir)?;
            }
            entries.push(bench.run_system(&system)?);
        }
    }
    if let Some(delta) = bench.args.delta
        && let Some(e) = bench.incremental(&lake_dir, delta)?
    {
        entries.push(e);
    }
    finish(&bench, &mut entries)?;
    Ok(entries
        .iter()
        .all(|e| e.error.is_none() && e.rows_equal != Some(false)))
}

impl Bench {
    fn dest(&self, system: &str) -> PathBuf {
        self.out.join("out").join(system)
    }

    /// Where the `psync-lake-delta` system's lake is: see `python/delta.py`.
    fn delta_lake(&self) -> PathBuf {
        self.out.join("lake_delta")
    }

    /// Lands the lake's core tables as Delta tables (untimed).
    fn land_as_delta(&self, lake: &Path) -> Result<()> {
        eprintln!("landing the lake as Delta tables (deltalake's convert_to_deltalake) ...");
        self.python_cmd("delta.py")
            .arg("--lake")
            .arg(lake)
            .arg("--out")
            .arg(self.delta_lake())
            .output()
            .context("landing the lake as Delta tables (delta.py)")?;
        Ok(())
    }

    fn python_cmd(&self, script: &str) -> Cmd {
        Cmd::new(&self.python)
            .arg(self.scripts.join(script))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("POLARS_MAX_THREADS", self.threads.to_string())
    }

    fn psync(&self) -> Cmd {
        Cmd::new(&self.bin)
    }

    fn systems(&self, lake: &Path, info: &LakeInfo) -> Vec<System> {
        let t = self.threads.to_string();
        let py = |name: &'static str, script: &str, extra: &[&str], note: &str| System {
            name,
            view: "all",
            cmd: self
                .python_cmd(script)
                .args(extra.iter().copied())
                .arg("--lake")
                .arg(lake)
                .arg("--out")
                .arg(self.dest(name))
                .args(["--threads", &t]),
            dest: Some(self.dest(name)),
            note: Some(note.to_string()),
        };
        let query = |file: &str| {
            self.psync()
                .arg("query")
                .arg("--source")
                .arg(lake)
                .args(["--threads", &t, "--format", "csv", "-f"])
                .arg(self.out.join("sql").join(file))
        };
        vec![
            System {
                name: REFERENCE,
                view: "all",
                cmd: self
                    .psync()
                    .arg("materialize")
                    .arg("--source")
                    .arg(lake)
                    .arg("--dest")
                    .arg(self.dest(REFERENCE))
                    .args(["--mode", "full", "--threads", &t, "--quiet"])
                    .args(CORE_ONLY),
                dest: Some(self.dest(REFERENCE)),
                note: Some(format!(
                    "materialize --mode full; rows_equal compares it with {ORACLE}"
                )),
            },
            System {
                name: DELTA_INPUT,
                view: "all",
                cmd: self
                    .psync()
                    .arg("materialize")
                    .arg("--source")
                    .arg(self.delta_lake())
                    .arg("--dest")
                    .arg(self.dest(DELTA_INPUT))
                    .args(["--mode", "full", "--threads", &t, "--quiet"])
                    .args(CORE_ONLY),
                dest: Some(self.dest(DELTA_INPUT)),
                note: Some(
                    "the same data files as Delta tables (one commit each): log replay by the Delta kernel"
                        .to_string(),
                ),
            },
            py(
                "duckdb-best",
                "duckdb_views.py",
                &["--style", "best"],
                "DuckDB, hand-written: one rank in update order per table, arg_max(value, rank)",
            ),
            py(
                "duckdb-dbt",
                "duckdb_views.py",
                &["--style", "dbt"],
                "DuckDB, dbt-style: row_number() = 1, last_value(IGNORE NULLS) windows",
            ),
            System {
                name: "datafusion-sql",
                view: "all",
                cmd: query("stock.sql"),
                dest: Some(self.dest("datafusion-sql")),
                note: Some(format!(
                    "stock DataFusion SQL via psync-lake query: last_value(ORDER BY) [IGNORE NULLS], \
                     {} pointer-doubling self-joins",
                    info.hops
                )),
            },
            py(
                "polars",
                "polars_views.py",
                &[],
                "Polars lazy, streaming engine, sort + group_by last",
            ),
            System {
                name: "scan-floor",
                view: "scan",
                cmd: query("scan.sql"),
                dest: None,
                note: Some("DataFusion decoding the columns the views read".to_string()),
            },
        ]
    }

    /// Runs one system `reps` times; its views are compared with psync-lake's after
    /// the first run, before any timing is reported.
    fn run_system(&self, s: &System) -> Result<Entry> {
        let mut entry = Entry {
            system: s.name.to_string(),
            view: s.view.to_string(),
            seconds: None,
            peak_rss_mb: None,
            rows_equal: None,
            runs: vec![],
            input_rows: self.input_rows,
            rows_per_second: None,
            ratio_to_psync_lake: None,
            compare: None,
            note: s.note.clone(),
            error: None,
        };
        let mut samples: Vec<Sample> = vec![];
        for rep in 1..=self.args.reps {
            if let Some(dest) = &s.dest {
                lake::clear(dest)?;
                for v in ["id_graph", "external_id_mapping", "profile_traits"] {
                    std::fs::create_dir_all(dest.join(v))?;
                }
            }
            let log = self.out.join("logs").join(format!("{}-{rep}.log", s.name));
            match self.probe.measure(&s.cmd, &log) {
                Ok(sample) => {
                    eprintln!(
                        "{:<16} run {rep}/{}: {:>8.3}s  {:>8} MB",
                        s.name,
                        self.args.reps,
                        sample.seconds,
                        sample.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}"))
                    );
                    samples.push(sample);
                }
                Err(e) => {
                    eprintln!("{:<16} run {rep}: FAILED: {e:#}", s.name);
                    entry.error = Some(format!("{e:#}"));
                    entry.rows_equal = s.dest.as_ref().map(|_| false);
                    break;
                }
            }
            if rep == 1
                && s.name != REFERENCE
                && let Some(dest) = &s.dest
            {
                self.check(dest, &mut entry);
            }
        }
        fill(&mut entry, &samples);
        Ok(entry)
    }

    /// Sets `rows_equal` (and the details) of an entry from a comparison of its
    /// views with psync-lake's; a comparison that cannot run is an error of the entry.
    fn check(&self, dest: &Path, entry: &mut Entry) {
        match self.compare(dest) {
            Ok((equal, details)) => {
                entry.rows_equal = Some(equal);
                entry.compare = Some(details);
            }
            Err(e) => {
                eprintln!("  comparison FAILED: {e:#}");
                entry.rows_equal = Some(false);
                entry.error = Some(format!("{e:#}"));
            }
        }
    }

    /// Compares a destination's views with psync-lake's.
    fn compare(&self, dest: &Path) -> Result<(bool, Value)> {
        let text = self
            .python_cmd("compare.py")
            .arg("--ref")
            .arg(self.dest(REFERENCE))
            .arg("--got")
            .arg(dest)
            .args(["--threads", &self.threads.to_string()])
            .output()
            .context("comparing views (compare.py)")?;
        let details: Value = serde_json::from_str(&text).context("reading compare.py's output")?;
        let views = details
            .as_object()
            .context("compare.py printed no object")?;
        let mut equal = true;
        for (view, r) in views {
            if r["rows_equal"] != Value::Bool(true) {
                equal = false;
                eprintln!("  MISMATCH in {view}: {}", describe_mismatch(r));
            }
        }
        Ok((equal, details))
    }

    /// psync-lake's incremental mode on a delta: per repetition, a first incremental
    /// run over the base (it reads everything and saves its state; untimed), then the
    /// delta lands (new files: every row from a cutoff time on) and the next
    /// incremental run is timed; its views must equal the full run's over the whole lake.
    fn incremental(&self, lake_dir: &Path, delta: f64) -> Result<Option<Entry>> {
        let help = self.psync().args(["materialize", "--help"]).output()?;
        if !help.contains("incremental") {
            eprintln!(
                "note: --delta skipped: `{} materialize --help` does not list an incremental mode yet",
                self.bin.display()
            );
            return Ok(None);
        }
        let inc = self.out.join("incremental");
        let (split_dir, inc_lake, dest) = (inc.join("split"), inc.join("lake"), inc.join("dest"));
        lake::clear(&split_dir)?;
        let (base_dir, delta_dir) = (split_dir.join("base"), split_dir.join("delta"));
        let split: Split = serde_json::from_str(
            &self
                .python_cmd("split.py")
                .arg("--lake")
                .arg(lake_dir)
                .args(["--fraction", &delta.to_string()])
                .arg("--base")
                .arg(&base_dir)
                .arg("--delta")
                .arg(&delta_dir)
                .output()
                .context("splitting the lake into a base and a delta (split.py)")?,
        )
        .context("reading split.py's output")?;
        let (base_files, delta_files) = (lake::files(&base_dir)?, lake::files(&delta_dir)?);
        eprintln!(
            "incremental: the delta is every row from {} on: {} rows of the update tables \
             over {} base rows, in {} files",
            split.cutoff,
            split.delta_rows,
            split.base_rows,
            delta_files.len()
        );
        let t = self.threads.to_string();
        let materialize = |mode: &str| {
            self.psync()
                .arg("materialize")
                .arg("--source")
                .arg(&inc_lake)
                .arg("--dest")
                .arg(&dest)
                .args(["--mode", mode, "--threads", &t, "--quiet"])
                .args(CORE_ONLY)
        };
        let name = format!("psync-lake incremental ({:.1}%)", 100.0 * delta);
        let mut entry = Entry {
            system: name.clone(),
            view: "all".into(),
            seconds: None,
            peak_rss_mb: None,
            rows_equal: None,
            runs: vec![],
            input_rows: split.delta_rows,
            rows_per_second: None,
            ratio_to_psync_lake: None,
            compare: None,
            note: Some(format!(
                "materialize --mode incremental after a first one over the lake without its rows \
                 from {} on (the delta: {} rows, in new files)",
                split.cutoff, split.delta_rows
            )),
            error: None,
        };
        let mut samples = vec![];
        for rep in 1..=self.args.reps {
            lake::clear(&inc_lake)?;
            lake::clear(&dest)?;
            lake::place(&base_dir, &inc_lake, &base_files, false)?;
            let log = self
                .out
                .join("logs")
                .join(format!("incremental-base-{rep}.log"));
            self.probe
                .measure(&materialize("incremental"), &log)
                .context("the first incremental run (over the base)")?;
            lake::place(&delta_dir, &inc_lake, &delta_files, true)?;
            let log = self.out.join("logs").join(format!("incremental-{rep}.log"));
            match self.probe.measure(&materialize("incremental"), &log) {
                Ok(sample) => {
                    eprintln!(
                        "{name:<16} run {rep}/{}: {:>8.3}s  {:>8} MB",
                        self.args.reps,
                        sample.seconds,
                        sample.peak_rss_mb.map_or("?".into(), |m| format!("{m:.0}"))
                    );
                    samples.push(sample);
                }
                Err(e) => {
                    eprintln!("{name} run {rep}: FAILED: {e:#}");
                    entry.error = Some(format!("{e:#}"));
                    entry.rows_equal = Some(false);
                    break;
                }
            }
            if rep == 1 {
                self.check(&dest, &mut entry);
            }
        }
        fill(&mut entry, &samples);
        Ok(Some(entry))
    }
}

/// Sets the timing fields of an entry from its samples.
fn fill(entry: &mut Entry, samples: &[Sample]) {
    entry.runs = samples.iter().map(|s| s.seconds).collect();
    if samples.is_empty() {
        return;
    }
    let mut secs = entry.runs.clone();
    secs.sort_by(f64::total_cmp);
    let n = secs.len();
    let median = if n % 2 == 1 {
        secs[n / 2]
    } else {
        (secs[n / 2 - 1] + secs[n / 2]) / 2.0
    };
    entry.seconds = Some(median);
    entry.peak_rss_mb = samples
        .iter()
        .filter_map(|s| s.peak_rss_mb)
        .max_by(f64::total_cmp);
    entry.rows_per_second = Some(entry.input_rows as f64 / median.max(1e-9));
}

/// Rows per second, readable: `12.3M`, `456k`, `789`.
fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn describe_mismatch(r: &Value) -> String {
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        return e.to_string();
    }
    let mut s = format!(
        "{} rows vs psync-lake's {}: {} psync-lake rows missing, {} extra rows",
        r["got_rows"], r["ref_rows"], r["missing"], r["extra"]
    );
    let _ = write!(s, "; columns {}", r["columns"]);
    for (k, label) in [
        ("missing_sample", "psync-lake has"),
        ("extra_sample", "this system has"),
    ] {
        if let Some(rows) = r.get(k).and_then(Value::as_array) {
            for row in rows {
                let _ = write!(s, "\n      {label}: {row}");
            }
        }
    }
    s
}

/// Fills the ratios and psync-lake's own rows_equal, prints the table, and writes
/// `results.json` and `run.json`.
fn finish(bench: &Bench, entries: &mut [Entry]) -> Result<()> {
    let reference = entries
        .iter()
        .find(|e| e.system == REFERENCE)
        .and_then(|e| e.seconds);
    let oracle = entries
        .iter()
        .find(|e| e.system == ORACLE)
        .and_then(|e| e.rows_equal);
    for e in entries.iter_mut() {
        if let (Some(s), Some(r)) = (e.seconds, reference) {
            e.ratio_to_psync_lake = Some(s / r);
        }
        if e.system == REFERENCE && e.error.is_none() {
            e.rows_equal = oracle;
        }
    }
    println!(
        "\n{:<30} {:<5} {:>10} {:>12} {:>14} {:>13} {:>10}",
        "system", "views", "median s", "peak RSS MB", "input rows/s", "vs psync-lake", "rows_equal"
    );
    for e in entries.iter() {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
        println!(
            "{:<30} {:<5} {:>10} {:>12} {:>14} {:>13} {:>10}",
            e.system,
            e.view,
            opt(e.seconds, &|s| format!("{s:.3}")),
            opt(e.peak_rss_mb, &|m| format!("{m:.0}")),
            opt(e.rows_per_second, &rate),
            opt(e.ratio_to_psync_lake, &|r| format!("{r:.2}x")),
            match (&e.error, e.rows_equal) {
                (Some(_), _) => "FAILED".to_string(),
                (None, Some(b)) => b.to_string(),
                (None, None) => "-".to_string(),
            }
        );
    }
    for e in entries.iter() {
        if let Some(err) = &e.error {
            println!(
                "\n{} FAILED: {}",
                e.system,
                err.lines().next().unwrap_or("")
            );
        } else if e.rows_equal == Some(false) {
            let views: Vec<String> = e
                .compare
                .as_ref()
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(_, r)| r["rows_equal"] != Value::Bool(true))
                        .map(|(v, _)| v.clone())
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "\n{}: rows differ from psync-lake's in {} (details above and in results.json)",
                e.system,
                views.join(", ")
            );
        }
    }
    let results = bench.out.join("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&entries)?)?;
    let run = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "psync_lake": bench.bin,
        "python": bench.python,
        "threads": bench.threads,
        "reps": bench.args.reps,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "peak_rss": bench.probe.describe(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "lake": {
            "profiles": bench.args.profiles,
            "traits": bench.args.traits,
            "updates_per_profile": bench.args.updates_per_profile,
            "drop_recursive": bench.args.drop_recursive,
            "seed": 1,
            "input_rows": bench.input_rows,
        },
    });
    std::fs::write(
        bench.out.join("run.json"),
        serde_json::to_string_pretty(&run)?,
    )?;
    println!("\nwrote {}", results.display());
    Ok(())
}

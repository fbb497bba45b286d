//! `psync-lake generate`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use psync_generate::{GenOptions, generate};

/// Options of `generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to write the lake into (one sub-folder per table).
    #[arg(long)]
    dest: PathBuf,
    /// Profiles to create.
    #[arg(long, default_value_t = 1000)]
    profiles: usize,
    /// Trait columns in profile_traits_updates.
    #[arg(long, default_value_t = 8)]
    traits: usize,
    /// Names of the first trait columns, comma-separated (default: email,
    /// first_name, plan, age, lifetime_value, is_vip, city, last_seen_at; later
    /// traits are trait_<k>).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAMES",
        conflicts_with = "case_study"
    )]
    trait_names: Vec<String>,
    /// Random seed; the same seed and options give the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average identify calls (trait updates) per profile.
    #[arg(long, default_value_t = 4.0)]
    updates_per_profile: f64,
    /// Chance, per profile created, that two profiles merge.
    #[arg(long, default_value_t = 0.15)]
    merge_rate: f64,
    /// Share of Segment's recursive id_graph entries to leave out (0..1).
    #[arg(long, default_value_t = 0.0)]
    drop_recursive: f64,
    /// Rows per Parquet file; smaller gives many files.
    #[arg(long, default_value_t = 500_000)]
    rows_per_file: usize,
    /// Upper-case table and column names, as a Snowflake export has them.
    #[arg(long)]
    upper_case: bool,
    /// Write seq as a decimal string instead of an integer.
    #[arg(long)]
    string_seq: bool,
    /// Skip the event tables: identifies, tracks and the Personas space.
    #[arg(long)]
    no_events: bool,
    /// Skip the Personas space (personas_default/: identifies, audience_entered,
    /// audience_exited, trait_computed).
    #[arg(long)]
    no_personas: bool,
    /// Write the SPEC §3.5 case study (Jane Kim's two merged profiles) instead.
    #[arg(long, conflicts_with_all = ["profiles", "traits", "seed"])]
    case_study: bool,
}

/// Runs `generate`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.case_study {
        psync_generate::case_study(&a.dest)
            .with_context(|| format!("writing the case study to {}", a.dest.display()))?;
        eprintln!("wrote the case study lake to {}", a.dest.display());
        return Ok(());
    }
    let opts = GenOptions {
        profiles: a.profiles,
        traits: a.traits,
        trait_names: a.trait_names,
        seed: a.seed,
        updates_per_profile: a.updates_per_profile,
        merge_rate: a.merge_rate,
        drop_recursive: a.drop_recursive,
        rows_per_file: a.rows_per_file,
        upper_case: a.upper_case,
        string_seq: a.string_seq,
        events: !a.no_events,
        personas: !a.no_personas,
    };
    let t = Instant::now();
    let summary = generate(&a.dest, &opts)
        .with_context(|| format!("generating a lake in {}", a.dest.display()))?;
    for (table, rows, files) in &summary.tables {
        eprintln!("{table:<30} {rows:>12} rows {files:>5} files");
    }
    eprintln!(
        "{} merges, {} recursive entries dropped; wrote {} in {:.1}s",
        summary.merges,
        summary.dropped_recursive,
        a.dest.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

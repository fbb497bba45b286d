//! Which version of the source lake's Delta tables a command reads.

use psync_lake_io::DeltaAt;

/// `--source-version` / `--source-timestamp`: reproducible reads of Delta tables
/// (plain Parquet tables have no versions and are read as they are).
#[derive(Debug, Clone, clap::Args)]
pub struct SourceAtArgs {
    /// Read every Delta table of the source at this version of its log
    /// [default: the latest].
    #[arg(long, value_name = "N", conflicts_with = "source_timestamp")]
    source_version: Option<u64>,
    /// Read every Delta table at its latest version committed at or before this
    /// instant (RFC 3339, e.g. 2024-05-01T00:00:00Z, or a date).
    #[arg(long, value_name = "TIME", value_parser = psync_core::parse::parse_instant)]
    source_timestamp: Option<i64>,
}

impl SourceAtArgs {
    /// The version these flags choose.
    pub fn at(&self) -> DeltaAt {
        match (self.source_version, self.source_timestamp) {
            (Some(v), _) => DeltaAt::Version(v),
            // `parse_instant` gives microseconds; the Delta log keeps milliseconds.
            (None, Some(us)) => DeltaAt::Timestamp(us.div_euclid(1000)),
            (None, None) => DeltaAt::Latest,
        }
    }
}

//! Sizes: parsing `512M` or `4GiB` for `--memory-limit`, and printing byte counts.

/// A byte count for people: `512 B`, `1.5 MB` (powers of 1024, as [`parse_size`]).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a byte size (kept in psync-core: the Python package reads them too).
pub use psync_core::parse::parse_size;

//! Values given as text by the CLI's flags and the Python package's keyword
//! arguments: sizes (`512M`), durations (`60s`) and instants (RFC 3339 or a date).

use std::time::Duration;

/// Parses a byte size: a number with an optional K/M/G/T suffix (powers of 1024;
/// `B`, `iB` and `B` forms accepted).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (try 512M or 4G)"))?;
    let mult: f64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0_f64.powi(4),
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use K, M, G or T)")),
    };
    let bytes = n * mult;
    // Written so that NaN is refused too.
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("'{s}' must be at least one byte"));
    }
    Ok(bytes as usize)
}

/// Parses a duration; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 60s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("'{s}': unknown unit '{other}' (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{s}': {e}"))
}

/// Parses an instant: RFC 3339 (`2024-05-01T00:00:00Z`, any offset) or a date
/// (midnight UTC), to µs since the epoch.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(midnight) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc().timestamp_micros());
    }
    Err(format!(
        "'{s}' is not an instant: use RFC 3339 (2024-05-01T00:00:00Z) or a date (2024-05-01)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-02"), Ok(86_400_000_000));
        assert_eq!(parse_instant("1970-01-01T00:00:01+00:00"), Ok(1_000_000));
        assert!(parse_instant("yesterday").is_err());
    }
}

//! Command-line value parsing: bitrates and durations.

use std::time::Duration;

/// `2500000`, `2500k`, `2.5M`, `2.5Mbit`, `600kbps` → bits per second.
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let stripped = lower
        .strip_suffix("bps")
        .or_else(|| lower.strip_suffix("bit/s"))
        .or_else(|| lower.strip_suffix("bit"))
        .or_else(|| lower.strip_suffix("b"))
        .unwrap_or(&lower);
    let (num, mult) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 1e3),
        Some('m') => (&stripped[..stripped.len() - 1], 1e6),
        Some('g') => (&stripped[..stripped.len() - 1], 1e9),
        _ => (stripped, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad bitrate '{s}' (e.g. 2.5M, 600k)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("bitrate must be positive: '{s}'"));
    }
    Ok((v * mult).round() as u64)
}

/// `10`, `10s`, `500ms`, `1.5s`, `2m` → duration (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration '{s}' (e.g. 10s, 500ms)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("duration must not be negative: '{s}'"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// As [`parse_bitrate`], also accepting 0.
pub fn parse_bitrate_or_zero(s: &str) -> Result<u64, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0);
    }
    parse_bitrate(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("2500000").unwrap(), 2_500_000);
        assert_eq!(parse_bitrate("2.5M").unwrap(), 2_500_000);
        assert_eq!(parse_bitrate("600k").unwrap(), 600_000);
        assert_eq!(parse_bitrate("600kbps").unwrap(), 600_000);
        assert_eq!(parse_bitrate("2.68Mbit").unwrap(), 2_680_000);
        assert_eq!(parse_bitrate("1G").unwrap(), 1_000_000_000);
        for bad in ["", "k", "-1M", "0", "fast", "NaN"] {
            assert!(parse_bitrate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_bitrate_or_zero("0").unwrap(), 0);
        assert_eq!(parse_bitrate_or_zero("64k").unwrap(), 64_000);
    }
}

//! Wall-clock time as the numbers that travel in records, tokens and APIs.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch; 0 if the clock is before it (latency stamps).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

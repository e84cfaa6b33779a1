//! What a request asks of a stream's packaging, and whether it can be answered now: the
//! blocking playlist reload (`_HLS_msn`, `_HLS_part`), delta updates (`_HLS_skip`), and parts
//! and segments that do not exist yet but are about to.

use crate::packager::Packager;

/// How far ahead of the newest part a request may ask before it is refused (the spec's
/// Advance Part Limit).
const ADVANCE_PART_LIMIT: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlaylistQuery {
    /// `_HLS_msn` and `_HLS_part`: hold the answer until this segment (or part) exists.
    pub block: Option<(u64, Option<usize>)>,
    /// `_HLS_skip=YES` (or `v2`): a delta update.
    pub skip: bool,
}

impl PlaylistQuery {
    /// Parses the playlist request's query; other parameters (a play token) are left to the
    /// caller. A malformed value is an error: the spec's 400.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let (mut msn, mut part, mut skip) = (None, None, false);
        for (key, value) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        {
            match key {
                "_HLS_msn" => msn = Some(number(key, value)?),
                "_HLS_part" => {
                    part = Some(
                        usize::try_from(number(key, value)?).map_err(|_| "_HLS_part too large")?,
                    )
                }
                "_HLS_skip" => match value {
                    "YES" | "v2" => skip = true,
                    "NO" => {}
                    _ => return Err(format!("_HLS_skip must be YES or v2, not {value:?}")),
                },
                _ => {}
            }
        }
        if part.is_some() && msn.is_none() {
            return Err("_HLS_part needs _HLS_msn".into());
        }
        Ok(Self {
            block: msn.map(|m| (m, part)),
            skip,
        })
    }
}

fn number(key: &str, value: &str) -> Result<u64, String> {
    // Digits only: no sign, no spaces, no hex, at most u64.
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key} must be a decimal number, not {value:?}"));
    }
    value.parse().map_err(|_| format!("{key} out of range"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Answer now.
    Ready,
    /// Hold the request until the packager changes.
    Wait,
    /// Too far ahead (400 for a playlist), or gone (404 for media).
    Refused,
}

/// Whether a playlist request blocking on segment `msn` (part `part`) can be answered.
pub fn playlist_ready(packager: &Packager, msn: u64, part: Option<usize>) -> Readiness {
    let Some(last) = packager.segments().back() else {
        return Readiness::Wait;
    };
    if msn > last.sequence + 2 {
        return Readiness::Refused;
    }
    let (newest_msn, newest_part) = packager.last_part().unwrap_or((last.sequence, 0));
    match part {
        // The segment, complete (or a later one begun).
        None => {
            let complete = packager.segment(msn).is_some_and(|s| s.complete);
            if complete
                || msn < packager.segments().front().map_or(0, |s| s.sequence)
                || last.sequence > msn
            {
                Readiness::Ready
            } else {
                Readiness::Wait
            }
        }
        Some(p) => {
            if (msn, p) <= (newest_msn, newest_part)
                || packager.segment(msn).is_some_and(|s| s.complete)
                || last.sequence > msn
            {
                Readiness::Ready
            } else if msn == newest_msn && p > newest_part + ADVANCE_PART_LIMIT
                || msn > newest_msn && p > ADVANCE_PART_LIMIT
            {
                Readiness::Refused
            } else {
                Readiness::Wait
            }
        }
    }
}

/// Whether part `part` of segment `msn` can be served: it exists, it is about to (the preload
/// hint and the next few), or not at all.
pub fn part_ready(packager: &Packager, msn: u64, part: usize) -> Readiness {
    if packager.segment(msn).is_some_and(|s| part < s.parts.len()) {
        return Readiness::Ready;
    }
    match crate::playlist::next_part(packager) {
        Some((next_msn, next_part))
            if (msn == next_msn && part >= next_part && part < next_part + ADVANCE_PART_LIMIT)
                || (msn == next_msn + 1 && part < ADVANCE_PART_LIMIT) =>
        {
            Readiness::Wait
        }
        // A stream not packaged yet: its first part is about to come.
        None if part < ADVANCE_PART_LIMIT => Readiness::Wait,
        _ => Readiness::Refused,
    }
}

/// Whether segment `msn` can be served whole: complete, still being made, or not at all.
pub fn segment_ready(packager: &Packager, msn: u64) -> Readiness {
    match packager.segment(msn) {
        Some(s) if s.complete => Readiness::Ready,
        Some(_) => Readiness::Wait,
        None if packager
            .segments()
            .back()
            .is_some_and(|s| s.complete && s.sequence + 1 == msn) =>
        {
            Readiness::Wait
        }
        None => Readiness::Refused,
    }
}

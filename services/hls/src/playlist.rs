//! The media playlist (RFC 8216bis, with the Low-Latency HLS tags) of what a [`Packager`] holds.
//!
//! URIs are relative to the playlist: `init-{H}.mp4` (an init section, by the hex hash of its
//! bytes), `{N}.m4s` (segment N, complete) and `{N}.{P}.m4s` (part P of segment N). `query` (a play
//! token, say) is appended to each, because players do not carry a playlist's query over to the
//! URIs in it.

use std::fmt::Write;

use crate::packager::{Packager, Segment};

/// Parts are listed for the segments within this many target durations of the end.
const PART_TARGETS_LISTED: u64 = 3;

/// The playlist's fixed parameters, derived from the packager's configuration.
pub struct Targets {
    pub target_duration_secs: u64,
    pub part_target_ms: u64,
    /// `CAN-SKIP-UNTIL`: six target durations, the spec's minimum.
    pub skip_until_ms: u64,
    /// `PART-HOLD-BACK`: three part targets, the spec's minimum.
    pub part_hold_back_ms: u64,
}

impl Targets {
    pub fn of(packager: &Packager) -> Self {
        let c = packager.config();
        // Segments end at keyframes, so one may run longer than the configured target; the
        // target must cover every listed segment (rounded to the nearest second).
        let longest = packager
            .segments()
            .iter()
            .filter(|s| s.complete)
            .map(|s| (s.duration_ms() + 500) / 1000)
            .max()
            .unwrap_or(0);
        let target_duration_secs = c.segment_ms.div_ceil(1000).max(longest).max(1);
        Self {
            target_duration_secs,
            part_target_ms: c.part_ms,
            skip_until_ms: 6 * target_duration_secs * 1000,
            part_hold_back_ms: 3 * c.part_ms,
        }
    }
}

/// Renders the playlist; `skip` gives a delta update (`_HLS_skip=YES`): the segments older
/// than `CAN-SKIP-UNTIL` from the end are replaced by `EXT-X-SKIP`.
pub fn render(packager: &Packager, skip: bool, query: &str) -> String {
    let t = Targets::of(packager);
    let segments = packager.segments();
    let mut out = String::with_capacity(256 + 160 * segments.len());
    let secs = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}\n\
         #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        t.target_duration_secs,
        secs(t.skip_until_ms),
        secs(t.part_hold_back_ms),
        secs(t.part_target_ms),
        segments.front().map_or(0, |s| s.sequence),
    );
    // Distance of each segment's start from the end of the playlist.
    let total: u64 = segments.iter().map(Segment::duration_ms).sum();
    let mut start = 0u64;
    let mut skipped = 0usize;
    let mut map = None;
    let parts_from = PART_TARGETS_LISTED * t.target_duration_secs * 1000;
    for segment in segments {
        let from_end = total - start;
        start += segment.duration_ms();
        if skip && segment.complete && from_end > t.skip_until_ms {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            skipped = 0;
        }
        if segment.discontinuity && map.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(segment.init) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"init-{:016x}.mp4{query}\"",
                segment.init
            );
            map = Some(segment.init);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            iso8601(segment.wall_clock_ms)
        );
        if !segment.complete || total - start < parts_from {
            for (i, part) in segment.parts.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "#EXT-X-PART:DURATION={},URI=\"{}.{i}.m4s{query}\"{}",
                    secs(part.duration_ms),
                    segment.sequence,
                    if part.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    },
                );
            }
        }
        if segment.complete {
            let _ = write!(
                out,
                "#EXTINF:{},\n{}.m4s{query}\n",
                secs(segment.duration_ms()),
                segment.sequence
            );
        }
    }
    if let Some((sequence, part)) = next_part(packager) {
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{sequence}.{part}.m4s{query}\""
        );
    }
    out
}

/// The part that comes next: the open segment's next, or the first of the next segment.
pub fn next_part(packager: &Packager) -> Option<(u64, usize)> {
    let last = packager.segments().back()?;
    Some(if last.complete {
        (last.sequence + 1, 0)
    } else {
        (last.sequence, last.parts.len())
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub fn iso8601(unix_ms: u64) -> String {
    let (days, ms_of_day) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Days to the civil date (H. Hinnant's algorithm), for dates from 1970 on.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

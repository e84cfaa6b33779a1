//! One stream's timeline. Publishers start their timestamps wherever they like (often 0, after a
//! reconnect 0 again); viewers that stay connected across a republish must see time go on.

/// Maps a source's (64-bit extended) timestamps onto the stream's timeline.
#[derive(Debug)]
pub struct Timeline {
    /// Where the stream's timeline goes on: just after the last timestamp viewers saw.
    next: u64,
    /// Whether the source's timestamps are already a stream timeline to keep (see
    /// [`following`](Self::following)).
    follow: bool,
    /// Decided by the source's first timestamp.
    mapping: Option<Mapping>,
}

#[derive(Debug, Clone, Copy)]
enum Mapping {
    /// The source's timestamps as they are (never before `next`).
    Keep,
    /// The source's timestamp `base` lands at `start`.
    Rebase { base: u64, start: u64 },
}

impl Timeline {
    /// A publisher's own timestamps: its first lands just after `last` (`None`: a new stream,
    /// at 0).
    pub fn continuing(last: Option<u64>) -> Self {
        Self {
            next: last.map_or(0, |l| l + 1),
            follow: false,
            mapping: None,
        }
    }

    /// Timestamps already on a stream timeline (an ingest's, over the relay): kept as they are
    /// when they go on from `last`, so every edge that pulls the stream gives a frame the same
    /// timestamp, and shifted to continue after `last` only when they would go back (a new
    /// source after a failover).
    pub fn following(last: Option<u64>) -> Self {
        Self {
            follow: true,
            ..Self::continuing(last)
        }
    }

    pub fn map(&mut self, ts: u64) -> u64 {
        let first = if self.follow && ts >= self.next {
            Mapping::Keep
        } else {
            Mapping::Rebase {
                base: ts,
                start: self.next,
            }
        };
        let mapping = *self.mapping.get_or_insert(first);
        match mapping {
            Mapping::Keep => ts.max(self.next),
            Mapping::Rebase { base, start } => start + ts.saturating_sub(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republish_continues_monotonic() {
        let mut t = Timeline::continuing(None);
        assert_eq!(t.map(1000), 0);
        assert_eq!(t.map(1500), 500);
        assert_eq!(t.map(1490), 490, "interleaved audio may step back a little");
        let mut t = Timeline::continuing(Some(500));
        assert_eq!(t.map(0), 501);
        assert_eq!(t.map(40), 541);
    }

    #[test]
    fn a_followed_timeline_is_kept_while_it_goes_on() {
        // Two edges that joined at different moments give the same frame the same time.
        let mut early = Timeline::following(None);
        let mut late = Timeline::following(None);
        assert_eq!(early.map(120_000), 120_000);
        assert_eq!(early.map(120_040), 120_040);
        assert_eq!(late.map(120_040), 120_040);
        assert_eq!(
            late.map(120_033),
            120_033,
            "audio just before the first frame"
        );
        // A new source whose timeline goes on is kept; one that would go back is shifted.
        let mut same = Timeline::following(Some(120_040));
        assert_eq!(same.map(120_100), 120_100);
        let mut moved = Timeline::following(Some(120_040));
        assert_eq!(moved.map(0), 120_041);
        assert_eq!(moved.map(40), 120_081);
    }
}

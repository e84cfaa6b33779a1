//! One stream's timeline. Publishers start their timestamps wherever they like (often 0, after a
//! reconnect 0 again); viewers that stay connected across a republish must see time go on.

/// Maps one publisher's (64-bit extended) timestamps onto the stream's timeline.
#[derive(Debug)]
pub struct Timeline {
    /// Where this publish starts on the stream's timeline.
    offset: u64,
    /// The publisher's first timestamp.
    base: Option<u64>,
}

impl Timeline {
    /// A publish continues just after the last timestamp viewers saw (`None`: a new stream).
    pub fn continuing(last: Option<u64>) -> Self {
        Self {
            offset: last.map_or(0, |l| l + 1),
            base: None,
        }
    }

    pub fn map(&mut self, ts: u64) -> u64 {
        let base = *self.base.get_or_insert(ts);
        self.offset + ts.saturating_sub(base)
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
}

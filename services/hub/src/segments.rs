//! Where HLS segments start, decided once, where the stream is published, and carried with the
//! frames (over the relay too) so that every server packaging the stream cuts it at the same
//! frames and numbers the segments alike: segment numbers and boundaries then follow from the
//! stream, never from the moment a server started pulling it.

use liverelay_rtmp::MediaKind;

use crate::frame::Frame;

/// A frame that starts an HLS segment: a keyframe, or in a stream without video an audio
/// frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// The segment's media sequence number: one more than the previous segment's.
    pub sequence: u64,
    /// When the publishing server received the frame (ms since the Unix epoch): the segment's
    /// `EXT-X-PROGRAM-DATE-TIME`, the same on every server.
    pub wall_clock_ms: u64,
    /// The first segment of a new publish or source: timestamps and codec settings may jump.
    pub discontinuity: bool,
}

/// A segment that has run this many target durations without a frame a segment may start
/// with is cut anyway.
const MAX_TARGETS: u64 = 5;

/// One stream's segment cutter: it outlives publishes, so that numbers keep increasing.
#[derive(Debug)]
pub(crate) struct SegmentCutter {
    target_ms: u64,
    last_sequence: Option<u64>,
    /// Timeline timestamp of the open segment's first frame, in this source.
    open_since: Option<u64>,
    /// The next segment follows a restart.
    restarted: bool,
    /// What a followed source's numbers are shifted by (decided by its first start).
    follow_offset: Option<u64>,
}

impl SegmentCutter {
    pub fn new(target_ms: u64) -> Self {
        Self {
            target_ms: target_ms.max(1),
            last_sequence: None,
            open_since: None,
            restarted: false,
            follow_offset: None,
        }
    }

    /// A new publish or source: its first segment starts at its first keyframe.
    pub fn restart(&mut self) {
        self.open_since = None;
        self.follow_offset = None;
        self.restarted = self.last_sequence.is_some();
    }

    /// The publishing server's rule: a segment starts at the first keyframe at least the
    /// target duration after the open segment's start.
    pub fn cut(&mut self, frame: &Frame, has_video: bool) -> Option<SegmentStart> {
        let age = self
            .open_since
            .map(|since| frame.timestamp.saturating_sub(since));
        // A stream whose keyframes stop coming (or never come again) is still cut, at any
        // audio or video frame, so that no segment, and no server's memory, grows without end.
        let overdue = age.is_some_and(|a| a >= MAX_TARGETS * self.target_ms)
            && !frame.sequence_header
            && matches!(frame.kind, MediaKind::Audio | MediaKind::Video);
        if !overdue && !starts_segment(frame, has_video) {
            return None;
        }
        if !overdue && age.is_some_and(|a| a < self.target_ms) {
            return None;
        }
        let wall_clock_ms = frame.received_unix_us / 1000;
        let next = self.last_sequence.map_or(0, |l| l + 1);
        // A publish starts its numbers at the wall clock in segment durations (or after the
        // last, if that is later): a stream that comes back after the hub forgot it, or on
        // another ingest after a failover, goes on with higher numbers, so that URLs a player
        // or a CDN has seen are never reused for other media.
        let sequence = if self.open_since.is_none() {
            next.max(wall_clock_ms / self.target_ms)
        } else {
            next
        };
        Some(self.open(frame, sequence, wall_clock_ms, false))
    }

    /// A server pulling the stream keeps the marks its source made. Numbers that would go back
    /// (a new source after a failover) are shifted to go on. After such a restart, a source
    /// whose first keyframe carries no mark (its cache started inside a segment) gets one here,
    /// so that the stream goes on at once; before the first mark of all, frames start no
    /// segment, as on a server that joined later.
    pub fn follow(
        &mut self,
        frame: &Frame,
        has_video: bool,
        relayed: Option<SegmentStart>,
    ) -> Option<SegmentStart> {
        match relayed {
            Some(mark) => {
                let last = self.last_sequence;
                let offset = *self.follow_offset.get_or_insert(match last {
                    Some(l) if mark.sequence <= l => l + 1 - mark.sequence,
                    _ => 0,
                });
                let sequence = mark.sequence + offset;
                if last.is_some_and(|l| sequence <= l) {
                    return None;
                }
                Some(self.open(frame, sequence, mark.wall_clock_ms, mark.discontinuity))
            }
            None if self.restarted
                && self.open_since.is_none()
                && starts_segment(frame, has_video) =>
            {
                let sequence = self.last_sequence.map_or(0, |l| l + 1);
                Some(self.open(frame, sequence, frame.received_unix_us / 1000, true))
            }
            None => None,
        }
    }

    fn open(
        &mut self,
        frame: &Frame,
        sequence: u64,
        wall_clock_ms: u64,
        discontinuity: bool,
    ) -> SegmentStart {
        self.last_sequence = Some(sequence);
        self.open_since = Some(frame.timestamp);
        let restarted = std::mem::take(&mut self.restarted);
        SegmentStart {
            sequence,
            wall_clock_ms,
            discontinuity: discontinuity || restarted,
        }
    }
}

/// Frames a segment may start with: a decoder can begin there.
fn starts_segment(frame: &Frame, has_video: bool) -> bool {
    if frame.sequence_header {
        return false;
    }
    match frame.kind {
        MediaKind::Video => frame.keyframe,
        MediaKind::Audio => !has_video,
        MediaKind::Metadata | MediaKind::Data => false,
    }
}

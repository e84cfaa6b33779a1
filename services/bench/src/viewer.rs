//! What every kind of player reports, whatever its protocol: its state, bytes received, time
//! to first frame, delivery latency from send stamps, and stalls. RTMP and HTTP-FLV players
//! feed it messages; HLS clients feed it whole parts or segments.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use liverelay_rtmp_client::MediaKind;
use tokio::time::Instant;

use crate::engine::{PlayerSlot, Shared};
use crate::source::{STAMP_MAGIC, stamp, unix_nanos};

pub struct Viewer {
    slot: Arc<PlayerSlot>,
    shared: Arc<Shared>,
    /// Decodes every message (latency); the others stop decoding after the first frame.
    pub sampled: bool,
    t0: Instant,
    /// Unix time of the join: stamps older than this are from the GOP cache, not live.
    joined: u64,
    first_frame: bool,
}

impl Viewer {
    pub(crate) fn new(slot: Arc<PlayerSlot>, shared: Arc<Shared>, sampled: bool) -> Self {
        Self {
            slot,
            shared,
            sampled,
            t0: Instant::now(),
            joined: unix_nanos(),
            first_frame: false,
        }
    }

    /// Connected and the server accepted the play request.
    pub fn playing(&self) {
        self.slot.state.store(1, Relaxed);
    }

    /// Connecting or asking to play failed.
    pub fn failed(&self, why: String) {
        self.slot.state.store(2, Relaxed);
        self.shared.fail(&self.shared.failed, why);
    }

    /// The server ended a playing connection (not counted once the run is over).
    pub fn ended(&self, why: String) {
        if self.shared.stopping.load(Relaxed) {
            return;
        }
        self.slot.state.store(3, Relaxed);
        self.shared.fail(&self.shared.dropped, why);
    }

    /// Bytes received over the player's whole life.
    pub fn bytes(&self, total: u64) {
        self.slot.bytes.store(total, Relaxed);
    }

    pub fn has_frame(&self) -> bool {
        self.first_frame
    }

    /// The first picture arrived: time to first frame, and whether it was a keyframe.
    pub fn first_frame(&mut self, keyframe: bool) {
        if self.first_frame {
            return;
        }
        self.first_frame = true;
        self.slot.flowing.store(true, Relaxed);
        self.shared
            .ttff
            .lock()
            .unwrap()
            .push((self.t0.elapsed().as_secs_f64() * 1000.0, keyframe));
    }

    /// One message (RTMP) or tag (FLV): the first video frame and, if sampled, its latency.
    pub fn media(&mut self, kind: MediaKind, payload: &[u8]) {
        // Sequence headers (AVC/HEVC config) are not frames.
        if kind == MediaKind::Video
            && !(payload.get(1) == Some(&0) && payload.first().is_some_and(|b| b & 0x0f == 7))
        {
            self.first_frame(payload.first().is_some_and(|b| b >> 4 == 1));
        }
        if self.sampled
            && let Some(sent) = stamp::read(kind, payload)
        {
            self.latency(sent, kind == MediaKind::Video);
        }
    }

    /// Every send stamp inside a container's bytes (fMP4 part, MPEG-TS segment): the
    /// publisher's stamps travel in the sample data, whatever boxes or packets wrap them.
    pub fn stamps_in(&self, data: &[u8]) {
        let mut at = 0;
        while let Some(i) = find(&data[at..], STAMP_MAGIC) {
            let s = at + i + STAMP_MAGIC.len();
            if let Some(b) = data.get(s..s + 8) {
                self.latency(u64::from_be_bytes(b.try_into().unwrap()), false);
            }
            at = s;
        }
    }

    /// A live message's delivery latency (GOP-cache and older messages are not counted).
    fn latency(&self, sent: u64, video: bool) {
        if sent < self.joined {
            return;
        }
        let ms = unix_nanos().saturating_sub(sent) as f64 / 1e6;
        self.shared.latency_ms.lock().unwrap().push(ms);
        if video {
            self.shared.video_latency_ms.lock().unwrap().push(ms);
        }
    }

    /// The player would have stopped to wait for media (HLS clients, see [`Pace`]).
    pub fn stalled(&self) {
        self.slot.stalls.fetch_add(1, Relaxed);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether a segmented client (HLS) keeps playing: it starts playing its first part or
/// segment when that arrives, then plays in real time; each later one must arrive before the
/// playhead passes its start by more than `tolerance`. A stall restarts the clock (a player
/// rebuffers and resumes from what it has).
pub struct Pace {
    tolerance: std::time::Duration,
    start: Option<Instant>,
    /// Media time received since `start`, in seconds.
    media: f64,
}

impl Pace {
    pub fn new(tolerance: std::time::Duration) -> Self {
        Self {
            tolerance,
            start: None,
            media: 0.0,
        }
    }

    /// Media of `duration` seconds arrived at `now`; true if the player stalled before it.
    pub fn arrived(&mut self, now: Instant, duration: f64) -> bool {
        let stalled = self.start.is_some_and(|s| {
            now.duration_since(s).as_secs_f64() - self.media > self.tolerance.as_secs_f64()
        });
        if stalled || self.start.is_none() {
            self.start = Some(now);
            self.media = 0.0;
        }
        self.media += duration;
        stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pace_counts_late_arrivals_only() {
        let t = Instant::now();
        let ms = |v| t + Duration::from_millis(v);
        let mut p = Pace::new(Duration::from_millis(400));
        assert!(!p.arrived(ms(0), 0.2));
        // On time, early, and late within the tolerance.
        assert!(!p.arrived(ms(200), 0.2));
        assert!(!p.arrived(ms(250), 0.2));
        assert!(!p.arrived(ms(990), 0.2)); // needed at 600, 390 ms late
        // Needed at 800: 401 ms late is a stall, and the clock restarts.
        assert!(p.arrived(ms(1201), 0.2));
        assert!(!p.arrived(ms(1400), 0.2));
    }

    #[test]
    fn finds_every_stamp() {
        let shared = Arc::new(Shared::default());
        let v = Viewer::new(Arc::new(PlayerSlot::new(0)), shared.clone(), true);
        let mut data = b"xx".to_vec();
        for n in [7u64, 9] {
            data.extend_from_slice(STAMP_MAGIC);
            data.extend_from_slice(&(unix_nanos() + n).to_be_bytes());
            data.extend_from_slice(b"filler");
        }
        v.stamps_in(&data);
        v.stamps_in(&data[..data.len() - 10]); // a cut stamp is not read
        assert_eq!(shared.latency_ms.lock().unwrap().len(), 3);
    }
}

//! A stream's rates measured on its own media timeline (so they describe the stream, not how
//! fast the network delivered it): bitrate, video frame rate, keyframe interval.

use liverelay_rtmp::MediaKind;

/// Window over which bitrate and frame rate are averaged, in media milliseconds.
const WINDOW_MS: u64 = 2000;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct StreamRates {
    pub bitrate_bps: f64,
    pub frame_rate: f64,
    /// Milliseconds between the last two keyframes; 0 until two were seen.
    pub keyframe_interval_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RateMeter {
    window_start: Option<u64>,
    bytes: u64,
    video_frames: u64,
    last_keyframe: Option<u64>,
    pub rates: StreamRates,
}

impl RateMeter {
    pub fn record(&mut self, kind: MediaKind, keyframe: bool, timestamp: u64, payload_len: usize) {
        let start = *self.window_start.get_or_insert(timestamp);
        // Interleaved audio may step back a little; a big step back is a new source's clock.
        if timestamp + WINDOW_MS < start {
            self.reset_window(timestamp);
        }
        self.bytes += payload_len as u64;
        if kind == MediaKind::Video {
            self.video_frames += 1;
        }
        if keyframe {
            if let Some(prev) = self.last_keyframe.filter(|p| *p < timestamp) {
                self.rates.keyframe_interval_ms = timestamp - prev;
            }
            self.last_keyframe = Some(timestamp);
        }
        let elapsed = timestamp.saturating_sub(self.window_start.unwrap_or(timestamp));
        if elapsed >= WINDOW_MS {
            let secs = elapsed as f64 / 1000.0;
            self.rates.bitrate_bps = self.bytes as f64 * 8.0 / secs;
            self.rates.frame_rate = self.video_frames as f64 / secs;
            self.reset_window(timestamp);
        }
    }

    fn reset_window(&mut self, timestamp: u64) {
        self.window_start = Some(timestamp);
        self.bytes = 0;
        self.video_frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_bitrate_frame_rate_and_keyframe_interval() {
        let mut m = RateMeter::default();
        // 25 fps video of 5000 bytes and 43 audio frames/s of 200 bytes, keyframe every 2 s.
        let mut events: Vec<(u64, MediaKind, bool, usize)> = (0..=125u64)
            .map(|i| (i * 40, MediaKind::Video, i % 50 == 0, 5000))
            .chain((0..=215u64).map(|i| (i * 1000 / 43, MediaKind::Audio, false, 200)))
            .collect();
        events.sort_by_key(|e| e.0);
        for (ts, kind, key, len) in events {
            m.record(kind, key, ts, len);
        }
        let r = m.rates;
        // The stream's true rates: (25 * 5000 + 43 * 200) bytes/s = 1,068,800 bit/s. A 2 s
        // window over 40 ms and 23 ms frames holds them to within 1 %.
        let bitrate = (25.0 * 5000.0 + 43.0 * 200.0) * 8.0;
        assert!(
            (r.bitrate_bps - bitrate).abs() < bitrate / 100.0,
            "bitrate {} for {bitrate}",
            r.bitrate_bps
        );
        assert!((r.frame_rate - 25.0).abs() < 0.25, "{r:?}");
        assert_eq!(r.keyframe_interval_ms, 2000);
    }
}

//! The registry of live streams inside one process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use liverelay_types::StreamId;

use crate::batching::Batching;
use crate::frame::{Codec, FanoutEncoding};
use crate::rates::StreamRates;
use crate::stream::{Publisher, Stream};
use crate::viewer::Viewer;

#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    pub encoding: FanoutEncoding,
    /// Keep the frames since the last keyframe so new viewers start at once.
    pub gop_cache: bool,
    pub gop_max_bytes: usize,
    pub gop_max_duration_ms: u64,
    /// How far (in frames) a viewer may fall behind before it skips to a keyframe.
    pub viewer_queue_frames: usize,
    /// The same limit in bytes of wire data.
    pub viewer_queue_bytes: usize,
    /// Live streams (with a publisher) the hub holds at most.
    pub max_streams: usize,
    /// Streams that are not live but have viewers (waiting for a publisher, or still draining
    /// an ended publish) the hub holds at most. Counted apart from `max_streams`, so viewers
    /// of names nobody publishes cannot take the slots publishers need.
    pub max_waiting_streams: usize,
    /// Frames (any kind) the GOP cache holds at most; past it the GOP is not cached. Bytes
    /// alone do not bound a flood of tiny messages.
    pub gop_max_frames: usize,
    /// An audio message wakes the viewers only if they have not been woken for this long;
    /// otherwise it goes out with the next video frame. Halves the wakeups and writes per
    /// player of an audio+video stream; audio waits at most this long. Zero: every message
    /// wakes them. The most it holds: with a load sampler ([`Hub::batching`]) the hold
    /// follows the load and is zero while the process has CPU to spare.
    pub audio_hold: std::time::Duration,
    /// HLS segments start at the first keyframe this long after the previous start
    /// ([`SegmentStart`](crate::SegmentStart)); decided where the stream is published.
    pub segment_target_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            encoding: FanoutEncoding::default(),
            gop_cache: true,
            gop_max_bytes: 32 * 1024 * 1024,
            gop_max_duration_ms: 20_000,
            // nginx-rtmp's out_queue: about 3.5 s of a 30 fps stream with audio.
            viewer_queue_frames: 256,
            viewer_queue_bytes: 16 * 1024 * 1024,
            max_streams: 1000,
            max_waiting_streams: 1000,
            // A 20 s GOP of 120 fps video with 48 kHz AAC is about 3,500 messages.
            gop_max_frames: 8192,
            audio_hold: std::time::Duration::from_millis(40),
            segment_target_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamId),
    #[error("stream limit of {0} reached")]
    TooManyStreams(usize),
    #[error("limit of {0} streams waiting for a publisher reached")]
    TooManyWaiting(usize),
}

/// A stream as listed by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub key: StreamId,
    pub live: bool,
    pub viewers: u64,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_dropped: u64,
    pub rates: StreamRates,
    /// Bytes of the GOP cached for new viewers (0 when none is cached).
    pub gop_cache_bytes: u64,
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    pub(crate) batching: Batching,
    streams: Mutex<HashMap<StreamId, Arc<Stream>>>,
    /// Entries of `streams` with a publisher; changed only under the `streams` lock.
    live: AtomicUsize,
}

impl HubInner {
    /// Ends `stream`'s publish and forgets the stream if nobody watches it any more.
    pub(crate) fn unpublish(&self, stream: &Arc<Stream>) {
        {
            let _streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            stream.lock().stop_publish();
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        stream.direct.stop_all();
        stream.wake_viewers();
        self.release(stream);
    }

    /// Forgets a stream nobody publishes or watches any more.
    pub(crate) fn release(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let st = stream.lock();
        if !st.live
            && st.viewers == 0
            && streams
                .get(&stream.key)
                .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(&stream.key);
        }
    }
}

/// All streams of this process. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Self {
            inner: Arc::new(HubInner {
                batching: Batching::fixed(config.audio_hold),
                config,
                streams: Mutex::new(HashMap::new()),
                live: AtomicUsize::new(0),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// How long audio waits for video now; a load sampler feeds it.
    pub fn batching(&self) -> &Batching {
        &self.inner.batching
    }

    /// Takes the publisher slot of `key`; refused while another publisher holds it.
    pub fn publish(&self, key: StreamId) -> Result<Publisher, HubError> {
        let mut streams = self.lock();
        let existing = streams.get(&key).cloned();
        if existing.as_ref().is_some_and(|s| s.lock().live) {
            return Err(HubError::AlreadyPublishing(key));
        }
        let max = self.inner.config.max_streams;
        if self.inner.live.load(Ordering::Relaxed) >= max {
            return Err(HubError::TooManyStreams(max));
        }
        let stream = existing.unwrap_or_else(|| {
            let s = Arc::new(Stream::new(key.clone(), self.inner.config));
            streams.insert(key, s.clone());
            s
        });
        // Marked live before the map lock is released, so two publishers cannot race.
        self.inner.live.fetch_add(1, Ordering::Relaxed);
        Ok(Publisher::start(stream, self.inner.clone()))
    }

    /// Joins `key` as a viewer; a stream with no publisher yet is created and waited on.
    pub fn play(&self, key: StreamId) -> Result<Viewer, HubError> {
        let mut streams = self.lock();
        if let Some(s) = streams.get(&key) {
            return Ok(Viewer::join(s.clone(), self.inner.clone()));
        }
        let waiting = streams.len() - self.inner.live.load(Ordering::Relaxed);
        let max = self.inner.config.max_waiting_streams;
        if waiting >= max {
            return Err(HubError::TooManyWaiting(max));
        }
        let stream = Arc::new(Stream::new(key.clone(), self.inner.config));
        streams.insert(key, stream.clone());
        Ok(Viewer::join(stream, self.inner.clone()))
    }

    /// Whether `key` has a publisher here.
    pub fn is_live(&self, key: &StreamId) -> bool {
        let stream = self.lock().get(key).cloned();
        stream.is_some_and(|s| s.lock().live)
    }

    /// Codec names of a live stream's current sequence headers: (video, audio).
    pub fn codecs(&self, key: &StreamId) -> (Option<&'static str>, Option<&'static str>) {
        let Some(stream) = self.lock().get(key).cloned() else {
            return (None, None);
        };
        let st = stream.lock();
        let video = match st.video_header.as_ref().and_then(|f| f.codec) {
            Some(Codec::Video(codec)) => Some(codec.name()),
            _ => None,
        };
        let audio = match st.audio_header.as_ref().and_then(|f| f.codec) {
            Some(Codec::Audio(codec)) => Some(codec.name()),
            _ => None,
        };
        (video, audio)
    }

    /// Viewers of `key` here (RTMP players and relay subscribers).
    pub fn viewer_count(&self, key: &StreamId) -> u64 {
        let stream = self.lock().get(key).cloned();
        stream.map_or(0, |s| s.stats.viewers.load(Ordering::Relaxed))
    }

    pub fn streams(&self) -> Vec<StreamSummary> {
        let streams: Vec<Arc<Stream>> = self.lock().values().cloned().collect();
        let mut out: Vec<StreamSummary> = streams
            .iter()
            .map(|s| {
                let st = s.lock();
                let gop_cache_bytes = if st.gop_start.is_some() {
                    st.gop_bytes as u64
                } else {
                    0
                };
                (s, st.live, st.rates.rates, gop_cache_bytes)
            })
            .map(|(s, live, rates, gop_cache_bytes)| StreamSummary {
                key: s.key.clone(),
                live,
                rates,
                gop_cache_bytes,
                bytes_out: s.stats.bytes_out.load(Ordering::Relaxed),
                viewers: s.stats.viewers.load(Ordering::Relaxed),
                frames_in: s.stats.frames_in.load(Ordering::Relaxed),
                bytes_in: s.stats.bytes_in.load(Ordering::Relaxed),
                frames_dropped: s.stats.frames_dropped.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<Stream>>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

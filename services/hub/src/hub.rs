//! The registry of live streams inside one process.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use liverelay_rtmp::media::{parse_audio, parse_video};

use crate::frame::FanoutEncoding;
use crate::rates::StreamRates;
use crate::stream::{Publisher, Stream};
use crate::viewer::Viewer;

/// `app/name`, the identity of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub app: String,
    pub name: String,
}

impl StreamKey {
    pub fn new(app: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

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
    /// Streams (live or with waiting viewers) the hub holds at most.
    pub max_streams: usize,
    /// An audio message wakes the viewers only if they have not been woken for this long;
    /// otherwise it goes out with the next video frame. Halves the wakeups and writes per
    /// player of an audio+video stream; audio waits at most this long. Zero: every message
    /// wakes them.
    pub audio_hold: std::time::Duration,
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
            audio_hold: std::time::Duration::from_millis(40),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamKey),
    #[error("stream limit of {0} reached")]
    TooManyStreams(usize),
}

/// A stream as listed by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub key: StreamKey,
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
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
}

impl HubInner {
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
                config,
                streams: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Takes the publisher slot of `key`; refused while another publisher holds it.
    pub fn publish(&self, key: StreamKey) -> Result<Publisher, HubError> {
        let stream = {
            let mut streams = self.lock();
            let stream = self.get_or_create(&mut streams, &key)?;
            if stream.lock().live {
                return Err(HubError::AlreadyPublishing(key));
            }
            // Marked live before the map lock is released, so two publishers cannot race.
            Publisher::start(stream.clone(), self.inner.clone())
        };
        Ok(stream)
    }

    /// Joins `key` as a viewer; a stream with no publisher yet is created and waited on.
    pub fn play(&self, key: StreamKey) -> Result<Viewer, HubError> {
        let mut streams = self.lock();
        let stream = self.get_or_create(&mut streams, &key)?;
        Ok(Viewer::join(stream, self.inner.clone()))
    }

    /// Whether `key` has a publisher here.
    pub fn is_live(&self, key: &StreamKey) -> bool {
        let stream = self.lock().get(key).cloned();
        stream.is_some_and(|s| s.lock().live)
    }

    /// Codec names of a live stream's current sequence headers: (video, audio).
    pub fn codecs(&self, key: &StreamKey) -> (Option<&'static str>, Option<&'static str>) {
        let Some(stream) = self.lock().get(key).cloned() else {
            return (None, None);
        };
        let st = stream.lock();
        let video = st
            .video_header
            .as_ref()
            .and_then(|f| parse_video(&f.payload()))
            .map(|v| v.codec.name());
        let audio = st
            .audio_header
            .as_ref()
            .and_then(|f| parse_audio(&f.payload()))
            .map(|a| a.codec.name());
        (video, audio)
    }

    /// Viewers of `key` here (RTMP players and relay subscribers).
    pub fn viewer_count(&self, key: &StreamKey) -> u64 {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_or_create(
        &self,
        streams: &mut HashMap<StreamKey, Arc<Stream>>,
        key: &StreamKey,
    ) -> Result<Arc<Stream>, HubError> {
        if let Some(s) = streams.get(key) {
            return Ok(s.clone());
        }
        if streams.len() >= self.inner.config.max_streams {
            return Err(HubError::TooManyStreams(self.inner.config.max_streams));
        }
        let s = Arc::new(Stream::new(key.clone(), self.inner.config));
        streams.insert(key.clone(), s.clone());
        Ok(s)
    }
}

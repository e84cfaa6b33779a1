//! One live stream: its publisher slot, the ring of recent frames that viewers read from, the
//! GOP cache inside that ring, and the sequence headers a new viewer needs first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use liverelay_rtmp::{Media, MediaKind};
use tokio::sync::watch;

use crate::direct::DirectSinks;
use crate::frame::{FanoutEncoding, Frame};
use crate::hub::{HubConfig, HubInner};
use crate::rates::RateMeter;
use crate::segments::{SegmentCutter, SegmentStart};
use crate::timeline::Timeline;
use liverelay_types::StreamId;

/// Counters a stream keeps for metrics and the API; updated without taking the stream lock.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub frames_in: AtomicU64,
    /// Bytes written to viewers (wire bytes, as the drivers report them); shared with the
    /// helpers that write to direct viewers.
    pub bytes_out: Arc<AtomicU64>,
    pub bytes_in: AtomicU64,
    /// Frames viewers skipped because they fell behind (or joined between keyframes).
    pub frames_dropped: AtomicU64,
    pub viewers: AtomicU64,
}

pub(crate) struct Stream {
    pub key: StreamId,
    pub state: Mutex<StreamState>,
    /// Bumped on every change viewers must look at (new frame, publish, unpublish).
    pub notify: watch::Sender<u64>,
    /// Viewers the publisher writes to itself ([`crate::DirectSink`]).
    pub direct: DirectSinks,
    pub stats: StreamStats,
}

pub(crate) struct StreamState {
    pub config: HubConfig,
    pub encoding: FanoutEncoding,
    pub live: bool,
    /// Incremented by every publish; frames carry it so viewers notice a republish in order.
    pub generation: u64,
    pub ring: VecDeque<Arc<Frame>>,
    ring_bytes: usize,
    /// Sequence number of `ring[0]`.
    pub first_seq: u64,
    /// Sequence number the next frame gets.
    pub next_seq: u64,
    /// Sequence number of the latest keyframe while the GOP since then fits the cache limits.
    pub gop_start: Option<u64>,
    /// Heap cost of the cached GOP ([`Frame::heap_cost`]).
    pub gop_bytes: usize,
    gop_frames: usize,
    gop_start_ts: u64,
    pub rates: RateMeter,
    pub metadata: Option<Arc<Frame>>,
    pub video_header: Option<Arc<Frame>>,
    pub audio_header: Option<Arc<Frame>>,
    /// Latest timestamp on the stream's timeline, where the next publish continues from.
    last_timestamp: Option<u64>,
    pub viewers: usize,
    segments: SegmentCutter,
}

impl Stream {
    pub fn new(key: StreamId, config: HubConfig) -> Self {
        let stats = StreamStats::default();
        Self {
            key,
            state: Mutex::new(StreamState {
                encoding: config.encoding,
                live: false,
                generation: 0,
                ring: VecDeque::new(),
                ring_bytes: 0,
                first_seq: 0,
                next_seq: 0,
                gop_start: None,
                gop_bytes: 0,
                gop_frames: 0,
                gop_start_ts: 0,
                rates: RateMeter::default(),
                metadata: None,
                video_header: None,
                audio_header: None,
                last_timestamp: None,
                viewers: 0,
                segments: SegmentCutter::new(config.segment_target_ms),
                config,
            }),
            notify: watch::channel(0).0,
            direct: DirectSinks::new(stats.bytes_out.clone()),
            stats,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        // A panic while holding the lock leaves plain data behind, never a broken invariant
        // worth taking the whole process down for.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake_viewers(&self) {
        self.notify.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl StreamState {
    fn start_publish(&mut self) {
        self.live = true;
        self.generation += 1;
        self.gop_start = None;
        self.segments.restart();
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
    }

    pub(crate) fn stop_publish(&mut self) {
        self.live = false;
        // Frames stay in the ring so viewers still drain what they have not sent yet; nothing
        // of this publish may start a new viewer.
        self.gop_start = None;
    }

    fn append(&mut self, frame: Arc<Frame>) {
        match frame.kind {
            MediaKind::Video if frame.sequence_header => self.video_header = Some(frame.clone()),
            MediaKind::Audio if frame.sequence_header => self.audio_header = Some(frame.clone()),
            MediaKind::Metadata => self.metadata = Some(frame.clone()),
            _ => {}
        }
        self.last_timestamp = Some(
            self.last_timestamp
                .map_or(frame.timestamp, |l| l.max(frame.timestamp)),
        );
        self.rates.record(
            frame.kind,
            frame.keyframe,
            frame.timestamp,
            frame.payload().len(),
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = frame.heap_cost();
        if frame.keyframe && self.config.gop_cache {
            self.gop_start = Some(seq);
            self.gop_bytes = 0;
            self.gop_frames = 0;
            self.gop_start_ts = frame.timestamp;
        }
        if self.gop_start.is_some() {
            self.gop_bytes += size;
            self.gop_frames += 1;
            let too_long =
                frame.timestamp.saturating_sub(self.gop_start_ts) > self.config.gop_max_duration_ms;
            if self.gop_bytes > self.config.gop_max_bytes
                || self.gop_frames > self.config.gop_max_frames
                || too_long
            {
                self.gop_start = None;
            }
        }
        self.ring_bytes += size;
        self.ring.push_back(frame);
        self.evict();
    }

    /// Keeps the ring within the viewer backlog limits, except for the cached GOP.
    fn evict(&mut self) {
        while let Some(front) = self.ring.front() {
            let over = self.ring.len() > self.config.viewer_queue_frames
                || self.ring_bytes > self.config.viewer_queue_bytes;
            let protected = self.gop_start.is_some_and(|g| self.first_seq >= g);
            if !over || protected {
                break;
            }
            self.ring_bytes -= front.heap_cost();
            self.ring.pop_front();
            self.first_seq += 1;
        }
    }

    pub fn frame(&self, seq: u64) -> Option<&Arc<Frame>> {
        let idx = seq.checked_sub(self.first_seq)?;
        self.ring.get(usize::try_from(idx).ok()?)
    }
}

/// The right to publish one stream. Dropping it ends the publish: viewers are told and stay
/// connected for the next publisher.
pub struct Publisher {
    stream: Arc<Stream>,
    hub: Arc<HubInner>,
    timeline: Timeline,
    /// Whether the source's timestamps are kept ([`Publisher::follow_timeline`]).
    follow: bool,
    generation: u64,
    encoding: FanoutEncoding,
    /// When the viewers were last woken.
    woken: std::time::Instant,
}

impl Publisher {
    pub(crate) fn start(stream: Arc<Stream>, hub: Arc<HubInner>) -> Self {
        let (timeline, generation, encoding) = {
            let mut st = stream.lock();
            st.start_publish();
            (
                Timeline::continuing(st.last_timestamp),
                st.generation,
                st.encoding,
            )
        };
        stream.wake_viewers();
        Self {
            stream,
            hub,
            timeline,
            follow: false,
            generation,
            encoding,
            woken: std::time::Instant::now(),
        }
    }

    pub fn key(&self) -> &StreamId {
        &self.stream.key
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stream.stats
    }

    /// Adds one message of the publisher to the stream. An empty message carries nothing a player can use, and a flood
    /// of them (one byte each on the wire) would fill the ring and GOP cache with frames.
    pub fn push(&mut self, media: Media) {
        self.push_marked(media, None);
    }

    /// [`push`](Self::push) for a source that marks segment starts itself (an ingest, over
    /// the relay): with [`follow_timeline`](Self::follow_timeline), its marks are kept; a
    /// publisher that does not follow one cuts segments itself and ignores `segment`.
    pub fn push_marked(&mut self, media: Media, segment: Option<SegmentStart>) {
        if media.payload.is_empty() {
            return;
        }
        let stats = &self.stream.stats;
        stats.frames_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(media.payload.len() as u64, Ordering::Relaxed);
        let timestamp = self.timeline.map(media.timestamp);
        let mut frame = Frame::new(media, timestamp, self.generation, self.encoding);
        let audio = frame.kind == MediaKind::Audio;
        let (seq, frame) = {
            let mut st = self.stream.lock();
            let has_video = st.video_header.is_some();
            frame.segment = if self.follow {
                st.segments.follow(&frame, has_video, segment)
            } else {
                st.segments.cut(&frame, has_video)
            };
            let frame = Arc::new(frame);
            let seq = st.next_seq;
            st.append(frame.clone());
            (seq, frame)
        };
        if !self.hub.batching.direct_writes() {
            self.stream.direct.stop_all();
        }
        let sent = self.stream.direct.offer(seq, &frame);
        if sent > 0 {
            stats.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        }
        if !audio || self.woken.elapsed() >= self.hub.batching.audio_hold() {
            self.stream.wake_viewers();
            self.woken = std::time::Instant::now();
        }
    }
}

impl Publisher {
    /// The source's timestamps are already on a stream timeline (an ingest's, over the
    /// relay): keep them, so that every edge pulling the stream gives each frame the same
    /// timestamp (see [`Timeline::following`]). For this publish and its source restarts.
    pub fn follow_timeline(&mut self) {
        self.follow = true;
        self.timeline = Timeline::following(self.stream.lock().last_timestamp);
    }

    /// The source behind this publisher changed (an edge's upstream failed over to another
    /// ingest, a pull reconnected): its timestamps start over and new sequence headers follow.
    /// Viewers stay on and see time go on; new viewers wait for the new source's first
    /// keyframe.
    pub fn restart_source(&mut self) {
        let mut st = self.stream.lock();
        st.gop_start = None;
        st.segments.restart();
        self.timeline = if self.follow {
            Timeline::following(st.last_timestamp)
        } else {
            Timeline::continuing(st.last_timestamp)
        };
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.hub.unpublish(&self.stream);
    }
}

//! One stream's LL-HLS packaging, fed the hub's frames in order: segments start where the
//! frames say ([`Frame::segment`], decided where the stream is published), parts are cut from
//! the frames' timestamps alone, so two servers fed the same frames make the same segments,
//! parts and bytes whenever they started.
//!
//! A part holds the samples whose duration is known: a sample waits for the next sample of its
//! track. Parts are cut on the driving track (video, or audio in a stream without video): a
//! part ends before the sample that would take it past the part target (with a millisecond of
//! slack for timestamps rounded to milliseconds), judging that sample's duration by the
//! shorter of the last two steps of the segment (30 fps in milliseconds steps 33, 33, 34). Only
//! steps inside the segment count, so a server that started at the segment decides alike. A
//! frame rate whose frames do not divide the part target gives shorter parts (24 fps: 167 ms
//! parts of a 200 ms target), never longer ones.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use liverelay_hub::{Frame, SegmentStart};
use liverelay_rtmp::MediaKind;

use crate::fmp4::{self, AudioTrack, Fragment, Sample, VideoTrack};

/// A part whose driving track brought nothing for this many part targets is ended by the
/// other track's frames.
const STALLED_PARTS: u64 = 3;

#[derive(Debug, Clone, Copy)]
pub struct PackagerConfig {
    /// The segment duration the publishing server cuts at (`hls.segment_duration_ms`).
    pub segment_ms: u64,
    pub part_ms: u64,
    /// Complete segments kept and listed.
    pub window_segments: usize,
}

/// A partial segment: one CMAF chunk.
#[derive(Debug, Clone)]
pub struct Part {
    pub duration_ms: u64,
    /// Starts with a keyframe (or is audio only): a player can start here.
    pub independent: bool,
    pub fragment: Arc<Fragment>,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    /// Wall clock of its first frame at the publishing server: `EXT-X-PROGRAM-DATE-TIME`.
    pub wall_clock_ms: u64,
    pub discontinuity: bool,
    /// The init section this one uses (`EXT-X-MAP`), by [`init_id`].
    pub init: u64,
    pub parts: Vec<Part>,
    pub complete: bool,
}

impl Segment {
    pub fn duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }
}

/// A sample waiting for its successor (which gives its duration).
#[derive(Debug)]
struct Pending {
    ts: u64,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

/// The part being filled.
#[derive(Debug, Default)]
struct OpenPart {
    start_ts: Option<u64>,
    independent: bool,
    video: Vec<Sample>,
    audio: Vec<Sample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    Video,
    Audio,
}

pub struct Packager {
    config: PackagerConfig,
    /// The tracks the next segment is made for (from the latest sequence headers).
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    video_header: Option<Bytes>,
    audio_header: Option<Bytes>,
    /// The tracks changed since the open segment's init section was made.
    tracks_changed: bool,
    /// Init sections the listed segments use, by [`init_id`].
    inits: Vec<(u64, Bytes)>,
    /// Complete segments, then the open one (if any).
    segments: VecDeque<Segment>,
    open: Option<OpenPart>,
    pending_video: Option<Pending>,
    pending_audio: Option<Pending>,
    /// Timestamp of the last driving-track sample, to judge the next one's duration.
    last_driver_ts: Option<u64>,
    /// The step before the last between driving samples of the open segment.
    last_step: Option<u64>,
    /// The init section new segments use.
    current_init: u64,
    /// The audio timescale of the open segment's init section.
    audio_rate: u32,
    last_video_duration_ms: u32,
    /// Bumped on every new part or segment.
    version: u64,
}

impl Packager {
    pub fn new(config: PackagerConfig) -> Self {
        Self {
            config,
            video: None,
            audio: None,
            video_header: None,
            audio_header: None,
            tracks_changed: false,
            inits: Vec::new(),
            segments: VecDeque::new(),
            open: None,
            pending_video: None,
            pending_audio: None,
            last_driver_ts: None,
            last_step: None,
            current_init: 0,
            audio_rate: 0,
            last_video_duration_ms: 0,
            version: 0,
        }
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    /// Changes whenever a part or segment is added.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Takes the next frame of the stream, in order.
    pub fn push(&mut self, frame: &Frame) {
        if frame.sequence_header {
            self.take_header(frame);
            return;
        }
        let ts = frame.timestamp;
        let sample = match frame.kind {
            MediaKind::Video if self.video.is_some() => {
                fmp4::video_sample(frame.payload()).map(|(d, cts)| (Track::Video, d, cts))
            }
            MediaKind::Audio if self.audio.is_some() => {
                fmp4::audio_sample(frame.payload()).map(|d| (Track::Audio, d, 0))
            }
            _ => None,
        };
        // The previous sample of the track ends here: it goes into the part it was taken in.
        if let Some((track, ..)) = sample {
            self.settle(track, ts);
        }
        // A segment starts even at a frame this packager cannot use (a video codec it does
        // not package), so that the tracks it does package are cut where everyone cuts them.
        if let Some(mark) = frame.segment {
            self.start_segment(mark, ts);
        }
        let Some((track, data, cts)) = sample else {
            return;
        };
        let packaging = self.segments.back().is_some_and(|s| !s.complete);
        let driver = self.driver();
        if packaging
            && track != driver
            && self
                .open
                .as_ref()
                .and_then(|o| o.start_ts)
                .is_some_and(|start| {
                    ts.saturating_sub(start) >= STALLED_PARTS * self.config.part_ms
                })
        {
            // The driving track stalled (a frozen camera with the microphone on): parts go
            // on with what the other track brings, so that players are not held.
            self.close_part(ts);
            self.open = Some(OpenPart {
                start_ts: Some(ts),
                ..OpenPart::default()
            });
        }
        if packaging && track == driver {
            self.maybe_cut_part(ts);
            let open = self.open.get_or_insert_with(OpenPart::default);
            if open.start_ts.is_none() {
                open.start_ts = Some(ts);
                open.independent = frame.keyframe || driver == Track::Audio;
            }
        }
        if track == driver {
            if packaging {
                self.last_step = self.last_driver_ts.map(|l| ts.saturating_sub(l));
            }
            self.last_driver_ts = Some(ts);
        }
        let pending = Pending {
            ts,
            cts,
            keyframe: frame.keyframe || track == Track::Audio,
            data,
        };
        match track {
            Track::Video => self.pending_video = Some(pending),
            Track::Audio => self.pending_audio = Some(pending),
        }
    }

    /// The publisher left (or the stream broke): what is open ends here; samples still
    /// waiting for a duration are dropped.
    pub fn end(&mut self) {
        // The last samples have no successor: they last as long as the one before them
        // (video) or one AAC frame (audio).
        if let Some(p) = &self.pending_video {
            let end = p.ts + u64::from(self.last_video_duration_ms.max(1));
            self.settle(Track::Video, end);
        }
        self.settle_audio_nominally();
        self.close_segment(None);
        self.pending_video = None;
        self.pending_audio = None;
    }

    /// Ends the waiting audio sample after one AAC frame (1024 samples).
    fn settle_audio_nominally(&mut self) {
        if let Some(p) = &self.pending_audio {
            let rate = u64::from(self.audio_rate.max(1));
            let end = p.ts + (1_024_000 + rate / 2) / rate;
            self.settle(Track::Audio, end);
        }
    }

    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// The init section `id` ([`init_id`]).
    pub fn init(&self, id: u64) -> Option<&Bytes> {
        self.inits.iter().find(|(i, _)| *i == id).map(|(_, b)| b)
    }

    pub fn segment(&self, sequence: u64) -> Option<&Segment> {
        let first = self.segments.front()?.sequence;
        let idx = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.segments.get(idx).filter(|s| s.sequence == sequence)
    }

    /// The newest part: `(segment, part index)`.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.parts.len().checked_sub(1).map(|p| (s.sequence, p)))
    }

    fn driver(&self) -> Track {
        if self.video.is_some() {
            Track::Video
        } else {
            Track::Audio
        }
    }

    fn take_header(&mut self, frame: &Frame) {
        let payload = frame.payload();
        match frame.kind {
            MediaKind::Video if self.video_header.as_ref() != Some(payload) => {
                self.video = VideoTrack::from_sequence_header(payload).ok();
                self.video_header = Some(payload.clone());
                self.tracks_changed = true;
            }
            MediaKind::Audio if self.audio_header.as_ref() != Some(payload) => {
                self.audio = AudioTrack::from_sequence_header(payload).ok();
                self.audio_header = Some(payload.clone());
                self.tracks_changed = true;
            }
            _ => {}
        }
    }

    /// The track's waiting sample ends at `ts`: into the open part with it.
    fn settle(&mut self, track: Track, ts: u64) {
        let pending = match track {
            Track::Video => self.pending_video.take(),
            Track::Audio => self.pending_audio.take(),
        };
        let (Some(p), Some(open)) = (pending, self.open.as_mut()) else {
            return;
        };
        let sample = Sample {
            decode_ms: p.ts,
            // A sample of zero duration would stall a player; timestamps that do not move
            // give it a millisecond.
            duration_ms: ts.saturating_sub(p.ts).clamp(1, u64::from(u32::MAX)) as u32,
            composition_offset_ms: p.cts,
            keyframe: p.keyframe,
            data: p.data,
        };
        match track {
            Track::Video => {
                self.last_video_duration_ms = sample.duration_ms;
                open.video.push(sample);
            }
            Track::Audio => open.audio.push(sample),
        }
    }

    /// Ends the open part before a driving sample at `ts` that would take it past the target.
    fn maybe_cut_part(&mut self, ts: u64) {
        let Some(start) = self.open.as_ref().and_then(|o| o.start_ts) else {
            return;
        };
        let step = self.last_driver_ts.map_or(0, |l| ts.saturating_sub(l));
        let next = self.last_step.map_or(step, |prev| prev.min(step));
        let into = ts.saturating_sub(start);
        let target = self.config.part_ms;
        if into + next > target + 1 || into >= target {
            self.close_part(ts);
        }
    }

    fn close_part(&mut self, end_ts: u64) {
        let Some(open) = self.open.take() else { return };
        let Some(segment) = self.segments.back_mut().filter(|s| !s.complete) else {
            return;
        };
        if open.video.is_empty() && open.audio.is_empty() {
            return;
        }
        // Unique and increasing within a stream, and the same wherever the part is made.
        let sequence = (segment.sequence << 8 | segment.parts.len() as u64) as u32;
        let fragment = fmp4::fragment(sequence, &open.video, &open.audio, self.audio_rate);
        let start = open
            .start_ts
            .or(open.video.first().map(|s| s.decode_ms))
            .or(open.audio.first().map(|s| s.decode_ms))
            .unwrap_or(end_ts);
        segment.parts.push(Part {
            duration_ms: end_ts.saturating_sub(start),
            independent: open.independent,
            fragment: Arc::new(fragment),
        });
        self.version += 1;
    }

    fn close_segment(&mut self, end_ts: Option<u64>) {
        let end = end_ts.or_else(|| {
            // Unpublished: the open part ends after its last sample.
            let open = self.open.as_ref()?;
            let last = |s: &Vec<Sample>| s.last().map(|x| x.decode_ms + u64::from(x.duration_ms));
            last(&open.video).max(last(&open.audio))
        });
        if let Some(end) = end {
            self.close_part(end);
        }
        self.open = None;
        if let Some(segment) = self.segments.back_mut().filter(|s| !s.complete) {
            segment.complete = true;
            self.version += 1;
        }
        self.trim();
    }

    /// A segment starts at `ts`, where the open part and segment end.
    fn start_segment(&mut self, mark: SegmentStart, ts: u64) {
        // Each segment keeps its own audio: the waiting sample ends this one (with the AAC
        // frame's nominal duration), so that a server whose first frame is this segment's
        // keyframe makes the same segment as one that saw the samples before it.
        self.settle_audio_nominally();
        self.close_segment(Some(ts));
        // Part cuts look only at steps inside the segment.
        self.last_driver_ts = None;
        self.last_step = None;
        if self.video.is_none() && self.audio.is_none() {
            return;
        }
        let new_init = self.tracks_changed || self.inits.is_empty();
        if new_init {
            let init = fmp4::init_segment(self.video.as_ref(), self.audio.as_ref());
            let id = init_id(&init);
            if self.init(id).is_none() {
                self.inits.push((id, init));
            }
            self.current_init = id;
            self.tracks_changed = false;
        }
        let init = self.current_init;
        self.audio_rate = self.audio.as_ref().map_or(0, |a| a.sample_rate);
        let follows = self
            .segments
            .back()
            .is_some_and(|s| s.sequence + 1 == mark.sequence);
        self.segments.push_back(Segment {
            sequence: mark.sequence,
            wall_clock_ms: mark.wall_clock_ms,
            // New codec settings, or a gap in the numbers, are a discontinuity too.
            discontinuity: mark.discontinuity
                || (new_init && !self.segments.is_empty())
                || (!follows && !self.segments.is_empty()),
            init,
            parts: Vec::new(),
            complete: false,
        });
        self.open = Some(OpenPart::default());
        self.version += 1;
    }

    fn trim(&mut self) {
        let complete = self.segments.iter().filter(|s| s.complete).count();
        for _ in self.config.window_segments..complete {
            self.segments.pop_front();
        }
        let segments = &self.segments;
        let current = self.current_init;
        self.inits
            .retain(|(id, _)| *id == current || segments.iter().any(|s| s.init == *id));
    }
}

/// An init section's name: a hash of its bytes (FNV-1a), so that every server making the
/// same init section names it alike, whenever it started.
pub fn init_id(init: &[u8]) -> u64 {
    init.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

//! Media sources for publishers: a synthetic stream of a given bitrate, GOP and frame rate, or
//! an FLV file played in a loop. Frames carry a send stamp (see [`stamp`]) so players can
//! measure delivery latency.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use liverelay_rtmp::amf::{self, Amf0Value};
use liverelay_rtmp_client::{Media, MediaKind};

/// Magic that precedes the 8-byte send time inside a stamped payload.
pub const STAMP_MAGIC: &[u8; 8] = b"LRBENCH1";
const STAMP_LEN: usize = 16;
/// Where the stamp sits: after the FLV video tag header (5) + NALU length (4) + NAL header (1),
/// and after the AAC audio header (2).
const VIDEO_STAMP_AT: usize = 10;
const AUDIO_STAMP_AT: usize = 2;

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub mod stamp {
    use super::*;

    fn offset(kind: MediaKind) -> Option<usize> {
        match kind {
            MediaKind::Video => Some(VIDEO_STAMP_AT),
            MediaKind::Audio => Some(AUDIO_STAMP_AT),
            _ => None,
        }
    }

    /// Whether a payload of this kind and size has room for a stamp.
    pub fn fits(kind: MediaKind, len: usize) -> bool {
        offset(kind).is_some_and(|o| len >= o + STAMP_LEN)
    }

    /// Writes `nanos` (Unix time) into a copy of `payload`.
    pub fn write(kind: MediaKind, payload: &Bytes, nanos: u64) -> Bytes {
        let Some(at) = offset(kind).filter(|_| fits(kind, payload.len())) else {
            return payload.clone();
        };
        let mut b = BytesMut::from(&payload[..]);
        b[at..at + 8].copy_from_slice(STAMP_MAGIC);
        b[at + 8..at + 16].copy_from_slice(&nanos.to_be_bytes());
        b.freeze()
    }

    /// The send time stamped into a received payload, if it carries one.
    pub fn read(kind: MediaKind, payload: &[u8]) -> Option<u64> {
        let at = offset(kind)?;
        let s = payload.get(at..at + STAMP_LEN)?;
        (&s[..8] == STAMP_MAGIC).then(|| u64::from_be_bytes(s[8..].try_into().unwrap()))
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: MediaKind,
    /// Milliseconds from the start of publishing.
    pub timestamp: u64,
    pub payload: Bytes,
    /// Write a send stamp into it when sending.
    pub stamp: bool,
}

impl Frame {
    /// The media to send now, stamped with the current time if it should be.
    pub fn to_media(&self) -> Media {
        let payload = if self.stamp {
            stamp::write(self.kind, &self.payload, unix_nanos())
        } else {
            self.payload.clone()
        };
        Media {
            kind: self.kind,
            timestamp: self.timestamp,
            payload,
        }
    }
}

/// A synthetic H.264 + AAC stream: the payloads are filler with valid FLV tag headers and
/// sequence headers, sized so that the stream has the requested bitrate.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    /// Total bits per second (video + audio payload).
    pub bitrate: u64,
    pub audio_bitrate: u64,
    pub fps: f64,
    pub gop_secs: f64,
    pub width: u32,
    pub height: u32,
    /// A keyframe is this many times the size of an inter frame.
    pub keyframe_ratio: f64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            bitrate: 2_500_000,
            audio_bitrate: 128_000,
            fps: 30.0,
            gop_secs: 2.0,
            width: 1280,
            height: 720,
            keyframe_ratio: 8.0,
        }
    }
}

const AAC_RATE: f64 = 44_100.0;
const AAC_FRAME_SAMPLES: f64 = 1024.0;

/// A 1280x720 High profile SPS and a PPS (as x264 writes them); the dimensions matter only
/// to servers that parse them for metadata.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

impl SyntheticSpec {
    pub fn video_bitrate(&self) -> u64 {
        self.bitrate.saturating_sub(self.audio_bitrate).max(8_000)
    }

    fn frames_per_gop(&self) -> usize {
        ((self.fps * self.gop_secs).round() as usize).max(1)
    }

    /// (keyframe size, inter frame size) in bytes, each at least big enough for a stamp.
    pub fn video_sizes(&self) -> (usize, usize) {
        let gop_bytes = self.video_bitrate() as f64 / 8.0 * self.gop_secs;
        let n = self.frames_per_gop() as f64;
        let inter = gop_bytes / (n - 1.0 + self.keyframe_ratio);
        let min = VIDEO_STAMP_AT + STAMP_LEN;
        (
            ((inter * self.keyframe_ratio).round() as usize).max(min),
            (inter.round() as usize).max(min),
        )
    }

    pub fn audio_size(&self) -> usize {
        let per_sec = AAC_RATE / AAC_FRAME_SAMPLES;
        ((self.audio_bitrate as f64 / 8.0 / per_sec).round() as usize)
            .max(AUDIO_STAMP_AT + STAMP_LEN)
    }

    fn headers(&self) -> Vec<Frame> {
        let mut avc = vec![
            0x17, 0x00, 0, 0, 0, 0x01, SPS[1], SPS[2], SPS[3], 0xff, 0xe1,
        ];
        avc.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        avc.extend_from_slice(SPS);
        avc.push(1);
        avc.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        avc.extend_from_slice(PPS);
        let mut meta = BytesMut::new();
        amf::encode(&Amf0Value::String("onMetaData".into()), &mut meta);
        let n = Amf0Value::Number;
        amf::encode(
            &Amf0Value::EcmaArray(vec![
                ("width".into(), n(f64::from(self.width))),
                ("height".into(), n(f64::from(self.height))),
                ("framerate".into(), n(self.fps)),
                ("videocodecid".into(), n(7.0)),
                (
                    "videodatarate".into(),
                    n(self.video_bitrate() as f64 / 1000.0),
                ),
                ("audiocodecid".into(), n(10.0)),
                (
                    "audiodatarate".into(),
                    n(self.audio_bitrate as f64 / 1000.0),
                ),
                ("audiosamplerate".into(), n(AAC_RATE)),
                ("stereo".into(), Amf0Value::Boolean(true)),
                (
                    "encoder".into(),
                    Amf0Value::String("liverelay-bench".into()),
                ),
            ]),
            &mut meta,
        );
        let frame = |kind, payload: Bytes| Frame {
            kind,
            timestamp: 0,
            payload,
            stamp: false,
        };
        vec![
            frame(MediaKind::Metadata, meta.freeze()),
            frame(MediaKind::Video, Bytes::from(avc)),
            // AAC-LC, 44.1 kHz, stereo.
            frame(
                MediaKind::Audio,
                Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10]),
            ),
        ]
    }

    /// A video frame: the FLV tag header and one length-prefixed NAL unit (IDR slice or
    /// non-IDR slice) filling the rest, so that servers that walk the NAL units (nginx-rtmp's
    /// HLS muxer, fMP4 packagers) take the frame whole.
    fn video_payload(len: usize, keyframe: bool) -> Bytes {
        let nal_len = (len.saturating_sub(9) as u32).to_be_bytes();
        let (flags, nal_type) = if keyframe { (0x17, 0x65) } else { (0x27, 0x41) };
        let mut head = vec![flags, 0x01, 0, 0, 0];
        head.extend_from_slice(&nal_len);
        head.push(nal_type);
        Self::payload(len, &head)
    }

    fn payload(len: usize, head: &[u8]) -> Bytes {
        let mut b = vec![0u8; len];
        b[..head.len()].copy_from_slice(head);
        // Filler that is not all zeros (emulation prevention is irrelevant here).
        for (i, x) in b.iter_mut().enumerate().skip(head.len()) {
            *x = (i as u8).wrapping_mul(31) | 1;
        }
        Bytes::from(b)
    }
}

/// An endless, time-ordered sequence of frames after a few header messages.
pub struct FrameIter {
    inner: Inner,
}

enum Inner {
    Synthetic {
        fps: f64,
        gop: usize,
        key: Bytes,
        inter: Bytes,
        audio: Option<Bytes>,
        video_index: u64,
        audio_index: u64,
    },
    Looped {
        frames: std::sync::Arc<Vec<Frame>>,
        period: u64,
        index: usize,
        round: u64,
    },
}

impl Iterator for FrameIter {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        match &mut self.inner {
            Inner::Synthetic {
                fps,
                gop,
                key,
                inter,
                audio,
                video_index,
                audio_index,
            } => {
                let vts = (*video_index as f64 * 1000.0 / *fps).round() as u64;
                let ats =
                    (*audio_index as f64 * AAC_FRAME_SAMPLES * 1000.0 / AAC_RATE).round() as u64;
                if let Some(a) = audio.as_ref().filter(|_| ats < vts) {
                    *audio_index += 1;
                    return Some(Frame {
                        kind: MediaKind::Audio,
                        timestamp: ats,
                        payload: a.clone(),
                        stamp: true,
                    });
                }
                let keyframe = *video_index % *gop as u64 == 0;
                *video_index += 1;
                Some(Frame {
                    kind: MediaKind::Video,
                    timestamp: vts,
                    payload: if keyframe { key.clone() } else { inter.clone() },
                    stamp: true,
                })
            }
            Inner::Looped {
                frames,
                period,
                index,
                round,
            } => {
                if frames.is_empty() {
                    return None;
                }
                if *index == frames.len() {
                    *index = 0;
                    *round += 1;
                }
                let mut f = frames[*index].clone();
                *index += 1;
                f.timestamp += *round * *period;
                Some(f)
            }
        }
    }
}

/// What publishers send: header messages once, then frames forever.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic(SyntheticSpec),
    Flv(FlvFile),
}

impl Source {
    pub fn headers(&self) -> Vec<Frame> {
        match self {
            Source::Synthetic(s) => s.headers(),
            Source::Flv(f) => f.headers.clone(),
        }
    }

    pub fn frames(&self) -> FrameIter {
        let inner = match self {
            Source::Synthetic(s) => {
                let (k, p) = s.video_sizes();
                Inner::Synthetic {
                    fps: s.fps,
                    gop: s.frames_per_gop(),
                    key: SyntheticSpec::video_payload(k, true),
                    inter: SyntheticSpec::video_payload(p, false),
                    audio: (s.audio_bitrate > 0)
                        .then(|| SyntheticSpec::payload(s.audio_size(), &[0xaf, 0x01])),
                    video_index: 0,
                    audio_index: 0,
                }
            }
            Source::Flv(f) => Inner::Looped {
                frames: f.frames.clone(),
                period: f.period,
                index: 0,
                round: 0,
            },
        };
        FrameIter { inner }
    }

    /// Payload bits per second, where known in advance.
    pub fn nominal_bitrate(&self) -> Option<u64> {
        match self {
            Source::Synthetic(s) => Some(s.video_bitrate() + s.audio_bitrate),
            Source::Flv(f) => f.bitrate(),
        }
    }
}

/// An FLV file in memory: metadata and sequence headers, then the media tags.
#[derive(Debug, Clone)]
pub struct FlvFile {
    pub headers: Vec<Frame>,
    pub frames: std::sync::Arc<Vec<Frame>>,
    /// Timestamp shift per loop: the last timestamp plus one frame interval.
    pub period: u64,
}

impl FlvFile {
    pub fn open(path: &std::path::Path, stamp: bool) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(Bytes::from(data), stamp)
    }

    /// Parses an FLV file. With `stamp`, media frames large enough get a send stamp written
    /// over their first bytes after the codec header (the picture breaks; servers and the
    /// bench do not care).
    pub fn parse(data: Bytes, stamp: bool) -> anyhow::Result<Self> {
        if data.len() < 13 || &data[..3] != b"FLV" {
            bail!("not an FLV file");
        }
        let header_len = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
        let mut pos = header_len.checked_add(4).context("bad FLV header")?;
        let mut headers = Vec::new();
        let mut frames = Vec::new();
        let mut first_ts = None;
        while pos + 11 <= data.len() {
            let tag_type = data[pos] & 0x1f;
            let size =
                u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
            let ts =
                u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
            let start = pos + 11;
            let end = start.checked_add(size).filter(|&e| e <= data.len());
            let Some(end) = end else { break };
            let payload = data.slice(start..end);
            pos = end + 4;
            let kind = match tag_type {
                8 => MediaKind::Audio,
                9 => MediaKind::Video,
                18 => MediaKind::Metadata,
                _ => continue,
            };
            if payload.is_empty() {
                continue;
            }
            let is_header = match kind {
                MediaKind::Metadata => true,
                MediaKind::Video => payload[0] & 0x0f == 7 && payload.get(1) == Some(&0),
                MediaKind::Audio => payload[0] >> 4 == 10 && payload.get(1) == Some(&0),
                MediaKind::Data => false,
            };
            if is_header {
                if frames.is_empty() {
                    let payload = if kind == MediaKind::Metadata {
                        strip_set_data_frame(payload)
                    } else {
                        payload
                    };
                    headers.push(Frame {
                        kind,
                        timestamp: 0,
                        payload,
                        stamp: false,
                    });
                }
                continue;
            }
            let base = *first_ts.get_or_insert(ts);
            frames.push(Frame {
                kind,
                timestamp: u64::from(ts.saturating_sub(base)),
                stamp: stamp && stamp::fits(kind, payload.len()),
                payload,
            });
        }
        if frames.is_empty() {
            bail!("FLV file has no audio or video tags");
        }
        let last = frames.iter().map(|f| f.timestamp).max().unwrap_or(0);
        let video: Vec<u64> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .map(|f| f.timestamp)
            .collect();
        let step = if video.len() > 1 {
            (video[video.len() - 1] - video[0]) / (video.len() as u64 - 1)
        } else {
            33
        };
        Ok(Self {
            headers,
            frames: std::sync::Arc::new(frames),
            period: last + step.max(1),
        })
    }

    /// Average payload bitrate over one loop.
    pub fn bitrate(&self) -> Option<u64> {
        let bytes: usize = self.frames.iter().map(|f| f.payload.len()).sum();
        (self.period > 0).then(|| bytes as u64 * 8 * 1000 / self.period)
    }
}

/// Metadata payloads as [`MediaKind::Metadata`] wants them: starting at "onMetaData".
fn strip_set_data_frame(payload: Bytes) -> Bytes {
    let mut prefix = BytesMut::new();
    amf::encode(&Amf0Value::String("@setDataFrame".into()), &mut prefix);
    if payload.starts_with(&prefix) {
        payload.slice(prefix.len()..)
    } else {
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_hits_bitrate_gop_and_order() {
        let spec = SyntheticSpec::default();
        let src = Source::Synthetic(spec.clone());
        let frames: Vec<Frame> = src.frames().take_while(|f| f.timestamp < 10_000).collect();
        let bytes: usize = frames.iter().map(|f| f.payload.len()).sum();
        let bps = bytes as f64 * 8.0 / 10.0;
        assert!((bps / 2_500_000.0 - 1.0).abs() < 0.03, "{bps}");
        assert!(frames.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        let keys: Vec<u64> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video && f.payload[0] == 0x17)
            .map(|f| f.timestamp)
            .collect();
        assert_eq!(keys[..3], [0, 2000, 4000]);
        // One NAL unit filling each video frame.
        for f in frames.iter().filter(|f| f.kind == MediaKind::Video).take(2) {
            let nal = u32::from_be_bytes(f.payload[5..9].try_into().unwrap()) as usize;
            assert_eq!(nal + 9, f.payload.len());
        }
        let videos = frames.iter().filter(|f| f.kind == MediaKind::Video).count();
        assert_eq!(videos, 300);
        let audios = frames.iter().filter(|f| f.kind == MediaKind::Audio).count();
        assert!((430..=432).contains(&audios), "{audios}");
        assert_eq!(src.headers().len(), 3);
    }

    #[test]
    fn stamps_roundtrip_and_reject_foreign_payloads() {
        let src = Source::Synthetic(SyntheticSpec::default());
        for f in src.frames().take(5) {
            let m = f.to_media();
            let t = stamp::read(m.kind, &m.payload).expect("stamped");
            assert!(t.abs_diff(unix_nanos()) < 1_000_000_000);
            assert_eq!(m.payload.len(), f.payload.len());
            assert_eq!(m.payload[0], f.payload[0]);
        }
        assert_eq!(stamp::read(MediaKind::Video, &[0x17; 40]), None);
        assert_eq!(stamp::read(MediaKind::Video, &[0x17; 3]), None);
    }

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(body.len() as u32 + 11).to_be_bytes());
        t
    }

    #[test]
    fn flv_parse_and_loop() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        let mut meta = BytesMut::new();
        amf::encode(&Amf0Value::String("@setDataFrame".into()), &mut meta);
        amf::encode(&Amf0Value::String("onMetaData".into()), &mut meta);
        f.extend(tag(18, 0, &meta));
        f.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3]));
        f.extend(tag(8, 0, &[0xaf, 0, 0x12, 0x10]));
        f.extend(tag(9, 1000, &[0x17, 1, 0, 0, 0, 9, 9, 9]));
        f.extend(tag(8, 1010, &[0xaf, 1, 5]));
        f.extend(tag(9, 1040, &[0x27, 1, 0, 0, 0, 8]));
        f.extend(&[9, 0, 0]); // truncated tag at the end is ignored
        let flv = FlvFile::parse(Bytes::from(f), false).unwrap();
        assert_eq!(flv.headers.len(), 3);
        assert_eq!(&flv.headers[0].payload[3..13], b"onMetaData");
        let ts: Vec<u64> = Source::Flv(flv.clone())
            .frames()
            .take(6)
            .map(|f| f.timestamp)
            .collect();
        assert_eq!(flv.period, 80);
        assert_eq!(ts, [0, 10, 40, 80, 90, 120]);
        assert!(FlvFile::parse(Bytes::from_static(b"NOTFLV......."), false).is_err());
    }
}

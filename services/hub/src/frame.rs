//! A media message as the hub keeps it: its payload (shared, never copied), what kind of frame
//! it is, and each output encoding made at most once, on first use, and shared by every viewer
//! of that output.
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use liverelay_rtmp::chunk::encode_message;
use liverelay_rtmp::media::{AudioCodec, VideoCodec, parse_audio, parse_video};
use liverelay_rtmp::message::{RawMessage, csid, type_id};
use liverelay_rtmp::{Media, MediaKind};

use crate::segments::SegmentStart;

/// An FLV tag's header: type, data size, timestamp (24 + 8 bits), stream id.
const FLV_TAG_HEADER: usize = 11;

/// How frames are chunked for RTMP viewers. Every viewer of a server announces the same chunk
/// size and almost every player plays on message stream 1, so one encoding serves them all; a
/// viewer on another stream id or chunk size encodes for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutEncoding {
    pub chunk_size: u32,
    pub stream_id: u32,
}

impl Default for FanoutEncoding {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            stream_id: 1,
        }
    }
}

/// The codec a frame's tag names, for audio and video frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Video(VideoCodec),
    Audio(AudioCodec),
}

#[derive(Debug)]
pub struct Frame {
    pub kind: MediaKind,
    /// Milliseconds on the stream's own timeline (monotonic across republishes).
    pub timestamp: u64,
    pub keyframe: bool,
    /// Decoder configuration (or metadata) that viewers need before any frame.
    pub sequence_header: bool,
    pub codec: Option<Codec>,
    /// Publish session this frame belongs to.
    pub generation: u64,
    /// Wall-clock arrival (microseconds since the Unix epoch), for latency across pods.
    pub received_unix_us: u64,
    /// The HLS segment this frame starts, if it starts one ([`SegmentStart`]).
    pub segment: Option<SegmentStart>,
    /// The message payload (FLV tag body) as it arrived, shared by every output: the chunk
    /// decoder's own allocation, or a slice of the relay's receive buffer on an edge.
    payload: Bytes,
    /// The RTMP chunks at the hub's fan-out encoding, made by the first RTMP viewer.
    rtmp: OnceLock<Bytes>,
    /// The FLV tag (with its previous-tag-size), made by the first HTTP-FLV viewer.
    flv: OnceLock<Bytes>,
    encoding: FanoutEncoding,
}

impl Frame {
    pub fn new(media: Media, timestamp: u64, generation: u64, encoding: FanoutEncoding) -> Self {
        let (keyframe, sequence_header, codec) = match media.kind {
            MediaKind::Video => parse_video(&media.payload).map_or((false, false, None), |v| {
                (v.keyframe, v.sequence_header, Some(Codec::Video(v.codec)))
            }),
            MediaKind::Audio => parse_audio(&media.payload).map_or((false, false, None), |a| {
                (false, a.sequence_header, Some(Codec::Audio(a.codec)))
            }),
            MediaKind::Metadata => (false, true, None),
            MediaKind::Data => (false, false, None),
        };
        Self {
            kind: media.kind,
            timestamp,
            keyframe,
            sequence_header,
            codec,
            generation,
            received_unix_us: liverelay_types::unix_us(),
            segment: None,
            payload: media.payload,
            rtmp: OnceLock::new(),
            flv: OnceLock::new(),
            encoding,
        }
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The frame as a media message on the stream's timeline (the payload is shared).
    pub fn media(&self) -> Media {
        Media {
            kind: self.kind,
            timestamp: self.timestamp,
            payload: self.payload.clone(),
        }
    }

    /// The frame's RTMP chunks for a viewer with this chunk size and stream id: the shared
    /// encoding in the common case, a fresh one otherwise.
    pub fn rtmp(&self, chunk_size: u32, stream_id: u32) -> Bytes {
        let wanted = FanoutEncoding {
            chunk_size,
            stream_id,
        };
        if wanted == self.encoding {
            self.rtmp.get_or_init(|| self.encode(wanted)).clone()
        } else {
            self.encode(wanted)
        }
    }

    /// The frame as one FLV tag followed by its previous-tag-size, as an HTTP-FLV body carries
    /// it; made once, on first use, and shared by every HTTP-FLV viewer.
    ///
    /// The tag keeps the stream's timeline rather than starting at 0 for each viewer, so that
    /// the bytes can be shared whole (a per-viewer timestamp would need a per-viewer header),
    /// and a viewer sees the same timestamps as an RTMP player of the same stream and as a
    /// viewer of any other edge. FLV players rebase on their first sample (libavformat's
    /// start time, flv.js and mpegts.js subtract the first DTS), so a stream that has run
    /// for hours starts playing at once all the same.
    pub fn flv(&self) -> Bytes {
        self.flv.get_or_init(|| self.flv_tag()).clone()
    }

    /// What keeping this frame counts against the hub's limits: its payload plus the frame
    /// itself, its `Arc` and the buffer's header, so that limits hold for floods of tiny
    /// messages too. Each output encoding (RTMP chunks, FLV tag), once a viewer of that output
    /// made it, holds about as much again; they are not counted so that the limits mean the
    /// same whoever watches (an ingest serving only edges makes neither).
    pub fn heap_cost(&self) -> usize {
        const OVERHEAD: usize =
            std::mem::size_of::<Frame>() + 2 * std::mem::size_of::<usize>() + 32;
        self.payload.len() + OVERHEAD
    }

    /// Timestamp 0 for metadata, the stream's time otherwise: as on the RTMP wire (see
    /// [`encode`](Self::encode)).
    fn wire_timestamp(&self) -> u32 {
        if self.kind == MediaKind::Metadata {
            0
        } else {
            // 32 bits, as in RTMP: players handle the wrap after 49.7 days.
            self.timestamp as u32
        }
    }

    fn flv_tag(&self) -> Bytes {
        let tag_type = match self.kind {
            MediaKind::Audio => type_id::AUDIO,
            MediaKind::Video => type_id::VIDEO,
            MediaKind::Metadata | MediaKind::Data => type_id::DATA_AMF0,
        };
        // An RTMP message is at most 16 MiB - 1 (the chunk header's 24 bits), as is a tag.
        let size = self.payload.len() as u32;
        let ts = self.wire_timestamp();
        let mut tag = BytesMut::with_capacity(FLV_TAG_HEADER + self.payload.len() + 4);
        tag.put_u8(tag_type);
        tag.put_uint(u64::from(size), 3);
        tag.put_uint(u64::from(ts & 0x00FF_FFFF), 3);
        tag.put_u8((ts >> 24) as u8);
        tag.put_uint(0, 3); // stream id, always 0
        tag.put_slice(&self.payload);
        tag.put_u32(FLV_TAG_HEADER as u32 + size);
        tag.freeze()
    }

    fn encode(&self, encoding: FanoutEncoding) -> Bytes {
        let (cs, ty) = match self.kind {
            MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
            MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
            MediaKind::Metadata | MediaKind::Data => (csid::DATA, type_id::DATA_AMF0),
        };
        let msg = RawMessage {
            // Metadata goes out at time 0, as nginx-rtmp sends it: libavformat takes a data tag
            // with a non-zero timestamp for a subtitle ("text") stream, and encoders such as
            // GStreamer's flvmux resend onMetaData mid-stream. Media carries its own time.
            timestamp: self.wire_timestamp(),
            type_id: ty,
            stream_id: encoding.stream_id,
            payload: self.payload.clone(),
        };
        encode_message(cs, &msg, encoding.chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_MESSAGE_LENGTH};

    use super::*;

    fn video(len: usize, ts: u64) -> Media {
        Media {
            kind: MediaKind::Video,
            timestamp: ts,
            payload: Bytes::from((0..len).map(|i| (i * 7) as u8 | 0x10).collect::<Vec<u8>>()),
        }
    }

    fn decode(wire: &Bytes, chunk_size: u32) -> RawMessage {
        let mut decoder = ChunkDecoder::new(ChunkLimits {
            max_message_size: MAX_MESSAGE_LENGTH,
            max_pending_bytes: MAX_MESSAGE_LENGTH as usize,
            ..ChunkLimits::default()
        });
        decoder.set_chunk_size(chunk_size).unwrap();
        decoder
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_payload_is_the_one_that_arrived() {
        let media = video(20_000, 0);
        let arrived = media.payload.as_ptr();
        let frame = Frame::new(media, 0, 1, FanoutEncoding::default());
        assert_eq!(frame.payload().as_ptr(), arrived, "kept, not copied");
        assert_eq!(frame.media().payload.as_ptr(), arrived);
    }

    #[test]
    fn the_shared_rtmp_encoding_is_made_once() {
        let frame = Frame::new(video(10_000, 5), 5, 1, FanoutEncoding::default());
        let a = frame.rtmp(4096, 1);
        let b = frame.rtmp(4096, 1);
        assert_eq!(a.as_ptr(), b.as_ptr(), "every viewer shares one encoding");
        assert_ne!(
            frame.rtmp(128, 1).as_ptr(),
            a.as_ptr(),
            "another chunk size is its own"
        );
    }

    #[test]
    fn rtmp_encodings_carry_the_payload_at_any_size() {
        // rtmp.max_message_size may be up to 16 MiB - 1.
        for len in [1usize, 100, 4096, 4097, 20_000, MAX_MESSAGE_LENGTH as usize] {
            for ts in [0u64, 0xFF_FFFF, 1 << 33] {
                let media = video(len, ts);
                let payload = media.payload.clone();
                let frame = Frame::new(media, ts, 1, FanoutEncoding::default());
                for (chunk_size, stream_id) in [(4096, 1), (128, 3)] {
                    let msg = decode(&frame.rtmp(chunk_size, stream_id), chunk_size);
                    assert_eq!(msg.payload, payload, "len {len} ts {ts}");
                    assert_eq!(msg.stream_id, stream_id);
                    assert_eq!(msg.timestamp, ts as u32);
                }
                if len > 100_000 {
                    break;
                }
            }
        }
    }

    #[test]
    fn the_flv_tag_is_made_once_and_carries_the_payload() {
        for (kind, tag_type, ts, wire_ts) in [
            (MediaKind::Video, 9u8, 0x01_0203_0405_u64, 0x0203_0405_u32),
            (MediaKind::Audio, 8, 7, 7),
            // Metadata at 0, as on the RTMP wire.
            (MediaKind::Metadata, 18, 5_000, 0),
        ] {
            let media = Media {
                kind,
                ..video(300, ts)
            };
            let payload = media.payload.clone();
            let frame = Frame::new(media, ts, 1, FanoutEncoding::default());
            let tag = frame.flv();
            assert_eq!(frame.flv().as_ptr(), tag.as_ptr(), "shared by every viewer");
            assert_eq!(tag[0], tag_type);
            assert_eq!(&tag[1..4], &[0, 1, 44], "data size 300");
            let got_ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
            assert_eq!(got_ts, wire_ts, "{kind:?}: 24 bits then the extension byte");
            assert_eq!(&tag[8..11], &[0, 0, 0], "stream id");
            assert_eq!(&tag[11..311], &payload[..]);
            assert_eq!(&tag[311..], &311u32.to_be_bytes(), "previous tag size");
        }
    }
}

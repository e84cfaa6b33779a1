//! A media message as the hub keeps it: its payload (shared, never copied), what kind of frame
//! it is, and each output encoding made at most once, on first use, and shared by every viewer
//! of that output.
use std::sync::OnceLock;

use bytes::Bytes;
use liverelay_rtmp::chunk::encode_message;
use liverelay_rtmp::media::{AudioCodec, VideoCodec, parse_audio, parse_video};
use liverelay_rtmp::message::{RawMessage, csid, type_id};
use liverelay_rtmp::{Media, MediaKind};

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
    /// The message payload (FLV tag body) as it arrived: a slice of the publisher's receive
    /// buffer when the message came in one chunk, or of the relay's when it came from an ingest.
    payload: Bytes,
    /// The RTMP chunks at the hub's fan-out encoding, made by the first RTMP viewer.
    rtmp: OnceLock<Bytes>,
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
            payload: media.payload,
            rtmp: OnceLock::new(),
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

    /// What keeping this frame counts against the hub's limits: its payload plus the frame
    /// itself, its `Arc` and the buffer's header, so that limits hold for floods of tiny
    /// messages too. The RTMP encoding, once an RTMP viewer made it, holds about as much again;
    /// it is not counted so that the limits mean the same with or without RTMP viewers (an
    /// ingest serving only edges never makes it).
    pub fn heap_cost(&self) -> usize {
        const OVERHEAD: usize =
            std::mem::size_of::<Frame>() + 2 * std::mem::size_of::<usize>() + 32;
        self.payload.len() + OVERHEAD
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
            // GStreamer's flvmux resend onMetaData mid-stream. Media carries its own time; RTMP
            // has 32 bits and players handle the wrap after 49.7 days.
            timestamp: if self.kind == MediaKind::Metadata {
                0
            } else {
                self.timestamp as u32
            },
            type_id: ty,
            stream_id: encoding.stream_id,
            payload: self.payload.clone(),
        };
        encode_message(cs, &msg, encoding.chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
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
}

//! A media message as the hub keeps it: payload, what kind of frame it is, and its wire
//! encoding, made once and shared by every viewer.

use bytes::Bytes;
use liverelay_rtmp::chunk::encode_message;
use liverelay_rtmp::media::{parse_audio, parse_video};
use liverelay_rtmp::message::{RawMessage, csid, type_id};
use liverelay_rtmp::{Media, MediaKind};

/// How frames are chunked for viewers. Every viewer of a server announces the same chunk size
/// and almost every player plays on message stream 1, so one encoding serves them all; a viewer
/// on another stream id re-encodes for itself.
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

#[derive(Debug)]
pub struct Frame {
    pub kind: MediaKind,
    /// Milliseconds on the stream's own timeline (monotonic across republishes).
    pub timestamp: u64,
    pub payload: Bytes,
    pub keyframe: bool,
    /// Decoder configuration (or metadata) that viewers need before any frame.
    pub sequence_header: bool,
    /// Publish session this frame belongs to.
    pub generation: u64,
    /// Wall-clock arrival (microseconds since the Unix epoch), for latency across pods.
    pub received_unix_us: u64,
    wire: Bytes,
    encoding: FanoutEncoding,
}

impl Frame {
    pub fn new(media: Media, timestamp: u64, generation: u64, encoding: FanoutEncoding) -> Self {
        let (keyframe, sequence_header) = match media.kind {
            MediaKind::Video => parse_video(&media.payload)
                .map_or((false, false), |v| (v.keyframe, v.sequence_header)),
            MediaKind::Audio => {
                parse_audio(&media.payload).map_or((false, false), |a| (false, a.sequence_header))
            }
            MediaKind::Metadata => (false, true),
            MediaKind::Data => (false, false),
        };
        let mut frame = Self {
            kind: media.kind,
            timestamp,
            payload: media.payload,
            keyframe,
            sequence_header,
            generation,
            received_unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            wire: Bytes::new(),
            encoding,
        };
        frame.wire = frame.encode(encoding.chunk_size, encoding.stream_id);
        frame
    }

    /// The frame's chunks for a viewer with this chunk size and stream id: shared bytes in the
    /// common case, a fresh encoding otherwise.
    pub fn wire(&self, chunk_size: u32, stream_id: u32) -> Bytes {
        if self.encoding
            == (FanoutEncoding {
                chunk_size,
                stream_id,
            })
        {
            self.wire.clone()
        } else {
            self.encode(chunk_size, stream_id)
        }
    }

    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    fn encode(&self, chunk_size: u32, stream_id: u32) -> Bytes {
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
            timestamp: if self.kind == MediaKind::Metadata { 0 } else { self.timestamp as u32 },
            type_id: ty,
            stream_id,
            payload: self.payload.clone(),
        };
        encode_message(cs, &msg, chunk_size)
    }
}

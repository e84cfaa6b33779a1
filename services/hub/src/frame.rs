//! A media message as the hub keeps it: payload, what kind of frame it is, and its wire
//! encoding, made once and shared by every viewer.

use bytes::{Bytes, BytesMut};
use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_MESSAGE_LENGTH, encode_message};
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
    pub keyframe: bool,
    /// Decoder configuration (or metadata) that viewers need before any frame.
    pub sequence_header: bool,
    /// Publish session this frame belongs to.
    pub generation: u64,
    /// Wall-clock arrival (microseconds since the Unix epoch), for latency across pods.
    pub received_unix_us: u64,
    /// Length of the message payload.
    pub payload_len: usize,
    /// The message chunked once for every viewer. The payload is kept only in here: a second
    /// copy for the few users of the raw payload (the relay, re-encodings) would double the
    /// memory of every stream's ring.
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
        let wire = encode(
            media.kind,
            timestamp,
            &media.payload,
            encoding.chunk_size,
            encoding.stream_id,
        );
        Self {
            kind: media.kind,
            timestamp,
            keyframe,
            sequence_header,
            generation,
            received_unix_us: liverelay_types::unix_us(),
            payload_len: media.payload.len(),
            wire,
            encoding,
        }
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
            encode(
                self.kind,
                self.timestamp,
                &self.payload(),
                chunk_size,
                stream_id,
            )
        }
    }

    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// What keeping this frame costs: its bytes plus the frame itself, its `Arc` and the
    /// buffer's header, so that limits hold for floods of tiny messages too.
    pub fn heap_cost(&self) -> usize {
        const OVERHEAD: usize =
            std::mem::size_of::<Frame>() + 2 * std::mem::size_of::<usize>() + 32;
        self.wire.len() + OVERHEAD
    }

    /// The message payload (FLV tag body): a slice of the wire bytes when the message fits in
    /// one chunk, else reassembled from the chunks.
    pub fn payload(&self) -> Bytes {
        if self.payload_len <= self.encoding.chunk_size as usize {
            return self.wire.slice(self.wire.len() - self.payload_len..);
        }
        // Any length the wire can carry: a frame is as large as the server's configured
        // message limit, whatever that is.
        let mut decoder = ChunkDecoder::new(ChunkLimits {
            max_message_size: MAX_MESSAGE_LENGTH,
            max_pending_bytes: MAX_MESSAGE_LENGTH as usize,
            ..ChunkLimits::default()
        });
        decoder
            .set_chunk_size(self.encoding.chunk_size)
            .expect("our own chunk size is valid");
        let mut buf = BytesMut::from(&self.wire[..]);
        match decoder.decode(&mut buf) {
            Ok(Some(msg)) => msg.payload,
            _ => unreachable!("a frame's wire bytes are one whole message we encoded"),
        }
    }
}

fn encode(
    kind: MediaKind,
    timestamp: u64,
    payload: &Bytes,
    chunk_size: u32,
    stream_id: u32,
) -> Bytes {
    let (cs, ty) = match kind {
        MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
        MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
        MediaKind::Metadata | MediaKind::Data => (csid::DATA, type_id::DATA_AMF0),
    };
    let msg = RawMessage {
        // Metadata goes out at time 0, as nginx-rtmp sends it: libavformat takes a data tag with
        // a non-zero timestamp for a subtitle ("text") stream, and encoders such as GStreamer's
        // flvmux resend onMetaData mid-stream. Media carries its own time; RTMP has 32 bits and
        // players handle the wrap after 49.7 days.
        timestamp: if kind == MediaKind::Metadata {
            0
        } else {
            timestamp as u32
        },
        type_id: ty,
        stream_id,
        payload: payload.clone(),
    };
    encode_message(cs, &msg, chunk_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_of_the_largest_message_the_wire_carries() {
        // rtmp.max_message_size may be up to 16 MiB - 1; such a frame once hit unreachable!.
        let payload = Bytes::from(vec![0x17u8; MAX_MESSAGE_LENGTH as usize]);
        let media = Media {
            kind: MediaKind::Video,
            timestamp: 0,
            payload: payload.clone(),
        };
        let frame = Frame::new(media, 0, 1, FanoutEncoding::default());
        assert_eq!(frame.payload(), payload);
    }

    #[test]
    fn payload_comes_back_from_the_wire_bytes() {
        for len in [0usize, 1, 100, 4096, 4097, 20_000] {
            for ts in [0u64, 0xFF_FFFF, 1 << 33] {
                let payload = Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
                let media = Media {
                    kind: MediaKind::Video,
                    timestamp: ts,
                    payload: payload.clone(),
                };
                let frame = Frame::new(media, ts, 1, FanoutEncoding::default());
                assert_eq!(frame.payload(), payload, "len {len} ts {ts}");
                assert_eq!(frame.payload_len, len);
                let other = frame.wire(128, 3);
                let mut decoder = ChunkDecoder::new(ChunkLimits::default());
                let msg = decoder
                    .decode(&mut BytesMut::from(&other[..]))
                    .unwrap()
                    .unwrap();
                assert_eq!((msg.payload, msg.stream_id), (payload, 3));
            }
        }
    }
}

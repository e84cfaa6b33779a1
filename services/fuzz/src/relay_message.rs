//! Fuzz target for relay message decoding: what an edge does with every message an ingest
//! sends (`liverelay_relay::decode` after prost, as tonic calls it).
//!
//! Input: one encoded `RelayMessage` (without gRPC's 5-byte length prefix: tonic strips it and
//! enforces the size limit before decoding). Beyond "no panic", the target checks that:
//! - a frame's payload is a slice of the received buffer (decoding never copies media);
//! - a decoded event encodes back to a message that decodes to the same event, so what an edge
//!   acts on is exactly what the message said, whatever else (unknown fields) it carried.

use bytes::Bytes;
use liverelay_proto::relay::v1::relay_message::Kind;
use liverelay_proto::relay::v1::{
    EndOfStream, FrameKind, MediaFrame, PublisherRestarted, RelayMessage, StreamHeader,
};
use liverelay_relay::{RelayEvent, decode};
use liverelay_rtmp::MediaKind;
use prost::Message;

pub fn fuzz(data: &[u8]) {
    let received = Bytes::copy_from_slice(data);
    let Ok(message) = RelayMessage::decode(received.clone()) else {
        return;
    };
    let Some(event) = decode(message) else {
        return;
    };
    if let RelayEvent::Frame(frame) = &event {
        let payload = &frame.media.payload;
        if !payload.is_empty() {
            let inside = received.as_ptr_range();
            assert!(
                inside.contains(&payload.as_ptr()),
                "a frame's payload was copied out of the received buffer"
            );
        }
    }
    let again = decode(RelayMessage::decode(encode(&event).encode_to_vec().as_slice()).unwrap());
    assert_eq!(again.as_ref(), Some(&event), "from {data:?}");
}

/// The message an ingest would send for `event`.
pub fn encode(event: &RelayEvent) -> RelayMessage {
    let kind = match event {
        RelayEvent::Header { generation } => Kind::Header(StreamHeader {
            generation: *generation,
        }),
        RelayEvent::Frame(frame) => Kind::Frame(MediaFrame {
            kind: match frame.media.kind {
                MediaKind::Audio => FrameKind::Audio,
                MediaKind::Video => FrameKind::Video,
                MediaKind::Metadata => FrameKind::Metadata,
                MediaKind::Data => FrameKind::Data,
            } as i32,
            timestamp: frame.media.timestamp,
            payload: frame.media.payload.clone(),
            ingest_received_unix_us: frame.ingest_received_unix_us,
            cached: frame.cached,
        }),
        RelayEvent::Restarted { generation } => Kind::Restarted(PublisherRestarted {
            generation: *generation,
        }),
        RelayEvent::End => Kind::End(EndOfStream {}),
    };
    RelayMessage { kind: Some(kind) }
}

//! Fuzz target for relay message decoding: what an edge does with every message an ingest
//! sends (`liverelay_relay::decode` after prost, as tonic calls it).
//!
//! Input: one encoded `RelayMessage` (without gRPC's 5-byte length prefix: tonic strips it and
//! enforces the size limit before decoding). Beyond "no panic", the target checks that:
//! - a frame's payload is a slice of the received buffer (decoding never copies media);
//! - a decoded event encodes back to a message that decodes to the same event, so what an edge
//!   acts on is exactly what the message said, whatever else (unknown fields) it carried.

use bytes::Bytes;
use liverelay_proto::relay::v1::RelayMessage;
use liverelay_relay::{RelayEvent, decode, encode};
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
    let sent = encode(event.clone()).encode_to_vec();
    let again = decode(RelayMessage::decode(sent.as_slice()).unwrap());
    assert_eq!(again.as_ref(), Some(&event), "from {data:?}");
}

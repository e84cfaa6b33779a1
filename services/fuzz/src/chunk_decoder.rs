//! Fuzz target for [`ChunkDecoder`], the first thing every byte from a peer goes through.
//!
//! Input: byte 0 chooses the read size (1 + byte 0 bytes per read), the rest is the chunk
//! stream as a peer sends it after the handshake. Set Chunk Size and Abort messages are applied
//! as the server applies them. Beyond "no panic", the target checks that:
//! - no message is larger than the message limit, and the bytes reserved for unfinished
//!   messages never exceed the pending limit;
//! - the read size does not matter: fed all at once, the input decodes to the same messages
//!   and ends in the same error;
//! - every decoded message, re-encoded by the project's encoder (at the default chunk size, so
//!   it spans several chunks), decodes back to itself.

use bytes::BytesMut;
use liverelay_rtmp::chunk::{ChunkDecoder, ChunkError, ChunkLimits, encode_message};
use liverelay_rtmp::message::{RawMessage, type_id};

/// Small limits, so the fuzzer reaches them quickly.
pub const LIMITS: ChunkLimits = ChunkLimits {
    max_chunk_size: 65536,
    max_message_size: 4096,
    max_chunk_streams: 8,
    max_pending_bytes: 8192,
};

pub fn fuzz(data: &[u8]) {
    let Some((&read_size, stream)) = data.split_first() else {
        return;
    };
    let (messages, error) = decode(stream, 1 + read_size as usize);
    for msg in &messages {
        assert!(
            msg.payload.len() <= LIMITS.max_message_size as usize,
            "message of {} bytes passed the limit",
            msg.payload.len()
        );
        check_round_trip(msg);
    }
    let (whole, whole_error) = decode(stream, stream.len().max(1));
    assert_eq!(messages, whole, "read size changed the decoded messages");
    assert_eq!(error, whole_error, "read size changed the error");
}

/// Decodes `stream` read `read_size` bytes at a time, until the end or the first error.
pub fn decode(stream: &[u8], read_size: usize) -> (Vec<RawMessage>, Option<ChunkError>) {
    let mut decoder = ChunkDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in stream.chunks(read_size) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let msg = match decoder.decode(&mut buf) {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            };
            assert!(buf.len() < before, "a message out of no bytes");
            assert!(
                decoder.pending_bytes() <= LIMITS.max_pending_bytes,
                "{} bytes pending over the limit",
                decoder.pending_bytes()
            );
            if let Err(e) = apply_control(&mut decoder, &msg) {
                return (messages, Some(e));
            }
            messages.push(msg);
        }
        assert!(decoder.pending_bytes() <= LIMITS.max_pending_bytes);
    }
    (messages, None)
}

/// What the server does with Set Chunk Size and Abort on receipt.
fn apply_control(decoder: &mut ChunkDecoder, msg: &RawMessage) -> Result<(), ChunkError> {
    let Some(word) = msg.payload.get(..4) else {
        return Ok(());
    };
    let value = u32::from_be_bytes(word.try_into().unwrap());
    match msg.type_id {
        type_id::SET_CHUNK_SIZE => decoder.set_chunk_size(value & 0x7FFF_FFFF),
        type_id::ABORT => {
            decoder.abort(value);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_round_trip(msg: &RawMessage) {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(&encode_message(3, msg, 128)[..]);
    let back = decoder
        .decode(&mut buf)
        .expect("our own encoding decodes")
        .expect("our own encoding is complete");
    assert_eq!(&back, msg, "re-encoded message decodes differently");
    assert!(buf.is_empty(), "re-encoding left {} bytes over", buf.len());
}

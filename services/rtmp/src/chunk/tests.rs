use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::message::RawMessage;

fn msg(ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
    RawMessage {
        timestamp: ts,
        type_id,
        stream_id,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn decode_all(dec: &mut ChunkDecoder, buf: &mut BytesMut) -> Vec<RawMessage> {
    let mut out = Vec::new();
    while let Some(m) = dec.decode(buf).unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn spec_example_1_audio_with_compressed_headers() {
    // RTMP 1.0 §5.3.2.1: four 32-byte audio messages, delta 33, fmt 0 then 2 then 3, 3.
    let mut wire = BytesMut::new();
    let payload = [0xAFu8; 32];
    wire.put_slice(&[
        0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x20, 0x08, 0x39, 0x30, 0x00, 0x00,
    ]);
    wire.put_slice(&payload);
    wire.put_slice(&[0x83, 0x00, 0x00, 0x21]);
    wire.put_slice(&payload);
    wire.put_u8(0xC3);
    wire.put_slice(&payload);
    wire.put_u8(0xC3);
    wire.put_slice(&payload);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let msgs = decode_all(&mut dec, &mut wire);
    let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, [1000, 1033, 1066, 1099]);
    assert!(
        msgs.iter()
            .all(|m| m.stream_id == 12345 && m.type_id == 8 && m.payload.len() == 32)
    );
    assert!(wire.is_empty());

    // Our encoder compresses the same messages to exactly the spec's bytes.
    let mut enc = ChunkEncoder::default();
    let mut out = BytesMut::new();
    for m in &msgs {
        enc.write(3, m, &mut out);
    }
    let mut again = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(decode_all(&mut again, &mut out.clone()), msgs);
    assert_eq!(out.len(), 12 + 4 + 1 + 1 + 4 * 32);
    assert_eq!(&out[44..48], &[0x83, 0x00, 0x00, 0x21]);
    assert_eq!(out[80], 0xC3);
    assert_eq!(out[113], 0xC3);
}

#[test]
fn spec_example_2_message_split_in_chunks() {
    // §5.3.2.2: a 307-byte message with chunk size 128 -> fmt 0 + two fmt 3 chunks.
    let payload: Vec<u8> = (0..307u32).map(|i| i as u8).collect();
    let m = msg(1000, 9, 12346, &payload);
    let wire = encode_message(4, &m, 128);
    assert_eq!(wire.len(), 12 + 307 + 2);
    assert_eq!(wire[12 + 128], 0xC4);
    assert_eq!(wire[12 + 128 + 1 + 128], 0xC4);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(decode_all(&mut dec, &mut buf), vec![m]);
}

#[test]
fn interleaved_chunk_streams_reassemble() {
    let a: Vec<u8> = vec![1; 300];
    let b: Vec<u8> = vec![2; 200];
    let wa = encode_message(4, &msg(10, 8, 1, &a), 128);
    let wb = encode_message(6, &msg(20, 9, 1, &b), 128);
    // Chunks: a0 b0 a1 b1 a2 (each first chunk has a 12-byte header, continuations 1 byte).
    let split = |w: &Bytes| {
        let mut parts = vec![w.slice(0..12 + 128)];
        let mut at = 12 + 128;
        while at < w.len() {
            let end = (at + 129).min(w.len());
            parts.push(w.slice(at..end));
            at = end;
        }
        parts
    };
    let (pa, pb) = (split(&wa), split(&wb));
    let mut wire = BytesMut::new();
    for i in 0..3 {
        if let Some(p) = pa.get(i) {
            wire.put_slice(p);
        }
        if let Some(p) = pb.get(i) {
            wire.put_slice(p);
        }
    }
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let msgs = decode_all(&mut dec, &mut wire);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].payload, Bytes::from(b), "b completes first");
    assert_eq!(msgs[1].payload, Bytes::from(a));
}

#[test]
fn extended_timestamp_repeated_or_omitted_on_continuations() {
    let payload = vec![7u8; 300];
    let m = msg(0x0100_0000, 9, 1, &payload);
    let spec = encode_message(6, &m, 128);
    // Spec form: ext timestamp repeated on each fmt 3 chunk.
    assert_eq!(spec.len(), 16 + 300 + 2 * 5);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(
        decode_all(&mut dec, &mut BytesMut::from(&spec[..])),
        vec![m.clone()]
    );

    // Omitted form (some encoders): the continuation chunks carry no ext timestamp.
    let mut omitted = BytesMut::new();
    omitted.put_slice(&spec[..16 + 128]);
    omitted.put_u8(0xC6);
    omitted.put_slice(&payload[128..256]);
    omitted.put_u8(0xC6);
    omitted.put_slice(&payload[256..]);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(decode_all(&mut dec, &mut omitted), vec![m]);
}

#[test]
fn extended_delta_in_compressed_headers() {
    let mut enc = ChunkEncoder::default();
    let mut wire = BytesMut::new();
    let msgs = [
        msg(5, 8, 1, b"a"),
        msg(5 + 0x0200_0000, 8, 1, b"b"),
        msg(5 + 0x0400_0000, 8, 1, b"c"),
        msg(5 + 0x0400_0010, 8, 1, b"dd"),
        msg(u32::MAX, 8, 1, b"e"),
    ];
    for m in &msgs {
        enc.write(4, m, &mut wire);
    }
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(decode_all(&mut dec, &mut wire), msgs);
}

#[test]
fn basic_header_sizes() {
    for csid in [2, 63, 64, 319, 320, 65599] {
        let m = msg(1, 20, 0, b"hello");
        let wire = encode_message(csid, &m, 128);
        let expected_basic = match csid {
            2..=63 => 1,
            64..=319 => 2,
            _ => 3,
        };
        assert_eq!(wire.len(), expected_basic + 11 + 5, "csid {csid}");
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        assert_eq!(
            decode_all(&mut dec, &mut BytesMut::from(&wire[..])),
            vec![m]
        );
    }
}

#[test]
fn abort_discards_partial_message() {
    let wire = encode_message(6, &msg(1, 9, 1, &[9u8; 300]), 128);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(&wire[..12 + 128]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    dec.abort(6);
    let next = msg(2, 9, 1, b"fresh");
    let mut buf = BytesMut::from(&encode_message(6, &next, 128)[..]);
    assert_eq!(decode_all(&mut dec, &mut buf), vec![next]);
}

#[test]
fn limits_are_enforced() {
    let limits = ChunkLimits {
        max_chunk_size: 65536,
        max_message_size: 1000,
        max_chunk_streams: 2,
        max_pending_bytes: 2000,
    };
    let mut dec = ChunkDecoder::new(limits);
    assert_eq!(
        dec.set_chunk_size(0),
        Err(ChunkError::BadChunkSize(0, 65536))
    );
    assert_eq!(
        dec.set_chunk_size(65537),
        Err(ChunkError::BadChunkSize(65537, 65536))
    );
    assert!(dec.set_chunk_size(65536).is_ok());
    let big = encode_message(6, &msg(0, 9, 1, &[0; 1001]), 65536);
    assert_eq!(
        dec.decode(&mut BytesMut::from(&big[..])),
        Err(ChunkError::MessageTooLarge {
            length: 1001,
            limit: 1000
        })
    );
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    for csid in [3, 4, 5] {
        buf.put_slice(&encode_message(csid, &msg(0, 20, 0, b"x"), 128));
    }
    assert!(dec.decode(&mut buf).unwrap().is_some());
    assert!(dec.decode(&mut buf).unwrap().is_some());
    assert_eq!(
        dec.decode(&mut buf),
        Err(ChunkError::TooManyChunkStreams(2))
    );
    // A continuation header on a chunk stream that never had a full one.
    let mut dec = ChunkDecoder::new(limits);
    assert_eq!(
        dec.decode(&mut BytesMut::from(&[0xC5u8, 1, 2, 3][..])),
        Err(ChunkError::MissingHeader { csid: 5, fmt: 3 })
    );
}

/// Only the first chunk of a message of `len` bytes on `csid`: the decoder reserves `len`.
fn first_chunk(csid: u32, len: usize) -> Bytes {
    encode_message(csid, &msg(0, 9, 1, &vec![7u8; len]), 128).slice(..12 + 128)
}

#[test]
fn unfinished_messages_are_capped_across_chunk_streams() {
    let limits = ChunkLimits {
        max_message_size: 1000,
        max_pending_bytes: 2500,
        ..Default::default()
    };
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    buf.put_slice(&first_chunk(3, 1000));
    buf.put_slice(&first_chunk(4, 1000));
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(dec.pending_bytes(), 2000);
    buf.put_slice(&first_chunk(5, 1000));
    assert_eq!(
        dec.decode(&mut buf),
        Err(ChunkError::TooMuchPending {
            held: 3000,
            limit: 2500
        })
    );

    // What completes, is aborted or is replaced by a new message stops counting.
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    let whole = encode_message(3, &msg(0, 9, 1, &[1u8; 1000]), 128);
    buf.put_slice(&first_chunk(4, 1000));
    buf.put_slice(&whole);
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().payload.len(), 1000);
    assert_eq!(dec.pending_bytes(), 1000);
    dec.abort(4);
    assert_eq!(dec.pending_bytes(), 0);
    buf.put_slice(&first_chunk(3, 900));
    buf.put_slice(&first_chunk(3, 800));
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(dec.pending_bytes(), 800);

    // A server raises the limits for an accepted publisher.
    let mut dec = ChunkDecoder::new(limits);
    dec.set_limits(5000, 10_000);
    let mut buf = BytesMut::from(&first_chunk(3, 5000)[..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(dec.pending_bytes(), 5000);
}

#[test]
fn zero_length_message() {
    let m = msg(3, 8, 1, b"");
    let mut buf = BytesMut::from(&encode_message(4, &m, 128)[..]);
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(decode_all(&mut dec, &mut buf), vec![m]);
}

/// A payload that outlives the read (a frame in a stream's ring) must not keep the receive
/// buffer alive: it is its own allocation, not a slice of `buf`.
#[test]
fn a_single_chunk_payload_does_not_pin_the_receive_buffer() {
    let wire = encode_message(4, &msg(3, 8, 1, &[5u8; 100]), 4096);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    buf.extend_from_slice(&wire);
    let received = buf.as_ptr_range();
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_chunk_size(4096).unwrap();
    let m = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(&m.payload[..], &[5u8; 100]);
    assert!(
        !received.contains(&m.payload.as_ptr()),
        "a slice of the receive buffer"
    );
}

fn arb_message() -> impl Strategy<Value = (u32, RawMessage)> {
    (
        prop_oneof![Just(3u32), Just(4), Just(6), 2u32..=65599],
        prop_oneof![0u32..100_000, 0xFF_FF00u32..0x100_00FF, any::<u32>()],
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        0u32..3,
        prop::collection::vec(any::<u8>(), 0..1200),
    )
        .prop_map(|(csid, ts, ty, sid, payload)| (csid, msg(ts, ty, sid, &payload)))
}

proptest! {
    #[test]
    fn round_trip_any_messages_chunk_sizes_and_splits(
        msgs in prop::collection::vec(arb_message(), 1..20),
        chunk_size in prop_oneof![Just(1u32), 2u32..300, Just(4096), Just(MAX_CHUNK_SIZE)],
        split in 1usize..700,
        compressed in any::<bool>(),
    ) {
        let mut enc = ChunkEncoder::default();
        enc.set_chunk_size(chunk_size);
        let mut wire = BytesMut::new();
        for (csid, m) in &msgs {
            if compressed {
                enc.write(*csid, m, &mut wire);
            } else {
                wire.put_slice(&encode_message(*csid, m, chunk_size));
            }
        }
        let mut dec = ChunkDecoder::new(ChunkLimits { max_chunk_streams: 100_000, ..Default::default() });
        dec.set_chunk_size(chunk_size).unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(split) {
            buf.put_slice(piece);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        let want: Vec<RawMessage> = msgs.into_iter().map(|(_, m)| m).collect();
        prop_assert_eq!(got, want);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4000), cs in 1u32..512) {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(cs).unwrap();
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
}

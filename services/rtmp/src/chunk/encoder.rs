//! Splits messages into chunks.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::{DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP};
use crate::message::RawMessage;

/// The previous header sent on a chunk stream, for header compression.
#[derive(Debug, Clone, Copy)]
struct Sent {
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Delta of the last fmt 1/2 header; `None` after fmt 0, whose meaning as a delta for a
    /// following fmt 3 differs between implementations, so we never rely on it.
    delta: Option<u32>,
}

/// Writes messages of one connection with header compression (fmt 1/2/3 where allowed).
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    sent: HashMap<u32, Sent>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            sent: HashMap::new(),
        }
    }
}

impl ChunkEncoder {
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the size used for messages written after this call. The caller must have sent
    /// Set Chunk Size to the peer first.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.max(1);
    }

    /// Appends `msg` as chunks on chunk stream `csid`.
    pub fn write(&mut self, csid: u32, msg: &RawMessage, out: &mut BytesMut) {
        let length = msg.payload.len() as u32;
        let prev = self.sent.get(&csid).copied();
        let (fmt, field, delta) = match prev {
            Some(p) if p.stream_id == msg.stream_id && msg.timestamp >= p.timestamp => {
                let delta = msg.timestamp - p.timestamp;
                match (
                    p.length == length && p.type_id == msg.type_id,
                    p.delta == Some(delta),
                ) {
                    (true, true) => (3, delta, Some(delta)),
                    (true, false) => (2, delta, Some(delta)),
                    (false, _) => (1, delta, Some(delta)),
                }
            }
            _ => (0, msg.timestamp, None),
        };
        self.sent.insert(
            csid,
            Sent {
                timestamp: msg.timestamp,
                length,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
                delta,
            },
        );
        write_chunks(out, csid, fmt, field, msg, self.chunk_size);
    }
}

/// Encodes `msg` as a self-contained run of chunks (fmt 0, then fmt 3 continuations) that can be
/// sent to any connection whose outgoing chunk size is `chunk_size`, whatever it sent before.
/// This is what lets one encoding of a media message be shared by every viewer.
pub fn encode_message(csid: u32, msg: &RawMessage, chunk_size: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(csid, msg, chunk_size));
    write_chunks(&mut out, csid, 0, msg.timestamp, msg, chunk_size);
    out.freeze()
}

/// Exact size of [`encode_message`]'s output.
pub fn encoded_len(csid: u32, msg: &RawMessage, chunk_size: u32) -> usize {
    let len = msg.payload.len();
    let chunks = len.div_ceil(chunk_size.max(1) as usize).max(1);
    let ext = if msg.timestamp >= EXTENDED_TIMESTAMP {
        4
    } else {
        0
    };
    let basic = basic_header_len(csid);
    (basic + 11 + ext) + (chunks - 1) * (basic + ext) + len
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let id = csid - 64;
            out.put_u8(fmt | 1);
            out.put_u16_le(id as u16);
        }
    }
}

fn write_chunks(
    out: &mut BytesMut,
    csid: u32,
    fmt: u8,
    ts_field: u32,
    msg: &RawMessage,
    chunk_size: u32,
) {
    let extended = ts_field >= EXTENDED_TIMESTAMP;
    let ts24 = ts_field.min(EXTENDED_TIMESTAMP);
    let length = msg.payload.len() as u32;
    out.reserve(encoded_len(csid, msg, chunk_size));
    put_basic_header(out, fmt, csid);
    if fmt <= 2 {
        out.put_slice(&ts24.to_be_bytes()[1..]);
    }
    if fmt <= 1 {
        out.put_slice(&length.to_be_bytes()[1..]);
        out.put_u8(msg.type_id);
    }
    if fmt == 0 {
        out.put_u32_le(msg.stream_id);
    }
    if extended {
        out.put_u32(ts_field);
    }
    let mut chunks = msg.payload.chunks(chunk_size.max(1) as usize);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(ts_field);
        }
        out.put_slice(chunk);
    }
}

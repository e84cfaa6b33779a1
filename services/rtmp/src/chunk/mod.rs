//! The RTMP chunk stream (RTMP 1.0 §5.3): splitting messages into chunks and reassembling them.
//!
//! Both directions are pure functions of their input bytes and the negotiated chunk size; they
//! never touch a socket. Every length that comes from the peer is checked against [`ChunkLimits`]
//! before anything is allocated for it.

mod decoder;
mod encoder;

pub use decoder::ChunkDecoder;
pub use encoder::{ChunkEncoder, encode_message, encoded_len};

/// Largest chunk size the protocol allows (the top bit of Set Chunk Size must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Chunk size every RTMP connection starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Message lengths are 24-bit on the wire.
pub const MAX_MESSAGE_LENGTH: u32 = 0xFF_FFFF;
/// Lowest and highest chunk stream ids a basic header can carry.
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65599;

const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;

/// Limits on what a peer may make us hold in memory.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Largest chunk size the peer may set with Set Chunk Size.
    pub max_chunk_size: u32,
    /// Largest message the peer may send.
    pub max_message_size: u32,
    /// How many chunk streams the peer may use at once.
    pub max_chunk_streams: usize,
    /// Bytes the peer may make us hold in unfinished messages, summed over all its chunk
    /// streams (a message's buffer is reserved at its declared length when it starts).
    pub max_pending_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: MAX_CHUNK_SIZE,
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_pending_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk stream {csid} continues (fmt {fmt}) before any full header was sent on it")]
    MissingHeader { csid: u32, fmt: u8 },
    #[error("message of {length} bytes exceeds the limit of {limit}")]
    MessageTooLarge { length: u32, limit: u32 },
    #[error("chunk size {0} is not allowed (must be 1..={1})")]
    BadChunkSize(u32, u32),
    #[error("peer uses more than {0} chunk streams")]
    TooManyChunkStreams(usize),
    #[error("unfinished messages would hold {held} bytes, over the limit of {limit}")]
    TooMuchPending { held: usize, limit: usize },
}

#[cfg(test)]
mod tests;

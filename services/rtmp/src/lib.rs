//! liverelay's RTMP protocol core.
//!
//! Everything here is a pure function of bytes in and bytes out: the handshake, the chunk
//! stream, AMF, commands and the session state machines. There is no socket, clock or random
//! source in this crate, so it is tested and fuzzed without a network; the tokio driver lives in
//! `liverelay-rtmp-server`.

#![forbid(unsafe_code)]

pub mod amf;
pub mod chunk;
pub mod command;
pub mod handshake;
pub mod media;
pub mod message;
pub mod name;
pub mod session;
pub mod timestamp;

pub use message::RawMessage;
pub use session::{ClientSession, Media, MediaKind, ServerEvent, ServerSession, SessionError};

//! RTMP sessions: the server and client ends of one connection, as state machines.
//!
//! A session is fed received bytes ([`ServerSession::recv_buffer`] + `process`) and yields
//! events and bytes to send. It never does I/O or reads a clock: the driver (a tokio task in the
//! server crate, a test, a fuzzer) moves the bytes, decides what to accept, and passes the time
//! in (`note_received`, and `handle_timeout` when `poll_timeout` says).

mod client;
mod connection;
mod server;

pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use server::{
    ConnectRequest, PlayRequest, PublishKind, PublishRequest, ServerConfig, ServerEvent,
    ServerSession,
};

use bytes::Bytes;

use crate::amf::AmfError;
use crate::chunk::ChunkError;
use crate::command::{self, Command, CommandError};
use crate::handshake::HandshakeError;
use crate::message::{self, RawMessage, type_id};
use crate::name::NameError;

/// A media message from a publisher, with its timestamp extended to 64 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: MediaKind,
    pub timestamp: u64,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// `onMetaData` (sent by publishers as `@setDataFrame`); the payload is the AMF0 body
    /// starting at "onMetaData", ready for viewers.
    Metadata,
    /// Any other AMF0 data message (cue points, text), forwarded as is.
    Data,
}

/// Why a session ended. Each variant names one protocol violation.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream error: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad command: {0}")]
    Command(#[from] CommandError),
    #[error("bad AMF data: {0}")]
    Amf(#[from] AmfError),
    #[error("malformed {0} message")]
    MalformedControl(&'static str),
    #[error("'{0}' before connect")]
    NotConnected(String),
    #[error("too many streams on one connection (limit {0})")]
    TooManyStreams(u32),
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    #[error("second connect on one connection")]
    DuplicateConnect,
    #[error("bad {what} name: {error}")]
    BadName {
        what: &'static str,
        error: NameError,
    },
    #[error("'{command}' on message stream {stream_id}, which was never created")]
    UnknownStream {
        command: &'static str,
        stream_id: u32,
    },
    #[error("no connect within {0:?} of the handshake")]
    ConnectTimeout(std::time::Duration),
    #[error("no publish or play within {0:?} of connect")]
    StartTimeout(std::time::Duration),
    #[error("nothing received within the idle timeout ({0:?})")]
    IdleTimeout(std::time::Duration),
}

/// Both ends sort incoming messages the same way; they differ in what a command and a media
/// message mean to them.
pub(crate) trait MessageHandler {
    fn handle_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError>;
    fn handle_media(&mut self, msg: RawMessage) -> Result<(), SessionError>;

    /// Asked with the command's name before the rest of it is decoded, so that a peer cannot
    /// make us decode what we would refuse anyway.
    fn check_command(&self, name: &str) -> Result<(), SessionError> {
        let _ = name;
        Ok(())
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let body = command::amf0_body(&msg);
                self.check_command(&Command::peek_name(&body)?)?;
                let cmd = Command::decode(&body)?;
                self.handle_command(msg.stream_id, cmd)
            }
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                self.handle_media(msg)
            }
            type_id::AGGREGATE => {
                let parts = message::split_aggregate(&msg)
                    .map_err(|_| SessionError::MalformedControl("Aggregate"))?;
                for part in parts {
                    if matches!(
                        part.type_id,
                        type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0
                    ) {
                        self.handle_media(part)?;
                    }
                }
                Ok(())
            }
            // Shared objects are not supported; ignoring them keeps the connection usable.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

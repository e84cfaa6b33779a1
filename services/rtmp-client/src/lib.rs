//! An async RTMP client: a thin tokio driver around the protocol core's
//! [`ClientSession`](liverelay_rtmp::session::ClientSession).
//!
//! [`RtmpClient`] connects (TCP, handshake, `connect`), creates streams, publishes and plays,
//! queues media and hands out [`ClientEvent`]s. It never panics on what the server sends: every
//! protocol violation, refusal, timeout or close comes back as an [`Error`].
//!
//! Waiting helpers take a limit: [`RtmpClient::wait_for`] an event that matches,
//! [`RtmpClient::count_pictures`] in a time window, [`RtmpClient::wait_closed`] for the server to
//! hang up. [`RtmpClient::publish_status`] and [`RtmpClient::play_status`] return the server's
//! answer whatever it is, for callers that check refusals. For testing servers, a client can
//! also write raw bytes ([`RtmpClient::write_raw`]), play a peer that hung
//! ([`RtmpClient::stop_writing`]) and note the server's pings ([`ClientOptions::record_pings`]).
//!
//! A player that only needs to count what it receives (load generation) can turn the client
//! into a [`BulkReader`] once playing: it reads in large batches (`SO_RCVLOWAT`) without decoding
//! and keeps the connection alive with periodic acknowledgements, so thousands of them fit on
//! one core.

mod bulk;
mod client;
mod stream;
mod url;

pub use bulk::BulkReader;
pub use client::{ClientOptions, RtmpClient, StreamStatus, is_picture};
pub use liverelay_rtmp::session::{ClientEvent, Media, MediaKind, PublishKind};
pub use stream::ClientStream;
pub use url::RtmpUrl;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad RTMP URL '{0}': expected rtmp[s]://host[:port]/app[/name]")]
    BadUrl(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error from server: {0}")]
    Protocol(#[from] liverelay_rtmp::SessionError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server closed the connection")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server refused `connect` (its `_error` info `code`/`description`, if any).
    #[error("connect refused: {0}")]
    ConnectRefused(String),
    /// The server answered `createStream`, `publish` or `play` with an error status.
    #[error("{command} refused: {code} {description}")]
    Refused {
        command: &'static str,
        code: String,
        description: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

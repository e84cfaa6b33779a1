//! The RTMP server: a thin tokio driver around [`liverelay_rtmp::ServerSession`].
//!
//! It moves bytes between sockets and sessions, answers the session's requests against the
//! [`Hub`](liverelay_hub::Hub), and writes each viewer's backlog of shared, pre-chunked frames
//! with one vectored write. Protocol decisions live in the core; stream state lives in the hub.

mod config;
mod connection;
mod drain;
mod listener;
mod policy;
mod write;

pub use config::RtmpServerConfig;
pub use drain::{Drain, Phase};
pub use listener::RtmpServer;
pub use policy::{OpenPolicy, Refusal, StreamPolicy, Ticket};

//! The RTMP server: a thin tokio driver around [`liverelay_rtmp::ServerSession`].
//!
//! It moves bytes between sockets and sessions, answers the session's requests against the
//! [`Hub`](liverelay_hub::Hub), and writes each viewer's backlog of shared, pre-chunked frames
//! with one vectored write. Protocol decisions live in the core; stream state lives in the hub.

mod access;
mod config;
mod connection;
mod drain;
mod listener;
mod play_budget;
mod sessions;
mod slots;
mod write;

pub use access::{
    Access, Action, Admission, Chain, ClientInfo, OpenAccess, StreamAttempt, query_param,
};
pub use config::RtmpServerConfig;
pub use drain::{Drain, Phase};
pub use listener::{RtmpServer, Services};
pub use sessions::{Registered, SessionInfo, SessionRole, Sessions};

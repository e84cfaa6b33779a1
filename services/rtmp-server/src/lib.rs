//! The RTMP server: a thin tokio driver around [`liverelay_rtmp::ServerSession`].
//!
//! It moves bytes between sockets and sessions, hands the session's publish and play requests
//! to the admission [`Gate`](liverelay_admission::Gate), and writes each viewer's backlog of
//! shared, pre-chunked frames with one vectored write. Protocol decisions live in the core,
//! admission in `liverelay-admission`, stream state in the hub.

mod config;
mod connection;
mod drain;
mod listener;
mod metrics;
mod slots;
mod write;

pub use config::RtmpServerConfig;
pub use drain::{Drain, Phase};
pub use listener::{RtmpServer, Services};
pub use metrics::RtmpMetrics;

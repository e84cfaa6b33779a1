//! The cluster's Redis, named for what it is: one handle ([`RedisConn`]) for a single node or
//! Redis Cluster, carrying the key prefix, the per-operation timeout and the operation metrics,
//! with pub/sub subscriptions that survive Redis restarts; [`ExpiringEntries`] (JSON a writer
//! keeps alive by rewriting it); and the state pods share through Redis that is not the stream
//! registry: control's [`CommandBus`] and the pods' [`NodeReports`].
//!
//! Every store built on it reports [`RedisError`]; the stream registry (`liverelay-registry`)
//! turns that into its own error. Nothing here knows about streams' ownership or RTMP.

mod commands;
mod conn;
mod expiring;
mod metrics;
mod nodes;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;
mod webhook_queue;

use std::time::Duration;

pub use commands::{ClusterCommand, CommandBus, DropTarget};
pub use conn::RedisConn;
pub use expiring::ExpiringEntries;
pub use metrics::{OpLabel, RedisMetrics};
pub use nodes::{NodeReport, NodeReports, StreamLoad};
pub use tls::RedisTls;
pub use webhook_queue::{QueueConsumer, QueuedEvent, WebhookEvent, WebhookQueue};

/// Where the cluster's Redis is and how keys are named in it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`); several for a cluster's seeds.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Prefix of every key and channel (`{prefix}:...`).
    pub key_prefix: String,
    /// Each Redis operation fails after this long (Redis down must not hang a publish).
    pub op_timeout: Duration,
    /// Trust and client identity for `rediss://` URLs.
    pub tls: RedisTls,
    /// About how many webhook events the queue keeps (`XADD MAXLEN ~`).
    pub webhook_queue_len: usize,
}

/// Why a Redis operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// Redis is down, did not answer in time, or refused the command.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// An entry in Redis does not parse as what it should be.
    #[error("Redis holds a malformed entry: {0}")]
    Corrupt(String),
}

impl RedisError {
    pub(crate) fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

//! The stream registry: which pod owns each live stream, and how to reach it.
//!
//! One trait, [`StreamRegistry`], with an in-memory implementation (standalone) and a Redis one
//! (cluster). Ownership is a lease: a record with a time to live that the owner renews; a
//! fencing `generation` makes every claim distinguishable, so an old owner can never renew or
//! delete a newer owner's record. Publish and unpublish are announced as [`RegistryEvent`]s.
//!
//! Only the registry lives here: the Redis connection and the other state pods keep in Redis
//! (commands, load reports, expiring entries) are `liverelay-redis`.

mod lease;
mod memory;
mod metrics;
mod presence;
mod record;
mod redis_registry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::time::Duration;

use futures::future::BoxFuture;
use liverelay_redis::RedisError;
use liverelay_types::StreamId;
use tokio::sync::{broadcast, watch};

pub use lease::{Lease, LeaseState};
pub use memory::MemoryRegistry;
pub use metrics::LeaseMetrics;
pub use presence::{PRESENCE_EVERY, PRESENCE_TTL, Presence};
pub use record::{RegistryEvent, StreamRecord};
pub use redis_registry::{RedisRegistry, RedisRegistryConfig};

/// Proof of ownership returned by [`StreamRegistry::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub record: StreamRecord,
}

impl Claim {
    pub fn key(&self) -> StreamId {
        self.record.key()
    }

    pub fn generation(&self) -> u64 {
        self.record.generation
    }
}

/// What a renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// The record is gone (expired while the registry was unreachable, or lost with it); the
    /// owner may claim again.
    Missing,
    /// Another owner holds the stream now.
    Superseded {
        owner: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("stream is live on {owner}")]
    Owned { owner: String },
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    #[error("registry holds a malformed record: {0}")]
    Corrupt(String),
    /// Another running process says it is this pod ([`Presence`]).
    #[error(
        "another running process is pod {pod} (its instance {instance} keeps the pod's presence \
         key alive): pod ids must be unique (cluster.pod_id, else POD_NAME or HOSTNAME)"
    )]
    DuplicatePod { pod: String, instance: String },
}

impl From<RedisError> for RegistryError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unavailable(why) => Self::Unavailable(why),
            RedisError::Corrupt(why) => Self::Corrupt(why),
        }
    }
}

pub trait StreamRegistry: Send + Sync + 'static {
    /// Takes ownership of `record`'s stream unless another owner holds a live lease on it. The
    /// claim's record carries a new generation.
    fn claim(&self, record: StreamRecord) -> BoxFuture<'_, Result<Claim, RegistryError>>;

    /// Extends the lease (and replaces the record's details, e.g. its codecs, if given).
    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        details: Option<&'a StreamRecord>,
    ) -> BoxFuture<'a, Result<Renewal, RegistryError>>;

    /// Removes the record if it is still this claim's (compare-and-delete).
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), RegistryError>>;

    fn lookup<'a>(
        &'a self,
        key: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<StreamRecord>, RegistryError>>;

    /// Every live stream.
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>>;

    /// Publish and unpublish announcements from every pod, as they happen.
    fn events(&self) -> broadcast::Receiver<RegistryEvent>;

    /// [`RegistryEvent::Wanted`] announcements from every pod, apart from [`Self::events`].
    fn wants(&self) -> broadcast::Receiver<RegistryEvent>;

    /// Announces that a viewer waits for `key` ([`RegistryEvent::Wanted`]).
    fn want<'a>(&'a self, key: &'a StreamId) -> BoxFuture<'a, ()>;

    fn lease_ttl(&self) -> Duration;

    /// Changes when this process's presence was found lapsed ([`Presence`]): other pods may
    /// have taken its streams over meanwhile, so each lease checks at once. `None` where no
    /// other pod can (one process).
    fn presence_lapses(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

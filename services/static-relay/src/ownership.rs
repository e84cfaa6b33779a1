//! Exactly once in the cluster: a relay runs only on the pod holding its lease. Each pod keeps
//! trying to claim; the holder renews every third of the TTL and stops the relay at once when a
//! renewal says the lease is gone, or when renewals have failed for so long that the lease may
//! have expired (another pod may then hold it). A holder that dies stops renewing, and another
//! pod claims the relay within the TTL.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::lease_store::LeaseStore;
use crate::status::{RedisRelayStatus, RelayState, StatusCell};

/// How often the holder copies the relay's status to Redis.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Ownership {
    pub leases: Arc<dyn LeaseStore>,
    pub pod_id: String,
    pub status: StatusCell,
    pub shared_status: Option<RedisRelayStatus>,
}

impl Ownership {
    /// Forever: wait until this pod may run the relay (`eligible`), claim it, run `job` while
    /// the lease is held, release it when `job` returns.
    pub async fn run<J, F>(&self, id: &str, eligible: impl Fn() -> bool, mut job: J)
    where
        J: FnMut() -> F,
        F: Future<Output = ()>,
    {
        let retry = self.leases.ttl() / 3;
        loop {
            if !eligible() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let generation = match self.leases.claim(id, &self.pod_id).await {
                Ok(Some(generation)) => generation,
                Ok(None) => {
                    tokio::time::sleep(retry).await;
                    continue;
                }
                Err(e) => {
                    warn!(relay = id, error = %e, "cannot claim relay lease; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            info!(relay = id, generation, owner = %self.pod_id, "relay lease taken");
            self.status.set_owner(Some(&self.pod_id));
            let lost = tokio::select! {
                () = job() => false,
                () = self.keep(id, generation) => true,
                () = self.share_status(generation) => unreachable!("status sharing never ends"),
            };
            self.status.set_state(RelayState::Stopped);
            self.status.set_owner(None);
            if lost {
                warn!(
                    relay = id,
                    generation, "relay lease lost; relay stopped here"
                );
            } else {
                info!(relay = id, generation, "relay released");
                // While the lease is still ours; the next holder writes its own.
                self.put_status(generation).await;
                if let Err(e) = self.leases.release(id, generation).await {
                    warn!(relay = id, error = %e, "cannot release relay lease; it will expire");
                }
            }
        }
    }

    /// Renews the lease; returns when it is (or may be) lost.
    async fn keep(&self, id: &str, generation: u64) {
        let ttl = self.leases.ttl();
        let period = ttl / 3;
        let mut confirmed = Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match self.leases.renew(id, generation).await {
                Ok(true) => confirmed = Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    warn!(relay = id, error = %e, "renewing relay lease failed");
                    // Stop before the lease can run out unrenewed: past that, another pod may
                    // already run the relay.
                    if confirmed.elapsed() + period >= ttl {
                        return;
                    }
                }
            }
        }
    }

    async fn share_status(&self, generation: u64) {
        loop {
            self.put_status(generation).await;
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }

    /// Copies the status to Redis if lease `generation` is still held there (after a pause,
    /// this pod may run before it learns the lease is gone).
    async fn put_status(&self, generation: u64) {
        if let Some(shared) = &self.shared_status
            && let Err(e) = shared.put(&self.status.get(), generation).await
        {
            warn!(relay = %self.status.get().id, error = %e, "cannot store relay status");
        }
    }
}

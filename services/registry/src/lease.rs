//! Holding a claim: renew it in the background, claim again after the registry lost it, give
//! it up when dropped, and say so if another owner took the stream.

use std::sync::{Arc, Mutex};

use liverelay_types::AbortOnDrop;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{Claim, LeaseMetrics, RegistryError, Renewal, StreamRecord, StreamRegistry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    Held {
        generation: u64,
    },
    /// Another owner claimed the stream (our lease had expired); the publish must end.
    Lost {
        owner: String,
    },
}

pub struct Lease {
    registry: Arc<dyn StreamRegistry>,
    claim: Arc<Mutex<Claim>>,
    details: Arc<Mutex<Option<StreamRecord>>>,
    state: watch::Receiver<LeaseState>,
    /// The renewals, stopped with the lease.
    heartbeat: AbortOnDrop,
}

impl Lease {
    /// Starts renewing `claim` every third of the lease time.
    pub fn hold(registry: Arc<dyn StreamRegistry>, claim: Claim, metrics: LeaseMetrics) -> Self {
        let (tx, state) = watch::channel(LeaseState::Held {
            generation: claim.generation(),
        });
        let claim = Arc::new(Mutex::new(claim));
        let details = Arc::new(Mutex::new(None));
        let heartbeat = AbortOnDrop::new(&tokio::spawn(heartbeat(
            registry.clone(),
            claim.clone(),
            details.clone(),
            tx,
            metrics,
        )));
        Self {
            registry,
            claim,
            details,
            state,
            heartbeat,
        }
    }

    /// Publishes new details (e.g. codecs once known) with the next renewal.
    pub fn set_details(&self, record: StreamRecord) {
        *self.details.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    pub fn record(&self) -> StreamRecord {
        self.claim
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record
            .clone()
    }

    /// Resolves (with the new owner) when another owner took the stream. The future does not
    /// borrow the lease.
    pub fn lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            loop {
                if let LeaseState::Lost { owner } = &*state.borrow_and_update() {
                    return owner.clone();
                }
                if state.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // No renewal after the release.
        drop(std::mem::take(&mut self.heartbeat));
        let registry = self.registry.clone();
        let claim = self.claim.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Release in the background: the publisher's connection is already closing.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = registry.release(&claim).await {
                    warn!(stream = %claim.key(), error = %e, "could not release stream; its lease will expire");
                }
            });
        }
    }
}

async fn heartbeat(
    registry: Arc<dyn StreamRegistry>,
    claim: Arc<Mutex<Claim>>,
    details: Arc<Mutex<Option<StreamRecord>>>,
    state: watch::Sender<LeaseState>,
    metrics: LeaseMetrics,
) {
    let period = registry.lease_ttl() / 3;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut lapses = registry.presence_lapses();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // This pod looked gone for a while: if another took the stream meanwhile, the
            // publish ends now, not at the next renewal.
            () = lapsed(&mut lapses) => {}
        }
        let current = claim.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let update = details.lock().unwrap_or_else(|e| e.into_inner()).take();
        match registry.renew(&current, update.as_ref()).await {
            Ok(Renewal::Renewed) => {
                metrics.renewals.inc();
            }
            Ok(Renewal::Missing) => {
                // The registry forgot us (Redis restarted, or our lease ran out while it was
                // unreachable): claim again, unless someone else got there first.
                let mut record = update.unwrap_or(current.record.clone());
                record.generation = 0;
                match registry.claim(record).await {
                    Ok(new) => {
                        info!(stream = %new.key(), generation = new.generation(), "stream re-registered");
                        let _ = state.send(LeaseState::Held {
                            generation: new.generation(),
                        });
                        *claim.lock().unwrap_or_else(|e| e.into_inner()) = new;
                    }
                    Err(RegistryError::Owned { owner }) => {
                        metrics.losses.inc();
                        warn!(stream = %current.key(), %owner, "stream lease lost to another owner");
                        let _ = state.send(LeaseState::Lost { owner });
                        return;
                    }
                    Err(e) => {
                        warn!(stream = %current.key(), error = %e, "re-registering stream failed; will retry")
                    }
                }
            }
            Ok(Renewal::Superseded { owner }) => {
                metrics.losses.inc();
                warn!(stream = %current.key(), %owner, "stream lease lost to another owner");
                let _ = state.send(LeaseState::Lost { owner });
                return;
            }
            Err(e) => {
                if let Some(u) = update {
                    // Keep the details for the next try.
                    details
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(u);
                }
                warn!(stream = %current.key(), error = %e, "renewing stream lease failed; stream keeps flowing");
            }
        }
    }
}

/// Resolves when the registry says this process's presence lapsed; never where it cannot.
async fn lapsed(lapses: &mut Option<watch::Receiver<u64>>) {
    if let Some(rx) = lapses
        && rx.changed().await.is_ok()
    {
        return;
    }
    *lapses = None;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::MemoryRegistry;

    fn record(owner: &str) -> StreamRecord {
        StreamRecord {
            app: "live".into(),
            name: "lease".into(),
            owner: owner.into(),
            grpc_addr: String::new(),
            started_at_ms: 0,
            generation: 0,
            video_codec: None,
            audio_codec: None,
            instance: String::new(),
        }
    }

    #[tokio::test]
    async fn renews_and_releases_on_drop() {
        let reg: Arc<dyn StreamRegistry> =
            Arc::new(MemoryRegistry::new(Duration::from_millis(150)));
        let claim = reg.claim(record("a")).await.unwrap();
        let metrics = LeaseMetrics::default();
        let lease = Lease::hold(reg.clone(), claim.clone(), metrics.clone());
        lease.set_details(StreamRecord {
            video_codec: Some("h264".into()),
            ..record("a")
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let live = reg
            .lookup(&claim.key())
            .await
            .unwrap()
            .expect("renewed past the ttl");
        assert_eq!(live.video_codec.as_deref(), Some("h264"));
        assert_eq!(live.generation, claim.generation());
        assert!(metrics.renewals.get() >= 2);
        drop(lease);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(reg.lookup(&claim.key()).await.unwrap(), None);
    }
}

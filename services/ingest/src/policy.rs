//! Publish and play rules of an ingest: a publish must win the stream's claim in the registry
//! (held by a lease for as long as it lasts); plays are for edges, over the relay.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use liverelay_hub::Hub;
use liverelay_registry::{Lease, LeaseMetrics, RegistryError, StreamRecord, StreamRegistry};
use liverelay_rtmp::command::code;
use liverelay_types::StreamId;
use liverelay_types::{AbortOnDrop, Refusal, StreamPolicy, Ticket};
use tracing::warn;

pub struct IngestPolicy {
    pub registry: Arc<dyn StreamRegistry>,
    pub hub: Hub,
    pub pod_id: String,
    /// Where edges reach this pod's relay.
    pub grpc_addr: String,
    pub allow_play: bool,
    /// The stream leases' renewals and losses.
    pub metrics: LeaseMetrics,
}

/// Holds the stream's lease; keeps the record's codec summary current.
struct LeaseTicket {
    lease: Arc<Lease>,
    /// Keeps the record's codecs current; stopped with the ticket.
    _codecs: AbortOnDrop,
}

impl Ticket for LeaseTicket {
    fn revoked(&self) -> Option<BoxFuture<'static, String>> {
        let lost = self.lease.lost();
        Some(Box::pin(async move {
            format!("stream taken over by {}", lost.await)
        }))
    }
}

impl StreamPolicy for IngestPolicy {
    fn publish(&self, key: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        let registry = self.registry.clone();
        let hub = self.hub.clone();
        let metrics = self.metrics.clone();
        let record = StreamRecord {
            app: key.app.clone(),
            name: key.name.clone(),
            owner: self.pod_id.clone(),
            grpc_addr: self.grpc_addr.clone(),
            started_at_ms: liverelay_types::unix_ms(),
            generation: 0,
            video_codec: None,
            audio_codec: None,
            instance: String::new(),
        };
        Box::pin(async move {
            match registry.claim(record).await {
                Ok(claim) => {
                    let lease = Arc::new(Lease::hold(registry.clone(), claim, metrics));
                    let codecs = tokio::spawn(publish_codecs(
                        hub,
                        key,
                        Arc::downgrade(&lease),
                        registry.lease_ttl(),
                    ));
                    Ok(Box::new(LeaseTicket {
                        lease,
                        _codecs: AbortOnDrop::new(&codecs),
                    }) as Box<dyn Ticket>)
                }
                Err(RegistryError::Owned { owner }) => Err(Refusal {
                    code: code::PUBLISH_BAD_NAME,
                    description: format!("{key} is already live on {owner}"),
                }),
                Err(e) => {
                    warn!(stream = %key, error = %e, "publish refused: registry unavailable");
                    Err(Refusal {
                        code: code::PUBLISH_DENIED,
                        description: format!("stream registry unavailable ({e}); try again"),
                    })
                }
            }
        })
    }

    fn play(&self, key: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        let allow = self.allow_play;
        Box::pin(async move {
            if allow {
                Ok(Box::new(()) as Box<dyn Ticket>)
            } else {
                Err(Refusal {
                    code: code::PLAY_FAILED,
                    description: format!("this is an ingest node: play {key} from an edge"),
                })
            }
        })
    }
}

/// Puts the stream's codecs into its record once the sequence headers are known (and again if
/// they change), with the lease's next renewal.
async fn publish_codecs(hub: Hub, key: StreamId, lease: Weak<Lease>, ttl: Duration) {
    let mut sent = (None, None);
    let mut tick = tokio::time::interval((ttl / 3).min(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let codecs = hub.codecs(&key);
        if codecs == sent {
            continue;
        }
        let Some(lease) = lease.upgrade() else { return };
        let record = lease.record();
        lease.set_details(StreamRecord {
            video_codec: codecs.0.map(str::to_owned),
            audio_codec: codecs.1.map(str::to_owned),
            ..record
        });
        sent = codecs;
    }
}

#[cfg(test)]
mod tests;

//! One upstream per pulled stream: finds the owner in the registry, subscribes over the relay,
//! and publishes what arrives into the edge's hub for every local viewer.
//!
//! When the upstream breaks (the ingest died, the publisher moved to another ingest) the local
//! publish is kept for the reconnect window while the upstream re-resolves and resubscribes, so
//! viewers stay connected and continue with monotonic timestamps and the new source's sequence
//! headers. A clean end of the publish ends the local publish at once, as on a single server.
//!
//! The decisions (when to look up, whom to subscribe to, backoff, reconnect window, linger,
//! wants) are the sans-I/O [`machine`]; [`task`] is the tokio task that performs its actions
//! against the registry, the relay and the hub.

mod machine;
mod task;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liverelay_admission::Gate;
use liverelay_hub::Hub;
use liverelay_registry::StreamRegistry;
use liverelay_relay::{RelayClient, RelayClientConfig};
use liverelay_types::{OpenPolicy, StreamId};
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use crate::UpstreamMetrics;

/// Upstreams of one edge, at most one per stream.
#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    /// Admits the upstreams' local publishes: the hub's one publisher per name, with the open
    /// policy, since the cluster claim is the owning ingest's (the edge's own policy refuses
    /// every publisher). Its hub is the edge's.
    gate: Gate,
    registry: Arc<dyn StreamRegistry>,
    /// Subscriptions to ingests, one connection per ingest for all streams.
    relay: RelayClient,
    linger: Duration,
    reconnect_window: Duration,
    /// Streams this edge pulls (or waits for) at once, at most.
    max_upstreams: usize,
    metrics: UpstreamMetrics,
    tasks: Mutex<HashMap<StreamId, JoinHandle<()>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("this edge already pulls its limit of {0} streams")]
pub struct TooManyUpstreams(pub usize);

impl UpstreamPool {
    pub fn new(
        hub: Hub,
        registry: Arc<dyn StreamRegistry>,
        relay: RelayClientConfig,
        linger: Duration,
        reconnect_window: Duration,
        max_upstreams: usize,
        metrics: UpstreamMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                gate: Gate::new(hub, Arc::new(OpenPolicy)),
                registry,
                relay: RelayClient::new(relay),
                linger,
                reconnect_window,
                max_upstreams,
                metrics,
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts pulling `key` unless an upstream for it is already running; refused when the
    /// edge pulls its limit of streams, so plays of made-up names cannot spawn tasks without
    /// bound.
    pub fn ensure(&self, key: StreamId) -> Result<(), TooManyUpstreams> {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|_, task| !task.is_finished());
        if tasks.contains_key(&key) {
            return Ok(());
        }
        if tasks.len() >= self.inner.max_upstreams {
            return Err(TooManyUpstreams(self.inner.max_upstreams));
        }
        let events = self.inner.registry.events();
        // A root span: the upstream outlives the play that started it.
        let span = info_span!(parent: None, "upstream", stream = %key);
        // In traces it belongs to the play that started it.
        liverelay_telemetry::adopt_current(&span);
        let upstream = task::run(key.clone(), self.inner.clone(), events);
        tasks.insert(key, tokio::spawn(upstream.instrument(span)));
        Ok(())
    }

    /// Streams being pulled now.
    pub fn active(&self) -> usize {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.values().filter(|t| !t.is_finished()).count()
    }
}

//! One upstream per pulled stream: finds the owner in the registry, subscribes over the relay,
//! and publishes what arrives into the edge's hub for every local viewer.
//!
//! When the upstream breaks (the ingest died, the publisher moved to another ingest) the local
//! publish is kept for the reconnect window while the upstream re-resolves and resubscribes, so
//! viewers stay connected and continue with monotonic timestamps and the new source's sequence
//! headers. A clean end of the publish ends the local publish at once, as on a single server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use liverelay_backoff::Backoff;
use liverelay_hub::{Hub, Publisher};
use liverelay_metrics::{Metrics, ReasonLabel};
use liverelay_proto::relay::v1::relay_message::Kind;
use liverelay_proto::relay::v1::{MediaFrame, RelayMessage};
use liverelay_registry::{RegistryEvent, StreamRegistry};
use liverelay_relay::{RelayClientConfig, RelayError, subscribe, to_media};
use liverelay_types::StreamId;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tracing::{Instrument, info, info_span, warn};

/// Upstreams of one edge, at most one per stream.
#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    hub: Hub,
    registry: Arc<dyn StreamRegistry>,
    relay: RelayClientConfig,
    linger: Duration,
    reconnect_window: Duration,
    /// Streams this edge pulls (or waits for) at once, at most.
    max_upstreams: usize,
    metrics: Arc<Metrics>,
    tasks: Mutex<HashMap<StreamId, JoinHandle<()>>>,
}

/// How often at most an upstream announces that its viewers wait for a stream.
const WANT_INTERVAL: Duration = Duration::from_secs(1);

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
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                hub,
                registry,
                relay,
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
        let upstream = Upstream {
            key: key.clone(),
            pool: self.inner.clone(),
            events: self.inner.registry.events(),
            publisher: None,
            idle_since: None,
            broken_since: None,
            source_pending: false,
            wanted_at: None,
        };
        // A root span: the upstream outlives the play that started it.
        let span = info_span!(parent: None, "upstream", stream = %key);
        // In traces it belongs to the play that started it.
        liverelay_telemetry::adopt_current(&span);
        tasks.insert(key, tokio::spawn(upstream.run().instrument(span)));
        Ok(())
    }

    /// Streams being pulled now.
    pub fn active(&self) -> usize {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.values().filter(|t| !t.is_finished()).count()
    }
}

enum Outcome {
    /// The publisher stopped (EndOfStream).
    Ended,
    Broken(String),
    /// No viewers for the linger time.
    Idle,
}

struct Upstream {
    key: StreamId,
    pool: Arc<PoolInner>,
    events: broadcast::Receiver<RegistryEvent>,
    /// The local publish viewers read from; kept across failovers.
    publisher: Option<Publisher>,
    idle_since: Option<Instant>,
    /// When the current outage began (upstream broke without an end of stream).
    broken_since: Option<Instant>,
    /// A source arrived but the local publish could not start yet.
    source_pending: bool,
    /// When this upstream last announced that its viewers want the stream.
    wanted_at: Option<Instant>,
}

impl Upstream {
    async fn run(mut self) {
        info!("upstream started");
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        while !self.idle_expired() {
            self.expire_outage();
            let record = match self.pool.registry.lookup(&self.key).await {
                Ok(record) => record,
                Err(e) => {
                    self.reconnect("registry_unavailable");
                    warn!(error = %e, "looking up the stream failed; retrying");
                    self.wait(backoff.next_delay()).await;
                    continue;
                }
            };
            let Some(record) = record else {
                // Not live anywhere (yet, or any more): ask for it (an on-demand pull may bring
                // it in) and wait for a publish announcement.
                self.want().await;
                self.wait(WANT_INTERVAL).await;
                continue;
            };
            let stream = match subscribe(&record.grpc_addr, &self.key, &self.pool.relay).await {
                Ok(stream) => stream,
                Err(RelayError::Refused(status)) if status.code() == tonic::Code::NotFound => {
                    // The record outlived the publish by a moment (release in flight): wait for
                    // the next publish rather than hammering the ingest.
                    info!(owner = %record.owner, "stream ended on its ingest; waiting for a new publish");
                    self.wait(backoff.next_delay().max(Duration::from_secs(1)))
                        .await;
                    continue;
                }
                Err(e) => {
                    self.reconnect("subscribe_failed");
                    warn!(owner = %record.owner, addr = %record.grpc_addr, error = %e, "subscribe failed; retrying");
                    self.wait(backoff.next_delay()).await;
                    continue;
                }
            };
            info!(owner = %record.owner, addr = %record.grpc_addr, generation = record.generation, "subscribed");
            match self.pump(stream, &mut backoff).await {
                Outcome::Ended => {
                    info!("publisher stopped");
                    self.publisher = None;
                    self.source_pending = false;
                    self.broken_since = None;
                }
                Outcome::Broken(e) => {
                    self.reconnect("broken");
                    warn!(error = %e, "upstream broke; re-resolving");
                    self.broken_since.get_or_insert_with(Instant::now);
                    self.wait(backoff.next_delay()).await;
                }
                Outcome::Idle => break,
            }
        }
        info!("upstream closed: no viewers");
    }

    /// Announces that viewers wait for the stream: only while one does (not during the
    /// linger after the last left) and at most once per [`WANT_INTERVAL`], however often the
    /// loop comes round.
    async fn want(&mut self) {
        let due = self.wanted_at.is_none_or(|t| t.elapsed() >= WANT_INTERVAL);
        if due && self.pool.hub.viewer_count(&self.key) > 0 {
            self.wanted_at = Some(Instant::now());
            self.pool.registry.want(&self.key).await;
        }
    }

    fn reconnect(&self, reason: &'static str) {
        self.pool
            .metrics
            .relay_reconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    fn idle_expired(&mut self) -> bool {
        if self.pool.hub.viewer_count(&self.key) > 0 {
            self.idle_since = None;
            return false;
        }
        self.idle_since.get_or_insert_with(Instant::now).elapsed() >= self.pool.linger
    }

    /// After the reconnect window, an outage becomes an unpublish for the viewers.
    fn expire_outage(&mut self) {
        if self
            .broken_since
            .is_some_and(|t| t.elapsed() >= self.pool.reconnect_window)
        {
            warn!("no new source within the reconnect window; ending the stream for viewers");
            self.publisher = None;
            self.broken_since = None;
        }
    }

    /// Sleeps up to `limit`, waking early when the registry announces a publish of this stream.
    async fn wait(&mut self, limit: Duration) {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                event = self.events.recv() => match event {
                    Ok(RegistryEvent::Published { app, name, .. }) if app == self.key.app && name == self.key.name => return,
                    // Missed events may include this stream's publish: the lookup after the
                    // interval finds it. Returning at once would make every lagging upstream
                    // query the registry in a tight loop.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        (&mut deadline).await;
                        return;
                    }
                },
            }
        }
    }

    async fn pump(
        &mut self,
        mut stream: Streaming<RelayMessage>,
        backoff: &mut Backoff,
    ) -> Outcome {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(RelayMessage { kind: Some(kind) })) => {
                        backoff.reset();
                        match kind {
                            Kind::Header(header) => {
                                self.start_source();
                                // Cached frames: old by design, so not part of the hop latency.
                                header.frames.into_iter().for_each(|f| self.push(f));
                            }
                            Kind::Frame(frame) => {
                                self.observe_hop(&frame);
                                self.push(frame);
                            }
                            Kind::Restarted(_) => self.start_source(),
                            Kind::End(_) => return Outcome::Ended,
                        }
                    }
                    Ok(Some(RelayMessage { kind: None })) => {}
                    Ok(None) => return Outcome::Broken("relay stream closed without an end".into()),
                    Err(status) => return Outcome::Broken(status.to_string()),
                },
                _ = tick.tick() => {
                    if self.idle_expired() {
                        return Outcome::Idle;
                    }
                }
            }
        }
    }

    /// A new source (first subscription, failover, publisher restart on the ingest): the local
    /// publish goes on with a new timeline base, or starts.
    fn start_source(&mut self) {
        self.broken_since = None;
        match &mut self.publisher {
            Some(p) => p.restart_source(),
            None => match self.pool.hub.publish(self.key.clone()) {
                Ok(p) => self.publisher = Some(p),
                Err(e) => {
                    warn!(error = %e, "cannot publish the pulled stream locally yet; retrying with the next frame");
                    self.source_pending = true;
                }
            },
        }
    }

    fn observe_hop(&self, frame: &MediaFrame) {
        if frame.ingest_received_unix_us > 0 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let hop = now.saturating_sub(frame.ingest_received_unix_us);
            self.pool
                .metrics
                .relay_hop_latency
                .observe(hop as f64 / 1e6);
        }
    }

    fn push(&mut self, frame: MediaFrame) {
        if self.publisher.is_none() && self.source_pending {
            // The local publish could not start (the hub's stream limit was reached, say):
            // try again rather than drop the stream for good.
            self.publisher = self.pool.hub.publish(self.key.clone()).ok();
            self.source_pending = self.publisher.is_none();
        }
        if let (Some(p), Some(media)) = (self.publisher.as_mut(), to_media(frame)) {
            p.push(media);
        }
    }
}

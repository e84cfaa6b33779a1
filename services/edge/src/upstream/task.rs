//! The tokio task around one [`UpstreamMachine`]: it performs the machine's actions (registry
//! lookups and wants, relay subscriptions, the local publish admitted by the gate, metrics) and
//! feeds back what happened, with the time and the local viewer count. Every decision is the
//! machine's; this file only moves events, frames and one timer.

use std::sync::Arc;
use std::time::Instant;

use liverelay_admission::{Admitted, Asker, PublishKind};
use liverelay_hub::{Publisher, SegmentStart};
use liverelay_metrics::ReasonLabel;
use liverelay_registry::RegistryEvent;
use liverelay_relay::{RelayError, RelayEvent, RelayedFrame, Subscription};
use liverelay_rtmp::Media;
use liverelay_types::StreamId;
use tokio::sync::broadcast;

use super::PoolInner;
use super::machine::{Action, Config, Event, Lookup, Owner, UpstreamMachine};

/// Pulls `key` until the machine closes the upstream.
pub(super) async fn run(
    key: StreamId,
    pool: Arc<PoolInner>,
    events: broadcast::Receiver<RegistryEvent>,
) {
    let config = Config {
        linger: pool.linger,
        reconnect_window: pool.reconnect_window,
    };
    let machine = UpstreamMachine::new(config, Instant::now(), Box::new(rand::random::<f64>));
    let mut task = UpstreamTask {
        key,
        pool,
        machine,
        publisher: None,
        stream: None,
        events: Some(events),
    };
    task.drive().await;
}

struct UpstreamTask {
    key: StreamId,
    pool: Arc<PoolInner>,
    machine: UpstreamMachine,
    /// The local publish viewers read from, while the machine keeps it.
    publisher: Option<Admitted<Publisher>>,
    /// The relay subscription, while one is open.
    stream: Option<Subscription>,
    /// Registry events; `None` once the registry closed its channel.
    events: Option<broadcast::Receiver<RegistryEvent>>,
}

impl UpstreamTask {
    async fn drive(&mut self) {
        let timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = None;
        loop {
            if !self.perform().await {
                return;
            }
            let deadline = self.machine.poll_timeout();
            if deadline != armed {
                if let Some(at) = deadline {
                    timer.as_mut().reset(at.into());
                }
                armed = deadline;
            }
            tokio::select! {
                message = next_message(&mut self.stream) => self.on_message(message).await,
                event = next_event(&mut self.events) => self.on_registry(event),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let viewers = self.pool.gate.hub().viewer_count(&self.key);
                    self.machine.handle_timeout(Instant::now(), viewers);
                }
            }
        }
    }

    /// Performs every action the machine has, feeding back each answer; false once it closed.
    async fn perform(&mut self) -> bool {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::LookUp => {
                    let lookup = match self.pool.registry.lookup(&self.key).await {
                        Ok(Some(record)) => Lookup::Owner(Owner {
                            pod: record.owner,
                            addr: record.grpc_addr,
                            generation: record.generation,
                        }),
                        Ok(None) => Lookup::NotLive,
                        Err(e) => Lookup::Failed(e.to_string()),
                    };
                    self.machine.handle(Instant::now(), Event::LookedUp(lookup));
                }
                Action::Subscribe(owner) => {
                    let event = match self.pool.relay.subscribe(&owner.addr, &self.key).await {
                        Ok(stream) => {
                            self.stream = Some(stream);
                            Event::Subscribed
                        }
                        Err(RelayError::Refused(status))
                            if status.code() == tonic::Code::NotFound =>
                        {
                            Event::EndedOnIngest
                        }
                        Err(e) => Event::SubscribeFailed(e.to_string()),
                    };
                    self.machine.handle(Instant::now(), event);
                }
                Action::StartPublish => {
                    let asker = Asker::Local(self.key.clone());
                    let event = match self.pool.gate.publish(asker, PublishKind::Live).await {
                        Ok(mut publisher) => {
                            // The ingest's timeline is the stream's: every edge keeps it.
                            publisher.follow_timeline();
                            self.publisher = Some(publisher);
                            Event::PublishStarted
                        }
                        Err(refused) => Event::PublishRefused(refused.to_string()),
                    };
                    self.machine.handle(Instant::now(), event);
                }
                Action::RestartSource => {
                    if let Some(p) = &mut self.publisher {
                        p.restart_source();
                    }
                }
                Action::Unsubscribe => self.stream = None,
                Action::EndPublish => self.publisher = None,
                Action::AnnounceWant => self.pool.registry.want(&self.key).await,
                Action::CountReconnect(reason) => self.count_reconnect(reason.label()),
                Action::Close => return false,
            }
        }
        true
    }

    async fn on_message(&mut self, message: Result<Option<RelayEvent>, tonic::Status>) {
        let now = Instant::now();
        match message {
            Ok(Some(RelayEvent::Header { .. })) => self.machine.handle(now, Event::Header),
            Ok(Some(RelayEvent::Frame(frame))) => {
                self.observe_hop(&frame);
                self.push(now, frame.media, frame.segment).await;
            }
            Ok(Some(RelayEvent::Restarted { .. })) => self.machine.handle(now, Event::Restarted),
            Ok(Some(RelayEvent::End)) => {
                self.stream = None;
                self.machine.handle(now, Event::End);
            }
            Ok(None) => {
                self.stream = None;
                let error = "relay stream closed without an end".to_owned();
                self.machine.handle(now, Event::Broken(error));
            }
            Err(status) => {
                self.stream = None;
                self.machine.handle(now, Event::Broken(status.to_string()));
            }
        }
    }

    /// Pushes a frame into the local publish, once the machine had its say (it may retry a
    /// local publish that could not start).
    async fn push(&mut self, now: Instant, media: Media, segment: Option<SegmentStart>) {
        self.machine.handle(now, Event::Frame);
        self.perform().await;
        if let Some(p) = self.publisher.as_mut() {
            p.push_marked(media, segment);
        }
    }

    fn on_registry(&mut self, event: Result<RegistryEvent, broadcast::error::RecvError>) {
        match event {
            Ok(RegistryEvent::Published {
                app,
                name,
                owner,
                generation,
            }) if app == self.key.app && name == self.key.name => {
                let event = Event::Published { owner, generation };
                self.machine.handle(Instant::now(), event);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.machine.handle(Instant::now(), Event::RegistryLagged);
            }
            Err(broadcast::error::RecvError::Closed) => self.events = None,
        }
    }

    // The upstream's metrics.

    fn count_reconnect(&self, reason: &'static str) {
        self.pool
            .metrics
            .reconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Cached frames are old by design, so not part of the hop latency.
    fn observe_hop(&self, frame: &RelayedFrame) {
        if !frame.cached && frame.ingest_received_unix_us > 0 {
            let hop = liverelay_types::unix_us().saturating_sub(frame.ingest_received_unix_us);
            self.pool.metrics.hop_latency.observe(hop as f64 / 1e6);
        }
    }
}

async fn next_message(
    stream: &mut Option<Subscription>,
) -> Result<Option<RelayEvent>, tonic::Status> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<RegistryEvent>>,
) -> Result<RegistryEvent, broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

//! The ingest side: serves a live stream of the local hub to a subscribing edge.
use std::pin::Pin;

use futures::Stream;
use liverelay_hub::{Hub, Viewer, ViewerItem};
use liverelay_types::{ClusterToken, StreamId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, info_span, warn};

use crate::RelayEvent;
use crate::RelayMetrics;
use crate::convert::{encode, frame_event};
use crate::pb::relay_server::{Relay, RelayServer};
use crate::pb::{RelayMessage, SubscribeRequest};

/// Messages buffered per subscriber beyond the hub's own bounded backlog.
const SUBSCRIBER_QUEUE: usize = 64;
/// Frames taken from the hub per poll.
const BATCH: usize = 256;

pub struct RelayService {
    hub: Hub,
    token: ClusterToken,
    metrics: RelayMetrics,
}

impl RelayService {
    pub fn new(hub: Hub, token: ClusterToken, metrics: RelayMetrics) -> Self {
        Self {
            hub,
            token,
            metrics,
        }
    }

    pub fn into_server(self) -> RelayServer<Self> {
        RelayServer::new(self)
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<RelayMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type SubscribeStream = MessageStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<MessageStream>, Status> {
        liverelay_proto::token::verify(&self.token, &request)?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let key = StreamId::new(req.app, req.name);
        if !self.hub.is_live(&key) {
            return Err(Status::not_found(format!("{key} is not live here")));
        }
        let viewer = self
            .hub
            .play(key.clone())
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let span = info_span!("relay", stream = %key, subscriber = %req.subscriber);
        liverelay_telemetry::set_remote_parent(&span, &metadata);
        let metrics = self.metrics.clone();
        let forwarder = Forwarder {
            viewer,
            tx,
            max_payload: match req.max_payload {
                0 => usize::MAX,
                n => n as usize,
            },
            metrics: metrics.clone(),
        };
        tokio::spawn(
            async move {
                metrics.subscriptions.inc();
                forwarder.run().await;
                metrics.subscriptions.dec();
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Feeds one subscriber until the publisher stops or the subscriber goes away. A full queue
/// makes it wait, and the hub then skips the subscriber ahead to a keyframe.
struct Forwarder {
    viewer: Viewer,
    tx: mpsc::Sender<Result<RelayMessage, Status>>,
    max_payload: usize,
    metrics: RelayMetrics,
}

/// Why forwarding stopped.
enum Stop {
    SubscriberLeft,
    PublisherStopped,
}

impl Forwarder {
    async fn run(mut self) {
        info!("subscriber attached");
        match self.forward().await {
            Stop::SubscriberLeft => info!("subscriber left"),
            Stop::PublisherStopped => {
                let _ = self.send(RelayEvent::End).await;
                info!("publisher stopped; subscription ended");
            }
        }
    }

    async fn forward(&mut self) -> Stop {
        let mut items = Vec::new();
        // The subscription joined a live publish, so the first poll has its frames.
        let mut pending = self.viewer.poll(&mut items, BATCH);
        let header = RelayEvent::Header {
            generation: self.viewer.generation(),
        };
        if self.send(header).await.is_err() {
            return Stop::SubscriberLeft;
        }
        // Frames polled before the viewer first reached the head of the ring are the cache.
        let mut cached = true;
        loop {
            let mut ended = false;
            for item in items.drain(..) {
                let event = match item {
                    ViewerItem::Frame(frame) => {
                        if frame.payload().len() > self.max_payload {
                            self.metrics.frames_over_limit.inc();
                            warn!(
                                bytes = frame.payload().len(),
                                limit = self.max_payload,
                                "frame larger than the subscriber accepts (its \
                                 rtmp.max_message_size); skipped"
                            );
                            continue;
                        }
                        frame_event(&frame, cached)
                    }
                    ViewerItem::Published => RelayEvent::Restarted {
                        generation: self.viewer.generation(),
                    },
                    ViewerItem::Unpublished => {
                        ended = true;
                        continue;
                    }
                };
                ended = false;
                if self.send(event).await.is_err() {
                    return Stop::SubscriberLeft;
                }
            }
            if ended {
                return Stop::PublisherStopped;
            }
            if pending == 0 {
                cached = false;
                tokio::select! {
                    () = self.viewer.changed() => {}
                    () = self.tx.closed() => return Stop::SubscriberLeft,
                }
            }
            pending = self.viewer.poll(&mut items, BATCH);
        }
    }

    async fn send(&self, event: RelayEvent) -> Result<(), ()> {
        self.tx.send(Ok(encode(event))).await.map_err(|_| ())
    }
}

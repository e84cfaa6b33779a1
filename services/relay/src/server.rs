//! The ingest side: serves a live stream of the local hub to a subscribing edge.

use std::pin::Pin;

use futures::Stream;
use liverelay_hub::{Hub, Viewer, ViewerItem};
use liverelay_types::StreamId;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info, info_span};

use crate::RelayMetrics;
use crate::convert::from_frame;
use crate::pb::relay_message::Kind;
use crate::pb::relay_server::{Relay, RelayServer};
use crate::pb::{EndOfStream, PublisherRestarted, RelayMessage, StreamHeader, SubscribeRequest};
use liverelay_types::ClusterToken;

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
        tokio::spawn(
            async move {
                metrics.subscriptions.inc();
                forward(viewer, tx).await;
                metrics.subscriptions.dec();
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Feeds one subscriber until the publisher stops or the subscriber goes away. A full queue
/// makes this task wait, and the hub then skips the subscriber ahead to a keyframe.
async fn forward(mut viewer: Viewer, tx: mpsc::Sender<Result<RelayMessage, Status>>) {
    info!("subscriber attached");
    let mut items = Vec::new();
    viewer.poll(&mut items, BATCH);
    let frames = items
        .drain(..)
        .filter_map(|i| match i {
            ViewerItem::Frame(f) => Some(from_frame(&f)),
            _ => None,
        })
        .collect();
    let header = Kind::Header(StreamHeader {
        generation: 0,
        frames,
    });
    if tx
        .send(Ok(RelayMessage { kind: Some(header) }))
        .await
        .is_err()
    {
        return;
    }
    let mut pending = 0;
    loop {
        if pending == 0 {
            tokio::select! {
                () = viewer.changed() => {}
                () = tx.closed() => break,
            }
        }
        items.clear();
        pending = viewer.poll(&mut items, BATCH);
        let mut ended = false;
        for item in items.drain(..) {
            let kind = match item {
                ViewerItem::Frame(f) => Kind::Frame(from_frame(&f)),
                ViewerItem::Published => Kind::Restarted(PublisherRestarted { generation: 0 }),
                ViewerItem::Unpublished => {
                    ended = true;
                    continue;
                }
            };
            ended = false;
            if tx
                .send(Ok(RelayMessage { kind: Some(kind) }))
                .await
                .is_err()
            {
                info!("subscriber left");
                return;
            }
        }
        if ended {
            let _ = tx
                .send(Ok(RelayMessage {
                    kind: Some(Kind::End(EndOfStream {})),
                }))
                .await;
            info!("publisher stopped; subscription ended");
            return;
        }
    }
    info!("subscriber left");
}

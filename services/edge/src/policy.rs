//! Publish and play rules of an edge: no publishers; a play makes sure the stream is pulled.

use std::sync::Arc;

use futures::future::BoxFuture;
use liverelay_hub::Hub;
use liverelay_registry::StreamRegistry;
use liverelay_rtmp::command::code;
use liverelay_types::StreamId;
use liverelay_types::{Refusal, StreamPolicy, Ticket};
use tracing::warn;

use crate::upstream::UpstreamPool;

pub struct EdgePolicy {
    pub pool: UpstreamPool,
    pub registry: Arc<dyn StreamRegistry>,
    pub hub: Hub,
}

impl StreamPolicy for EdgePolicy {
    fn refuses_publishers(&self) -> Option<Refusal> {
        Some(self_refusal())
    }

    fn publish(&self, _: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        Box::pin(async { Err(self_refusal()) })
    }

    /// A stream already pulled here plays at once. Otherwise the registry must answer (a
    /// stream that is not live yet is waited for, like nginx-rtmp's idle streams); with the
    /// registry down a new stream cannot be found and the play fails with a clear status.
    fn play(&self, key: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        let pool = self.pool.clone();
        let registry = self.registry.clone();
        let hub = self.hub.clone();
        Box::pin(async move {
            if !hub.is_live(&key)
                && let Err(e) = registry.lookup(&key).await
            {
                warn!(stream = %key, error = %e, "play refused: registry unavailable");
                return Err(Refusal {
                    code: code::PLAY_FAILED,
                    description: format!("stream registry unavailable ({e}); try again"),
                });
            }
            if let Err(e) = pool.ensure(key.clone()) {
                warn!(stream = %key, error = %e, "play refused: upstream limit");
                return Err(Refusal {
                    code: code::PLAY_FAILED,
                    description: e.to_string(),
                });
            }
            Ok(Box::new(()) as Box<dyn Ticket>)
        })
    }
}

fn self_refusal() -> Refusal {
    Refusal {
        code: code::PUBLISH_DENIED,
        description: "this is an edge node: publish to an ingest".into(),
    }
}

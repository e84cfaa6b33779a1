//! JSON event webhooks for platforms: `stream.started`, `stream.ended`, `key.revoked`,
//! `key.rotated`, delivered from a durable queue so none is lost while control is down.
//!
//! Ingests queue `stream.*` events as they claim and release streams (the registry), control
//! queues `key.*` events ([`Webhooks::emit`]); the queue is a Redis Stream
//! ([`liverelay_redis::WebhookQueue`]). Every control replica with endpoints configured reads
//! it through one consumer group ([`consumer`]): at least once (acknowledged after delivery,
//! taken over from a replica that died), in order per stream or key. Delivery runs beside
//! everything else and never waits on media.

mod consumer;
mod send;

use std::time::Duration;

use liverelay_config::WebhookSettings;
use liverelay_redis::{RedisConn, WebhookQueue};
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use crate::metrics::WebhookMetrics;
use send::Sender;

pub use liverelay_redis::WebhookEvent as Event;

/// Where control queues its own events.
#[derive(Clone)]
pub struct Webhooks {
    queue: WebhookQueue,
    metrics: WebhookMetrics,
}

impl Webhooks {
    pub fn new(conn: RedisConn, metrics: WebhookMetrics) -> Self {
        Self {
            queue: WebhookQueue::new(conn),
            metrics,
        }
    }

    /// Queues an event about `subject` (events of one subject are delivered in order). Redis
    /// down: logged and counted as dropped, as the action it reports failed to reach Redis too.
    pub async fn emit(&self, subject: &str, event: Event) {
        if let Err(e) = self.queue.append(subject, &event).await {
            warn!(error = %e, id = event.id, "could not queue webhook event; dropped");
            self.metrics
                .deliveries
                .get_or_create(&liverelay_metrics::OutcomeLabel {
                    action: "any",
                    result: "dropped",
                })
                .inc();
        }
    }

    /// Delivers queued events to `targets` as consumer `consumer` (the pod id) of the
    /// replicas' shared group, until the handle is dropped; nothing runs without targets.
    /// `takeover`: see `control.webhook_takeover_secs`.
    pub fn deliver(
        &self,
        targets: Vec<WebhookSettings>,
        consumer: String,
        takeover: Duration,
    ) -> anyhow::Result<Option<AbortOnDropHandle<()>>> {
        if targets.is_empty() {
            return Ok(None);
        }
        let sender = Sender::new(targets, self.metrics.clone())?;
        Ok(Some(AbortOnDropHandle::new(tokio::spawn(consumer::run(
            self.queue.clone(),
            consumer,
            sender,
            takeover,
        )))))
    }
}

//! JSON event webhooks for platforms: `stream.started`, `stream.ended`, `key.revoked`,
//! `key.rotated`. Each delivery is signed (`X-Liverelay-Signature: t=<unix>,v1=<hex>`, the
//! HMAC-SHA256 of `<t>.<body>` with the endpoint's secret) and retried with exponential
//! backoff; failures are logged and counted. Delivery runs beside everything else and never
//! waits on media. With several control replicas, a Redis marker per event lets one deliver it.

use std::sync::Arc;
use std::time::Duration;

use liverelay_auth::sign_hex;
use liverelay_config::WebhookSettings;
use liverelay_config::redact::without_query;
use liverelay_metrics::OutcomeLabel;
use liverelay_redis::RedisConn;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::WebhookMetrics;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Stable per occurrence: the same stream start seen by two replicas has one id.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unix seconds.
    pub created_at: u64,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: &'static str, id: String, data: serde_json::Value) -> Self {
        Self {
            id,
            kind,
            created_at: liverelay_types::unix_secs(),
            data,
        }
    }
}

/// Queue of events to deliver; emitting never blocks.
#[derive(Clone)]
pub struct Webhooks {
    queue: Option<mpsc::Sender<Event>>,
    metrics: WebhookMetrics,
}

struct Dispatcher {
    targets: Vec<WebhookSettings>,
    http: reqwest::Client,
    conn: RedisConn,
    prefix: String,
    metrics: WebhookMetrics,
}

impl Webhooks {
    /// Starts the dispatcher (nothing runs when no endpoint is configured).
    pub fn start(
        targets: Vec<WebhookSettings>,
        conn: RedisConn,
        metrics: WebhookMetrics,
    ) -> anyhow::Result<Self> {
        if targets.is_empty() {
            return Ok(Self {
                queue: None,
                metrics,
            });
        }
        let (queue, events) = mpsc::channel(4096);
        let dispatcher = Arc::new(Dispatcher {
            targets,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            prefix: conn.key_prefix().to_owned(),
            conn,
            metrics: metrics.clone(),
        });
        tokio::spawn(dispatcher.run(events));
        Ok(Self {
            queue: Some(queue),
            metrics,
        })
    }

    pub fn emit(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(event) {
            warn!(error = %e, "webhook queue full; event dropped");
            self.metrics
                .deliveries
                .get_or_create(&OutcomeLabel {
                    action: "any",
                    result: "dropped",
                })
                .inc();
        }
    }
}

impl Dispatcher {
    async fn run(self: Arc<Self>, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            if !self.first_to_claim(&event).await {
                info!(event = event.kind, id = %event.id, "webhook event taken by another replica");
                continue;
            }
            for target in &self.targets {
                if target.events.is_empty() || target.events.iter().any(|e| e == event.kind) {
                    tokio::spawn(self.clone().deliver(target.clone(), event.clone()));
                }
            }
        }
    }

    /// True unless another replica already took this event. Redis down: deliver anyway (a
    /// duplicate is better than a lost event; receivers dedupe by id).
    async fn first_to_claim(&self, event: &Event) -> bool {
        let marker = format!("{}:event:{}", self.prefix, event.id);
        let set: Result<Option<String>, _> = self
            .conn
            .query(
                "event_claim",
                redis::cmd("SET")
                    .arg(marker)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(86_400),
            )
            .await;
        !matches!(set, Ok(None))
    }

    fn count(&self, event: &'static str, result: &'static str) {
        self.metrics
            .deliveries
            .get_or_create(&OutcomeLabel {
                action: event,
                result,
            })
            .inc();
    }

    async fn deliver(self: Arc<Self>, target: WebhookSettings, event: Event) {
        let body = serde_json::to_vec(&event).expect("events serialize");
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=target.max_attempts.max(1) {
            let mut request = self
                .http
                .post(&target.url)
                .timeout(Duration::from_millis(target.timeout_ms))
                .header("content-type", "application/json")
                .header("x-liverelay-event", event.kind)
                .header("x-liverelay-delivery", &event.id);
            if let Some(secret) = &target.secret {
                let t = liverelay_types::unix_secs().to_string();
                let signature = sign_hex(secret.as_bytes(), &[t.as_bytes(), b".", &body]);
                request = request.header("x-liverelay-signature", format!("t={t},v1={signature}"));
            }
            let outcome = match request.body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("answered {}", r.status())),
                // reqwest's text names the URL, query and all.
                Err(e) => Err(e.without_url().to_string()),
            };
            match outcome {
                Ok(()) => {
                    self.count(event.kind, "delivered");
                    info!(url = without_query(&target.url), event = event.kind, id = %event.id, attempt, "webhook delivered");
                    return;
                }
                Err(why) if attempt < target.max_attempts => {
                    self.count(event.kind, "retried");
                    warn!(
                        url = without_query(&target.url),
                        event = event.kind,
                        attempt,
                        "webhook delivery failed ({why}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
                Err(why) => {
                    self.count(event.kind, "failed");
                    warn!(url = without_query(&target.url), event = event.kind, id = %event.id, attempt, "webhook given up: {why}");
                    return;
                }
            }
        }
    }
}

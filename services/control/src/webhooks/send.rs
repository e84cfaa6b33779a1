//! Delivering one event to the platform endpoints that want it: signed
//! (`X-Liverelay-Signature: t=<unix>,v1=<hex>`, the HMAC-SHA256 of `<t>.<body>` with the
//! endpoint's secret), retried with exponential backoff, given up after `max_attempts` (logged
//! and counted).

use std::time::Duration;

use liverelay_auth::sign_hex;
use liverelay_config::WebhookSettings;
use liverelay_config::redact::without_query;
use liverelay_metrics::OutcomeLabel;
use tracing::{info, warn};

use super::Event;
use crate::metrics::WebhookMetrics;

pub(super) struct Sender {
    targets: Vec<WebhookSettings>,
    http: reqwest::Client,
    metrics: WebhookMetrics,
}

impl Sender {
    pub(super) fn new(
        targets: Vec<WebhookSettings>,
        metrics: WebhookMetrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            targets,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            metrics,
        })
    }

    /// Delivers to every endpoint that wants this event type, at once; returns when each has
    /// taken it or been given up.
    pub(super) async fn deliver(&self, event: &Event) {
        let wanted = self
            .targets
            .iter()
            .filter(|t| t.events.is_empty() || t.events.contains(&event.kind));
        futures::future::join_all(wanted.map(|target| self.deliver_to(target, event))).await;
    }

    pub(super) fn count(&self, event: &str, result: &'static str) {
        self.metrics
            .deliveries
            .get_or_create(&OutcomeLabel {
                action: kind_label(event),
                result,
            })
            .inc();
    }

    async fn deliver_to(&self, target: &WebhookSettings, event: &Event) {
        let body = serde_json::to_vec(event).expect("events serialize");
        let kind = event.kind.as_str();
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=target.max_attempts.max(1) {
            let mut request = self
                .http
                .post(&target.url)
                .timeout(Duration::from_millis(target.timeout_ms))
                .header("content-type", "application/json")
                .header("x-liverelay-event", kind)
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
                    self.count(kind, "delivered");
                    info!(url = without_query(&target.url), event = kind, id = %event.id, attempt, "webhook delivered");
                    return;
                }
                Err(why) if attempt < target.max_attempts => {
                    self.count(kind, "retried");
                    warn!(
                        url = without_query(&target.url),
                        event = kind,
                        attempt,
                        "webhook delivery failed ({why}); retrying in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
                Err(why) => {
                    self.count(kind, "failed");
                    warn!(url = without_query(&target.url), event = kind, id = %event.id, attempt, "webhook given up: {why}");
                    return;
                }
            }
        }
    }
}

/// The metric label of an event type: the known ones, so a malformed queue entry cannot add
/// series.
fn kind_label(kind: &str) -> &'static str {
    [
        "stream.started",
        "stream.ended",
        "key.revoked",
        "key.rotated",
    ]
    .into_iter()
    .find(|k| *k == kind)
    .unwrap_or("other")
}

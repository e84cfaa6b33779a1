//! Control's own metrics: webhook deliveries. (Its answers to stream-key checks count in
//! [`AuthMetrics`](liverelay_auth::AuthMetrics), beside the pods' own decisions.)

use liverelay_metrics::{OutcomeLabel, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    /// JSON event webhook deliveries by event type and result (delivered, retried, failed).
    pub deliveries: Family<OutcomeLabel, Counter>,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_webhook_deliveries",
            "JSON event webhook delivery attempts by event and result",
            m.deliveries.clone(),
        );
        m
    }
}

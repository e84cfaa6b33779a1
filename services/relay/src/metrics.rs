//! The relay server's metrics: subscriptions an ingest is serving.

use liverelay_metrics::Registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct RelayMetrics {
    /// Relay subscriptions an ingest is serving.
    pub subscriptions: Gauge,
    /// Frames not sent because they were larger than the subscriber accepts.
    pub frames_over_limit: Counter,
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_relay_subscriptions",
            "Relay subscriptions served by this ingest",
            m.subscriptions.clone(),
        );
        registry.register(
            "liverelay_relay_frames_over_limit",
            "Frames an ingest did not relay because they exceeded the subscriber's max_payload",
            m.frames_over_limit.clone(),
        );
        m
    }
}

//! The edge upstreams' metrics: reconnects and the relay hop's latency.

use liverelay_metrics::{ReasonLabel, Registry, latency_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    /// Edge upstream reconnects, by reason.
    pub reconnects: Family<ReasonLabel, Counter>,
    /// Ingest receive to edge receive of a frame.
    pub hop_latency: Histogram,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        Self {
            reconnects: Family::default(),
            hop_latency: latency_histogram(),
        }
    }
}

impl UpstreamMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_relay_reconnects",
            "Edge upstream reconnects by reason",
            m.reconnects.clone(),
        );
        registry.register(
            "liverelay_relay_hop_latency_seconds",
            "Time from a frame's arrival at the ingest to its arrival at the edge",
            m.hop_latency.clone(),
        );
        m
    }
}

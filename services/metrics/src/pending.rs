//! Families whose crates do not define them yet; each moves to its crate (see the crate
//! docs) and this module goes when the last has.

use std::sync::Arc;

use liverelay_types::Role;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::{MetricsRegistry, ReasonLabel, latency_histogram};

/// The families not yet defined by their crates, registered in a [`MetricsRegistry`] for
/// `role`. Cheap to update (atomics); shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Arc<MetricsRegistry>,
    /// Edge upstream reconnects, by reason.
    pub relay_reconnects: Family<ReasonLabel, Counter>,
    /// Ingest receive to edge receive of a frame.
    pub relay_hop_latency: Histogram,
}

impl Metrics {
    pub fn new(role: Role) -> Self {
        let s = Self {
            registry: Arc::new(MetricsRegistry::new(role)),
            relay_reconnects: Family::default(),
            relay_hop_latency: latency_histogram(),
        };
        s.registry.clone().register(|r| {
            r.register(
                "liverelay_relay_reconnects",
                "Edge upstream reconnects by reason",
                s.relay_reconnects.clone(),
            );
            r.register(
                "liverelay_relay_hop_latency_seconds",
                "Time from a frame's arrival at the ingest to its arrival at the edge",
                s.relay_hop_latency.clone(),
            );
        });
        s
    }

    /// The registry these families are in; crates that own theirs add them here.
    pub fn registry(&self) -> &Arc<MetricsRegistry> {
        &self.registry
    }
}

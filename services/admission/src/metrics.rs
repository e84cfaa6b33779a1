//! Admission's metrics: publish and play sessions started, by kind.

use liverelay_metrics::{KindLabel, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct AdmissionMetrics {
    /// Publish and play sessions started, by kind.
    pub sessions: Family<KindLabel, Counter>,
}

impl AdmissionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_sessions",
            "Publish and play sessions started",
            m.sessions.clone(),
        );
        m
    }
}

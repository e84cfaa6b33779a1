//! The stream registry's metrics: lease renewals and losses.

use liverelay_metrics::Registry;
use prometheus_client::metrics::counter::Counter;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct LeaseMetrics {
    pub renewals: Counter,
    /// Leases lost to another owner (or not renewed in time).
    pub losses: Counter,
}

impl LeaseMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_lease_renewals",
            "Stream lease renewals",
            m.renewals.clone(),
        );
        registry.register(
            "liverelay_lease_losses",
            "Stream leases lost to another owner",
            m.losses.clone(),
        );
        m
    }
}

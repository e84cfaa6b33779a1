//! Static relays' metrics, by relay id: attempts and how they ended, the current state, bytes
//! moved.

use liverelay_metrics::Registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A static relay (its id from the config) and why an attempt ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayReasonLabel {
    pub relay: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayStateLabel {
    pub relay: String,
    pub state: &'static str,
}

/// `in` (read from the peer) or `out` (written to it).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayDirectionLabel {
    pub relay: String,
    pub direction: &'static str,
}

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct StaticRelayMetrics {
    /// Connection attempts, by how they ended.
    pub attempts: Family<RelayReasonLabel, Counter>,
    /// 1 for a relay's current state on this pod, 0 for the others.
    pub state: Family<RelayStateLabel, Gauge>,
    pub bytes: Family<RelayDirectionLabel, Counter>,
}

impl StaticRelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_static_relay_attempts",
            "Static pull/push relay connection attempts by how they ended",
            m.attempts.clone(),
        );
        registry.register(
            "liverelay_static_relay_state",
            "Static relay state on this pod (1 for the current one)",
            m.state.clone(),
        );
        registry.register(
            "liverelay_static_relay_bytes",
            "Bytes a static relay read from (in) or wrote to (out) its peer",
            m.bytes.clone(),
        );
        m
    }
}

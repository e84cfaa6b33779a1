//! Families whose crates do not define them yet; each moves to its crate (see the crate
//! docs) and this module goes when the last has.

use std::sync::Arc;

use liverelay_types::Role;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::{KindLabel, MetricsRegistry, OutcomeLabel, ReasonLabel, latency_histogram};

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

/// The families not yet defined by their crates, registered in a [`MetricsRegistry`] for
/// `role`. Cheap to update (atomics); shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Arc<MetricsRegistry>,
    /// RTMP connections accepted, and refused at the connection limit.
    pub connections: Family<KindLabel, Counter>,
    pub connections_open: Gauge,
    /// Publish and play sessions started, by kind.
    pub sessions: Family<KindLabel, Counter>,
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Edge upstream reconnects, by reason.
    pub relay_reconnects: Family<ReasonLabel, Counter>,
    /// Ingest receive to edge receive of a frame.
    pub relay_hop_latency: Histogram,
    /// Static relay connection attempts, by how they ended.
    pub static_relay_attempts: Family<RelayReasonLabel, Counter>,
    /// 1 for a static relay's current state on this pod, 0 for the others.
    pub static_relay_state: Family<RelayStateLabel, Gauge>,
    pub static_relay_bytes: Family<RelayDirectionLabel, Counter>,
    /// Access decisions by action (connect, publish, play) and result (allow, deny, error).
    pub auth_decisions: Family<OutcomeLabel, Counter>,
    /// nginx-rtmp style callbacks by call and result (allow, redirect, deny, error).
    pub notify_calls: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new(role: Role) -> Self {
        let s = Self {
            registry: Arc::new(MetricsRegistry::new(role)),
            connections: Family::default(),
            connections_open: Gauge::default(),
            sessions: Family::default(),
            handshake_failures: Family::default(),
            relay_reconnects: Family::default(),
            relay_hop_latency: latency_histogram(),
            static_relay_attempts: Family::default(),
            static_relay_state: Family::default(),
            static_relay_bytes: Family::default(),
            auth_decisions: Family::default(),
            notify_calls: Family::default(),
        };
        s.registry.clone().register(|r| {
            r.register(
                "liverelay_connections",
                "RTMP connections by kind (accepted, refused)",
                s.connections.clone(),
            );
            r.register(
                "liverelay_connections_open",
                "RTMP connections open now",
                s.connections_open.clone(),
            );
            r.register(
                "liverelay_sessions",
                "Publish and play sessions started",
                s.sessions.clone(),
            );
            r.register(
                "liverelay_handshake_failures",
                "RTMP handshakes that failed, by reason",
                s.handshake_failures.clone(),
            );
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
            r.register(
                "liverelay_static_relay_attempts",
                "Static pull/push relay connection attempts by how they ended",
                s.static_relay_attempts.clone(),
            );
            r.register(
                "liverelay_static_relay_state",
                "Static relay state on this pod (1 for the current one)",
                s.static_relay_state.clone(),
            );
            r.register(
                "liverelay_static_relay_bytes",
                "Bytes a static relay read from (in) or wrote to (out) its peer",
                s.static_relay_bytes.clone(),
            );
            r.register(
                "liverelay_auth_decisions",
                "Connect, publish and play decisions by result (allow, deny, error)",
                s.auth_decisions.clone(),
            );
            r.register(
                "liverelay_notify_calls",
                "nginx-rtmp style HTTP callbacks by call and result",
                s.notify_calls.clone(),
            );
        });
        s
    }

    /// The registry these families are in; crates that own theirs add them here.
    pub fn registry(&self) -> &Arc<MetricsRegistry> {
        &self.registry
    }

    /// Adds per-stream and stream-count figures read from `collector` at each scrape.
    pub fn register_hub(&self, collector: liverelay_hub::HubCollector) {
        self.registry.register_collector(Box::new(collector));
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }

    pub fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        self.registry.negotiate(accept)
    }
}

//! The RTMP server's metrics, updated by the listener (connections accepted, refused at the
//! limit, open now) and the connections (failed handshakes, players and the bytes sent to them).

use liverelay_metrics::{KindLabel, ReasonLabel, Registry, ViewerMetrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct RtmpMetrics {
    /// RTMP connections accepted, and refused at the connection limit.
    pub connections: Family<KindLabel, Counter>,
    pub connections_open: Gauge,
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Players the publisher writes to itself now (`rtmp.direct_writes`).
    pub direct_players: Gauge,
    /// RTMP players (`protocol="rtmp"`), registered by the process with the HTTP viewers'.
    pub viewers: ViewerMetrics,
}

impl RtmpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_connections",
            "RTMP connections by kind (accepted, refused)",
            m.connections.clone(),
        );
        registry.register(
            "liverelay_connections_open",
            "RTMP connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "liverelay_handshake_failures",
            "RTMP handshakes that failed, by reason",
            m.handshake_failures.clone(),
        );
        registry.register(
            "liverelay_rtmp_direct_players",
            "RTMP players the stream's publisher writes to itself now: caught up, plain TCP \
             (rtmp.direct_writes); the others are behind, paused, on RTMPS or just started",
            m.direct_players.clone(),
        );
        m
    }
}

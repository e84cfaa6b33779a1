//! The HTTP listeners' metrics, updated by the accept loop: connections served, and refused
//! at `http.max_connections` (the log line for refusals is throttled; this counts each one).

use std::time::Duration;

use axum::http::StatusCode;
use liverelay_metrics::{KindLabel, Registry, ViewerMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HlsRequestLabel {
    /// playlist, init, segment, part, unknown
    pub kind: &'static str,
    pub status: u16,
}

/// `register` adds the family to a process's registry; `default()` counts without exposing
/// anything (unit tests, servers built without one).
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    /// HTTP connections accepted, and refused at the connection limit.
    pub connections: Family<KindLabel, Counter>,
    /// HLS requests by kind and status.
    pub hls_requests: Family<HlsRequestLabel, Counter>,
    /// How long HLS requests took, held ones (blocking reloads, parts about to come) included.
    pub hls_request_seconds: Family<KindLabel, Histogram>,
    /// HLS requests held open right now (blocking reloads, parts about to come).
    pub hls_held: Gauge,
    /// HTTP-FLV and HLS viewers (`protocol="flv"`, `"hls"`), registered by the process with
    /// the RTMP players'.
    pub viewers: ViewerMetrics,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            connections: Family::default(),
            hls_requests: Family::default(),
            // From well under a part to the three target durations a request is held at most.
            hls_request_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 6.0, 12.0,
                ])
            }),
            hls_held: Gauge::default(),
            viewers: ViewerMetrics::default(),
        }
    }
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_http_connections",
            "HTTP connections by kind (accepted, refused)",
            m.connections.clone(),
        );
        registry.register(
            "liverelay_hls_requests",
            "HLS requests by kind (playlist, init, segment, part) and status",
            m.hls_requests.clone(),
        );
        registry.register(
            "liverelay_hls_request_duration_seconds",
            "Time to answer HLS requests by kind, held time included",
            m.hls_request_seconds.clone(),
        );
        registry.register(
            "liverelay_hls_held_requests",
            "HLS requests held open until what they ask for exists",
            m.hls_held.clone(),
        );
        m
    }

    pub(crate) fn hls_request(&self, kind: &'static str, status: StatusCode, took: Duration) {
        let status = status.as_u16();
        self.hls_requests
            .get_or_create(&HlsRequestLabel { kind, status })
            .inc();
        self.hls_request_seconds
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn count(&self, kind: &'static str) {
        self.connections.get_or_create(&KindLabel { kind }).inc();
    }
}

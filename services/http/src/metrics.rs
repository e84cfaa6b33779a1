//! The HTTP listeners' metrics, updated by the accept loop: connections served, and refused
//! at `http.max_connections` (the log line for refusals is throttled; this counts each one).

use liverelay_metrics::{KindLabel, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `register` adds the family to a process's registry; `default()` counts without exposing
/// anything (unit tests, servers built without one).
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    /// HTTP connections accepted, and refused at the connection limit.
    pub connections: Family<KindLabel, Counter>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_http_connections",
            "HTTP connections by kind (accepted, refused)",
            m.connections.clone(),
        );
        m
    }

    pub(crate) fn count(&self, kind: &'static str) {
        self.connections.get_or_create(&KindLabel { kind }).inc();
    }
}

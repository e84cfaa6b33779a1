//! Prometheus metrics (`/metrics` on every role), with the `prometheus-client` crate: the
//! official Rust client of the Prometheus project, maintained, OpenMetrics text output, typed
//! label sets, and collectors that read state at scrape time.
//!
//! Names follow Prometheus conventions: `liverelay_` prefix, base units, `_total` counters.
//! Process-wide families live in [`Metrics`]; per-stream figures are not updated on the media
//! path at all but read from the hub's own counters when scraped ([`HubCollector`]), with at
//! most `max_stream_series` streams labelled (the most watched first) to bound cardinality.

mod hub_collector;

use std::sync::Mutex;

use liverelay_types::Role;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use hub_collector::HubCollector;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

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

/// What was asked (publish, play, connect, a callback's call, an event type) and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub action: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    role: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every process-wide family. Cheap to update (atomics); shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// RTMP connections accepted, and refused at the connection limit.
    pub connections: Family<KindLabel, Counter>,
    pub connections_open: Gauge,
    /// Publish and play sessions started, by kind.
    pub sessions: Family<KindLabel, Counter>,
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Relay subscriptions an ingest is serving.
    pub relay_subscriptions: Gauge,
    /// Edge upstream reconnects, by reason.
    pub relay_reconnects: Family<ReasonLabel, Counter>,
    /// Ingest receive to edge receive of a frame.
    pub relay_hop_latency: Histogram,
    pub redis_op_duration: Family<OpLabel, Histogram>,
    pub redis_errors: Family<OpLabel, Counter>,
    pub lease_renewals: Counter,
    pub lease_losses: Counter,
    /// Static relay connection attempts, by how they ended.
    pub static_relay_attempts: Family<RelayReasonLabel, Counter>,
    /// 1 for a static relay's current state on this pod, 0 for the others.
    pub static_relay_state: Family<RelayStateLabel, Gauge>,
    pub static_relay_bytes: Family<RelayDirectionLabel, Counter>,
    /// Access decisions by action (connect, publish, play) and result (allow, deny, error).
    pub auth_decisions: Family<OutcomeLabel, Counter>,
    /// nginx-rtmp style callbacks by call and result (allow, redirect, deny, error).
    pub notify_calls: Family<OutcomeLabel, Counter>,
    /// JSON event webhook deliveries by event type and result (delivered, retried, failed).
    pub webhook_deliveries: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new(role: Role) -> Self {
        let s = Self {
            registry: Mutex::new(Registry::default()),
            connections: Family::default(),
            connections_open: Gauge::default(),
            sessions: Family::default(),
            handshake_failures: Family::default(),
            relay_subscriptions: Gauge::default(),
            relay_reconnects: Family::default(),
            relay_hop_latency: latency_histogram(),
            redis_op_duration: Family::new_with_constructor(latency_histogram),
            redis_errors: Family::default(),
            lease_renewals: Counter::default(),
            lease_losses: Counter::default(),
            static_relay_attempts: Family::default(),
            static_relay_state: Family::default(),
            static_relay_bytes: Family::default(),
            auth_decisions: Family::default(),
            notify_calls: Family::default(),
            webhook_deliveries: Family::default(),
        };
        {
            let mut r = s.lock();
            let build: Family<BuildLabels, Gauge> = Family::default();
            build
                .get_or_create(&BuildLabels {
                    version: env!("CARGO_PKG_VERSION"),
                    role: role.as_str(),
                })
                .set(1);
            r.register(
                "liverelay_build_info",
                "Build and role of this process",
                build,
            );
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
                "liverelay_relay_subscriptions",
                "Relay subscriptions served by this ingest",
                s.relay_subscriptions.clone(),
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
                "liverelay_redis_operation_duration_seconds",
                "Redis registry operations",
                s.redis_op_duration.clone(),
            );
            r.register(
                "liverelay_redis_errors",
                "Redis registry operations that failed",
                s.redis_errors.clone(),
            );
            r.register(
                "liverelay_lease_renewals",
                "Stream lease renewals",
                s.lease_renewals.clone(),
            );
            r.register(
                "liverelay_lease_losses",
                "Stream leases lost to another owner",
                s.lease_losses.clone(),
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
            r.register(
                "liverelay_webhook_deliveries",
                "JSON event webhook delivery attempts by event and result",
                s.webhook_deliveries.clone(),
            );
        }
        s
    }

    /// Adds per-stream and stream-count figures read from `collector` at each scrape.
    pub fn register_hub(&self, collector: HubCollector) {
        self.lock().register_collector(Box::new(collector));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.lock())
            .expect("writing to a String cannot fail");
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and tools that do not ask for
    /// OpenMetrics (promtool, curl): counters are described under their `_total` sample name
    /// and the OpenMetrics-only `# UNIT`/`# EOF` lines are left out.
    pub fn render_prometheus_text(&self) -> String {
        to_prometheus_text(&self.render())
    }
}

fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            pending_help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(help) = pending_help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.split_once(' '))
                    .map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl Metrics {
    /// Picks the format a scraper asked for with its `Accept` header: (content type, body).
    pub fn negotiate(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.render(),
            )
        } else {
            (
                "text/plain; version=0.0.4; charset=utf-8",
                self.render_prometheus_text(),
            )
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;

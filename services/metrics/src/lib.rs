//! Prometheus metrics (`/metrics` on every role), with the `prometheus-client` crate: the
//! official Rust client of the Prometheus project, maintained, OpenMetrics text output, typed
//! label sets, and collectors that read state at scrape time.
//!
//! Each crate defines its own families next to the code that updates them (the linkerd2-proxy
//! way): a `Clone` struct of families with `register(&mut Registry) -> Self`, whose `Default`
//! counts without being exposed (unit tests). One place per process composes them into a
//! [`MetricsRegistry`], which `/metrics` renders. This crate holds only what they share: the
//! label sets used by several crates, the latency buckets, `liverelay_build_info`, the families
//! several crates update ([`ViewerMetrics`]: viewers by protocol), the registry wrapper and the
//! text encodings. It must never name another crate's families.
//!
//! Names follow Prometheus conventions: `liverelay_` prefix, base units, `_total` counters.

use std::sync::Mutex;

mod viewers;
pub use viewers::{PROTOCOLS, ProtocolLabel, ViewerMetrics, Watching};

use liverelay_types::Role;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
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

/// The buckets of every latency histogram: 0.1 ms .. ~3.3 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The registry one process's `/metrics` serves: `liverelay_build_info` for its role, then
/// whatever the crates register. Shared as `Arc<MetricsRegistry>`.
pub struct MetricsRegistry {
    registry: Mutex<Registry>,
}

impl MetricsRegistry {
    pub fn new(role: Role) -> Self {
        let mut registry = Registry::default();
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                role: role.as_str(),
            })
            .set(1);
        registry.register(
            "liverelay_build_info",
            "Build and role of this process",
            build,
        );
        Self {
            registry: Mutex::new(registry),
        }
    }

    /// Adds a crate's families: `registry.register(RtmpMetrics::register)` returns the
    /// `RtmpMetrics` its code updates.
    pub fn register<T>(&self, families: impl FnOnce(&mut Registry) -> T) -> T {
        families(&mut self.lock())
    }

    /// Adds families read from their source at each scrape (the hub's per-stream figures).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.lock().register_collector(collector);
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

#[cfg(test)]
mod tests;

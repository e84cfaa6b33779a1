//! Every PromQL expression of the shipped Grafana dashboard uses only metrics this code exports,
//! so no panel stays empty because of a renamed or missing metric.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use liverelay_hub::{Hub, HubConfig, StreamKey};
use liverelay_metrics::{
    HubCollector, KindLabel, Metrics, OpLabel, OutcomeLabel, ReasonLabel, RelayDirectionLabel,
    RelayReasonLabel, RelayStateLabel,
};
use liverelay_rtmp::{Media, MediaKind};

const DASHBOARD: &str =
    include_str!("../../../charts/liverelay/dashboards/liverelay-overview.json");

/// Sample names of the classic exposition, with every family populated.
fn exported_names() -> BTreeSet<String> {
    let hub = Hub::new(HubConfig::default());
    let metrics = Arc::new(Metrics::new("test"));
    metrics.register_hub(HubCollector::new(hub.clone(), 10));
    let mut publisher = hub.publish(StreamKey::new("live", "x")).unwrap();
    publisher.push(Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(&[0x17, 1, 0, 0, 0]),
    });
    metrics
        .connections
        .get_or_create(&KindLabel { kind: "accepted" })
        .inc();
    metrics
        .sessions
        .get_or_create(&KindLabel { kind: "play" })
        .inc();
    metrics
        .handshake_failures
        .get_or_create(&ReasonLabel { reason: "timeout" })
        .inc();
    metrics
        .relay_reconnects
        .get_or_create(&ReasonLabel { reason: "broken" })
        .inc();
    metrics
        .redis_op_duration
        .get_or_create(&OpLabel { op: "claim" })
        .observe(0.001);
    metrics
        .redis_errors
        .get_or_create(&OpLabel { op: "claim" })
        .inc();
    let outcome = OutcomeLabel {
        action: "publish_key",
        result: "allow",
    };
    for family in [
        &metrics.auth_decisions,
        &metrics.notify_calls,
        &metrics.webhook_deliveries,
    ] {
        family.get_or_create(&outcome).inc();
    }
    let relay = || "pull:live/x:1".to_string();
    metrics
        .static_relay_attempts
        .get_or_create(&RelayReasonLabel {
            relay: relay(),
            reason: "refused",
        })
        .inc();
    metrics
        .static_relay_state
        .get_or_create(&RelayStateLabel {
            relay: relay(),
            state: "live",
        })
        .set(1);
    metrics
        .static_relay_bytes
        .get_or_create(&RelayDirectionLabel {
            relay: relay(),
            direction: "in",
        })
        .inc();
    metrics
        .render_prometheus_text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Metric names in an expression: `liverelay_` identifiers (label names never start so).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("liverelay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_dashboard_query_uses_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("dashboard is valid JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    expressions(&dashboard["templating"], &mut exprs);
    assert!(
        exprs.len() >= 15,
        "the dashboard has its panels: {}",
        exprs.len()
    );
    let exported = exported_names();
    let mut missing = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "expression without a liverelay metric: {expr}"
        );
        missing.extend(
            names
                .into_iter()
                .filter(|n| !exported.contains(n))
                .map(|n| format!("{n} (in {expr})")),
        );
    }
    assert!(
        missing.is_empty(),
        "not exported:\n{}\nexported: {exported:?}",
        missing.join("\n")
    );
    // The template's label_values() query is a plain metric name too.
    assert!(DASHBOARD.contains("label_values(liverelay_build_info, job)"));
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(liverelay_relay_hop_latency_seconds_bucket{job=~\"$job\"}[5m])))"
        ),
        ["liverelay_relay_hop_latency_seconds_bucket"]
    );
}

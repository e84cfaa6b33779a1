use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::*;

#[test]
fn exposition_has_build_info_and_registered_families_in_both_formats() {
    let metrics = MetricsRegistry::new(Role::Standalone);
    let connections = metrics.register(|r| {
        let family: Family<KindLabel, Counter> = Family::default();
        r.register(
            "liverelay_connections",
            "RTMP connections by kind (accepted, refused)",
            family.clone(),
        );
        family
    });
    let durations = metrics.register(|r| {
        let family: Family<KindLabel, Histogram> = Family::new_with_constructor(latency_histogram);
        r.register(
            "liverelay_example_duration_seconds",
            "An example",
            family.clone(),
        );
        family
    });
    connections
        .get_or_create(&KindLabel { kind: "accepted" })
        .inc();
    durations
        .get_or_create(&KindLabel { kind: "claim" })
        .observe(0.002);

    let text = metrics.render();
    for line in [
        "liverelay_build_info{version=\"0.1.0\",role=\"standalone\"} 1",
        "liverelay_connections_total{kind=\"accepted\"} 1",
        "liverelay_example_duration_seconds_count{kind=\"claim\"} 1",
        "liverelay_example_duration_seconds_bucket{le=\"0.0032\",kind=\"claim\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    let classic = metrics.render_prometheus_text();
    assert!(classic.contains("# TYPE liverelay_connections_total counter\nliverelay_connections_total{kind=\"accepted\"} 1"));
    assert!(classic.contains(
        "# HELP liverelay_connections_total RTMP connections by kind (accepted, refused)."
    ));
    assert!(classic.contains("# TYPE liverelay_build_info gauge"));
    assert!(!classic.contains("# EOF"));
    assert_eq!(
        metrics
            .negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            ))
            .1,
        text
    );
    assert_eq!(metrics.negotiate(None).1, classic);
}

use bytes::Bytes;
use liverelay_hub::{Hub, HubConfig};
use liverelay_rtmp::{Media, MediaKind};
use liverelay_types::StreamId;

use super::*;

#[test]
fn exposition_has_process_and_stream_families() {
    let hub = Hub::new(HubConfig::default());
    let metrics = Metrics::new(liverelay_types::Role::Standalone);
    metrics.register_hub(HubCollector::new(hub.clone(), 1));
    let mut publisher = hub.publish(StreamId::new("live", "a")).unwrap();
    let _viewer = hub.play(StreamId::new("live", "a")).unwrap();
    let _waiting = hub.play(StreamId::new("live", "b")).unwrap();
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
        .redis_op_duration
        .get_or_create(&OpLabel { op: "claim" })
        .observe(0.002);

    let text = metrics.render();
    for line in [
        "liverelay_build_info{version=\"0.1.0\",role=\"standalone\"} 1",
        "liverelay_connections_total{kind=\"accepted\"} 1",
        "liverelay_streams{state=\"live\"} 1",
        "liverelay_streams{state=\"idle\"} 1",
        "liverelay_publishers 1",
        "liverelay_viewers 2",
        "liverelay_stream_series_omitted 1",
        "liverelay_stream_viewers{app=\"live\",stream=\"a\"} 1",
        "liverelay_stream_ingress_bytes_total{app=\"live\",stream=\"a\"} 5",
        "liverelay_redis_operation_duration_seconds_count{op=\"claim\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("stream=\"b\""),
        "the cap keeps the most watched stream only"
    );

    let classic = metrics.render_prometheus_text();
    assert!(classic.contains("# TYPE liverelay_connections_total counter\nliverelay_connections_total{kind=\"accepted\"} 1"));
    assert!(classic.contains("# HELP liverelay_lease_renewals_total Stream lease renewals"));
    assert!(classic.contains("# TYPE liverelay_publishers gauge"));
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

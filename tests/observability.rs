//! Metrics as operators see them: `/metrics` of each role checked by the real `promtool`
//! while a stream is live, with the values a stream should show, and a real Prometheus
//! scraping a standalone server.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::rtmp_client::RtmpClient;
use support::*;

/// `promtool check metrics` on a server's `/metrics` (read on stdin, as in its docs).
fn promtool_check(server: &Server) {
    let (status, body) = server.http_get("/metrics");
    assert_eq!(status, 200);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (make test installs the prometheus package)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {problems}\n---\n{body}"
    );
}

fn wait_metric(server: &Server, series: &str, want: impl Fn(f64) -> bool, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = server.metric(series).filter(|v| want(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {:?}",
            server.metric(series)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn standalone_metrics_pass_promtool_and_follow_a_stream() {
    let server = Server::start();
    let dir = TempDir::new("metrics-standalone");
    let _publisher = looping_publisher(&server.url("live/obs"), &dir.path("pub.log"));
    server.wait_live("live", "obs", Duration::from_secs(10));
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut v = RtmpClient::connect(server.rtmp, "live").await;
        v.play("obs").await;
        viewers.push(v);
    }
    // Not RTMP: counted as a failed handshake.
    let mut junk = tokio::net::TcpStream::connect(server.rtmp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();

    let series = |name: &str| format!("{name}{{app=\"live\",stream=\"obs\"}}");
    wait_metric(
        &server,
        &series("liverelay_stream_viewers"),
        |v| v == 2.0,
        Duration::from_secs(5),
    );
    wait_metric(
        &server,
        "liverelay_handshake_failures_total{reason=\"bad_version\"}",
        |v| v == 1.0,
        Duration::from_secs(5),
    );
    let ingress = server
        .metric(&series("liverelay_stream_ingress_bytes_total"))
        .unwrap();
    for v in &mut viewers {
        // Let the viewers drain what was sent to them.
        let _ = v.next_event(Duration::from_millis(10)).await;
    }
    let egress = server
        .metric(&series("liverelay_stream_egress_bytes_total"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for v in &mut viewers {
        while v.next_event(Duration::from_millis(50)).await.is_some() {}
    }
    assert!(
        server
            .metric(&series("liverelay_stream_ingress_bytes_total"))
            .unwrap()
            > ingress,
        "ingress grows"
    );
    assert!(
        server
            .metric(&series("liverelay_stream_egress_bytes_total"))
            .unwrap()
            > egress,
        "egress grows"
    );
    let fps = server
        .metric(&series("liverelay_stream_video_frames_per_second"))
        .unwrap();
    assert!((fps - SAMPLE_FPS as f64).abs() < 2.0, "frame rate {fps}");
    assert_eq!(
        server.metric(&series("liverelay_stream_keyframe_interval_seconds")),
        Some(2.0)
    );
    assert!(
        server
            .metric(&series("liverelay_stream_bitrate_bytes_per_second"))
            .unwrap()
            > 10_000.0
    );
    assert!(
        server
            .metric(&series("liverelay_stream_gop_cache_bytes"))
            .unwrap()
            > 0.0
    );
    assert_eq!(
        server.metric("liverelay_sessions_total{kind=\"play\"}"),
        Some(2.0)
    );
    assert_eq!(server.metric("liverelay_publishers"), Some(1.0));
    assert_eq!(
        server.metric("liverelay_build_info{version=\"0.1.0\",role=\"standalone\"}"),
        Some(1.0)
    );
    promtool_check(&server);
}

#[tokio::test]
async fn cluster_metrics_pass_promtool_and_show_the_relay() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [("LIVERELAY_CLUSTER_TOKEN", "metrics-token")];
    let ingest = Server::start_role("ingest", &["--redis-url", &url], &env);
    let edge = Server::start_role("edge", &["--redis-url", &url], &env);
    let dir = TempDir::new("metrics-cluster");
    let _publisher = looping_publisher(&ingest.url("live/rel"), &dir.path("pub.log"));
    ingest.wait_live("live", "rel", Duration::from_secs(10));
    let mut viewer = RtmpClient::connect(edge.rtmp, "live").await;
    viewer.play("rel").await;
    wait_metric(
        &ingest,
        "liverelay_relay_subscriptions",
        |v| v == 1.0,
        Duration::from_secs(5),
    );
    wait_metric(
        &edge,
        "liverelay_relay_hop_latency_seconds_count",
        |v| v > 10.0,
        Duration::from_secs(5),
    );
    // On loopback the hop is well under 50 ms for most frames.
    let fast = edge
        .metric("liverelay_relay_hop_latency_seconds_bucket{le=\"0.0512\"}")
        .unwrap();
    let all = edge
        .metric("liverelay_relay_hop_latency_seconds_count")
        .unwrap();
    assert!(fast / all > 0.9, "{fast} of {all} hops under 51 ms");
    assert!(
        ingest
            .metric("liverelay_redis_operation_duration_seconds_count{op=\"claim\"}")
            .unwrap()
            >= 1.0
    );
    assert!(
        edge.metric("liverelay_redis_operation_duration_seconds_count{op=\"lookup\"}")
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        edge.metric("liverelay_stream_viewers{app=\"live\",stream=\"rel\"}"),
        Some(1.0)
    );
    assert_eq!(
        edge.metric("liverelay_build_info{version=\"0.1.0\",role=\"edge\"}"),
        Some(1.0)
    );
    promtool_check(&ingest);
    promtool_check(&edge);
    drop(viewer);
}

/// A real Prometheus scrapes a running standalone and answers a query for a stream's viewers.
#[tokio::test]
async fn prometheus_scrapes_standalone() {
    let server = Server::start();
    let dir = TempDir::new("prometheus");
    let _publisher = looping_publisher(&server.url("live/prom"), &dir.path("pub.log"));
    server.wait_live("live", "prom", Duration::from_secs(10));
    let mut viewer = RtmpClient::connect(server.rtmp, "live").await;
    viewer.play("prom").await;

    let config = dir.path("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: liverelay\n    static_configs:\n      - targets: ['{}']\n",
            server.http
        ),
    )
    .unwrap();
    let web: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = spawn_logged(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}")),
        &dir.path("prometheus.log"),
    );
    let query =
        "/api/v1/query?query=liverelay_stream_viewers%7Bapp%3D%22live%22%2Cstream%3D%22prom%22%7D";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Prometheus may not listen yet.
        let answer = try_http_request(web, "GET", query, None, "")
            .map(|(_, body)| body)
            .unwrap_or_default();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&answer)
            && json["data"]["result"][0]["value"][1] == "1"
        {
            assert_eq!(json["data"]["result"][0]["metric"]["job"], "liverelay");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered 1 viewer: {answer}\n{}",
            std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default()
        );
        let _ = viewer.next_event(Duration::from_millis(200)).await;
    }
}

mod otlp {
    //! A minimal OTLP trace receiver: what a collector would get.

    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[derive(Debug, Clone)]
    pub struct SpanSeen {
        pub service: String,
        pub name: String,
        pub trace_id: Vec<u8>,
        pub span_id: Vec<u8>,
        pub parent_span_id: Vec<u8>,
    }

    #[derive(Clone, Default)]
    pub struct Receiver {
        pub spans: Arc<Mutex<Vec<SpanSeen>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut spans = self.spans.lock().unwrap();
            for rs in request.into_inner().resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        Value::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(SpanSeen {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    /// Serves the receiver on a free port; returns its endpoint URL.
    pub async fn start(receiver: Receiver) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }
}

/// Environment of a cluster process that exports its spans to `endpoint` as `service`, soon.
fn traced<'a>(endpoint: &'a str, service: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("LIVERELAY_CLUSTER_TOKEN", "trace-token"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// One viewer's play on an edge shows up as one trace across pods: the edge's play span, the
/// upstream it started, and the ingest's relay subscription (trace context carried on gRPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_is_one_trace_across_edge_and_ingest() {
    let receiver = otlp::Receiver::default();
    let endpoint = otlp::start(receiver.clone()).await;
    let redis = RedisServer::start();
    let url = redis.url();
    let env = |service| {
        let linger = [("LIVERELAY_CLUSTER__UPSTREAM_LINGER_SECS", "1")];
        [&traced(&endpoint, service)[..], &linger].concat()
    };
    let ingest = Server::start_role("ingest", &["--redis-url", &url], &env("test-ingest"));
    let edge = Server::start_role("edge", &["--redis-url", &url], &env("test-edge"));
    let dir = TempDir::new("traces");
    let _publisher = looping_publisher(&ingest.url("live/traced"), &dir.path("pub.log"));
    ingest.wait_live("live", "traced", Duration::from_secs(10));
    let mut viewer = RtmpClient::connect(edge.rtmp, "live").await;
    viewer.play("traced").await;
    for _ in 0..10 {
        viewer
            .next_event(Duration::from_secs(2))
            .await
            .expect("media flows");
    }
    drop(viewer);

    // The play ends now; the upstream 1 s later, and with it the ingest's subscription.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (play, upstream, relay) = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let find = |service: &str, name: &str| {
            spans
                .iter()
                .find(|s| s.service == service && s.name == name)
                .cloned()
        };
        if let (Some(p), Some(u), Some(r)) = (
            find("test-edge", "play"),
            find("test-edge", "upstream"),
            find("test-ingest", "relay"),
        ) {
            break (p, u, r);
        }
        assert!(
            Instant::now() < deadline,
            "spans received so far: {:?}",
            spans
                .iter()
                .map(|s| format!("{}:{}", s.service, s.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        upstream.trace_id, play.trace_id,
        "the upstream joins the play's trace"
    );
    assert_eq!(upstream.parent_span_id, play.span_id);
    assert_eq!(
        relay.trace_id, play.trace_id,
        "the ingest's subscription joins it across pods"
    );
    assert_eq!(relay.parent_span_id, upstream.span_id);
}

/// A keyed publish's authorization is one trace across ingest and control: control's span is a
/// child of the ingest's (trace context on the gRPC call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_authorization_is_one_trace_across_ingest_and_control() {
    let receiver = otlp::Receiver::default();
    let endpoint = otlp::start(receiver.clone()).await;
    let redis = RedisServer::start();
    let url = redis.url();
    let env = |service| {
        let admin = [("LIVERELAY_ADMIN_TOKEN", "trace-admin")];
        [&traced(&endpoint, service)[..], &admin].concat()
    };
    let control = Server::start_role("control", &["--redis-url", &url], &env("test-control"));
    let control_url = format!("http://{}", control.grpc);
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &url, "--control-url", &control_url],
        &env("test-ingest"),
    );
    let (status, body) = http_request(
        control.http,
        "POST",
        "/v1/keys",
        Some("trace-admin"),
        r#"{"app":"live","stream":"keyed"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let key: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut publisher = RtmpClient::connect(ingest.rtmp, "live").await;
    let (_, _, code) = publisher.publish(key["key"].as_str().unwrap()).await;
    assert_eq!(code, "NetStream.Publish.Start");

    let deadline = Instant::now() + Duration::from_secs(15);
    let (asked, answered) = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let find = |service: &str| {
            spans
                .iter()
                .find(|s| s.service == service && s.name == "authorize_publish")
                .cloned()
        };
        if let (Some(a), Some(b)) = (find("test-ingest"), find("test-control")) {
            break (a, b);
        }
        assert!(
            Instant::now() < deadline,
            "authorization spans never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answered.trace_id, asked.trace_id, "one trace across pods");
    assert_eq!(answered.parent_span_id, asked.span_id);
}

//! Metrics as operators see them: `/metrics` of each role checked by the real `promtool`
//! while a stream is live, with the values a stream should show, a real Prometheus scraping a
//! standalone server, and the shipped Grafana dashboard's queries checked by `promtool` and
//! against what running processes expose.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::rtmp::TestClient;
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
        let mut v = TestClient::connect(server.rtmp, "live").await;
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
    // The looped sample's second pass starts where its audio ended (6.015 s, a whole AAC frame
    // past the video), so the keyframe interval across the loop is 2.015 s.
    let keyframe_interval = server
        .metric(&series("liverelay_stream_keyframe_interval_seconds"))
        .unwrap();
    assert!(
        (keyframe_interval - 2.0).abs() < 0.05,
        "keyframe interval {keyframe_interval}"
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

/// `curl` fetches `url` as the player `agent`: (status, body).
fn curl_as(agent: &str, url: &str) -> (u16, Vec<u8>) {
    let got = support::curl::get(&["-A", agent], url);
    (got.status, got.body)
}

/// The `URI="..."` of the first playlist line starting with `tag`.
fn uri_of<'a>(playlist: &'a str, tag: &str) -> &'a str {
    let line = playlist
        .lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("no {tag} in\n{playlist}"));
    line.split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
}

/// Viewers and bytes out by protocol, as players make them: an RTMP player, ffmpeg reading
/// HTTP-FLV, and two HLS clients (curl with two User-Agents: two sessions however many
/// requests each makes; a refused request is nobody's). The HLS bytes are exactly what the
/// clients received; a player that leaves is no longer counted.
#[tokio::test]
async fn viewers_and_bytes_out_by_protocol() {
    let server = Server::start();
    let dir = TempDir::new("metrics-protocols");
    let _publisher = looping_publisher(&server.url("live/proto"), &dir.path("pub.log"));
    server.wait_live("live", "proto", Duration::from_secs(10));
    let mut rtmp = TestClient::connect(server.rtmp, "live").await;
    rtmp.play("proto").await;
    let flv_url = format!("http://{}/flv/live/proto.flv", server.http);
    let mut flv = ffmpeg_record(&flv_url, &dir.path("flv.flv"), &dir.path("flv.log"));

    let viewers =
        |protocol: &str| format!("liverelay_viewers_by_protocol{{protocol=\"{protocol}\"}}");
    let bytes =
        |protocol: &str| format!("liverelay_viewer_egress_bytes_total{{protocol=\"{protocol}\"}}");
    let hls = format!("http://{}/hls/live/proto/", server.http);
    let (status, playlist) = curl_as("player-a", &format!("{hls}index.m3u8"));
    assert_eq!(status, 200);
    let playlist = String::from_utf8(playlist).unwrap();
    let mut hls_bytes = playlist.len();
    for (agent, tag) in [("player-a", "#EXT-X-MAP:"), ("player-b", "#EXT-X-PART:")] {
        let (status, body) = curl_as(agent, &format!("{hls}{}", uri_of(&playlist, tag)));
        assert_eq!(status, 200, "{tag}");
        assert!(!body.is_empty());
        hls_bytes += body.len();
    }
    let (status, _) = curl_as(
        "player-c",
        &format!("http://{}/hls/live/nobody/index.m3u8", server.http),
    );
    assert_eq!(status, 404);

    let limit = Duration::from_secs(10);
    wait_metric(&server, &viewers("rtmp"), |v| v == 1.0, limit);
    wait_metric(&server, &viewers("flv"), |v| v == 1.0, limit);
    wait_metric(&server, &viewers("hls"), |v| v == 2.0, limit);
    wait_metric(&server, &bytes("hls"), |v| v == hls_bytes as f64, limit);
    for protocol in ["rtmp", "flv"] {
        // Growing: the stream flows to both.
        let before = wait_metric(&server, &bytes(protocol), |v| v > 0.0, limit);
        wait_metric(&server, &bytes(protocol), |v| v > before, limit);
    }
    promtool_check(&server);

    flv.kill();
    drop(rtmp);
    wait_metric(&server, &viewers("flv"), |v| v == 0.0, limit);
    wait_metric(&server, &viewers("rtmp"), |v| v == 0.0, limit);
    assert_eq!(
        server.metric(&viewers("hls")),
        Some(2.0),
        "within their window"
    );
}

/// An edge's load report (what control routes new viewers by) counts its HTTP viewers: an
/// HTTP-FLV reader, and HLS clients as sessions (two here), not the stream's packaging, which
/// is one hub viewer however many watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_load_report_counts_http_viewers() {
    let redis = RedisServer::start();
    let node = |role: &str, pod: &str| {
        let env = [
            ("LIVERELAY_CLUSTER_TOKEN", "load-token"),
            ("LIVERELAY_CLUSTER__REPORT_INTERVAL_SECS", "1"),
            ("POD_NAME", pod),
        ];
        Server::start_role(role, &["--redis-url", &redis.url()], &env)
    };
    let ingest = node("ingest", "ingest-a");
    let edge = node("edge", "edge-a");
    let dir = TempDir::new("load-http");
    let _publisher = looping_publisher(&ingest.url("live/load"), &dir.path("pub.log"));
    ingest.wait_live("live", "load", Duration::from_secs(10));
    let flv_url = format!("http://{}/flv/live/load.flv", edge.http);
    let _flv = ffmpeg_record(&flv_url, &dir.path("flv.flv"), &dir.path("flv.log"));
    let playlist = format!("http://{}/hls/live/load/index.m3u8", edge.http);
    for agent in ["player-a", "player-b"] {
        // The first request starts the edge's pull and waits for the first part.
        let (status, _) = curl_as(agent, &playlist);
        assert_eq!(status, 200, "{agent}; edge log:\n{}", edge.log());
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let report: Option<serde_json::Value> = redis
            .cli(&["GET", "liverelay:node:{edge-a}"])
            .and_then(|r| serde_json::from_str(&r).ok());
        let counted = report.as_ref().map(|r| {
            (
                r["viewers"].clone(),
                r["streams"]["live/load"]["viewers"].clone(),
            )
        });
        if counted == Some((3.into(), 3.into())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edge's report never counted 1 HTTP-FLV and 2 HLS viewers: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
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
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
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
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
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
    let key = create_stream_key(control.http, "trace-admin", "live", "keyed");
    let mut publisher = TestClient::connect(ingest.rtmp, "live").await;
    let (_, _, code) = publisher.publish(&key).await;
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

/// Label names and values of every sample the processes expose, by sample name (a histogram's
/// `_bucket`, `_sum` and `_count` apart), read from their `/metrics`.
#[derive(Default, Debug)]
struct Exposed(BTreeMap<String, BTreeMap<String, BTreeSet<String>>>);

impl Exposed {
    fn scrape(&mut self, server: &Server) {
        let (status, body) = server.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = self.0.entry(line[..end].to_string()).or_default();
            if line[end..].starts_with('{') {
                let (matchers, _) = label_matchers(&line[end + 1..]);
                for (name, _, value) in matchers {
                    labels.entry(name).or_default().insert(value);
                }
            }
        }
    }

    fn labels(&self, metric: &str) -> &BTreeMap<String, BTreeSet<String>> {
        &self.0[metric]
    }
}

/// Labels Prometheus adds to every scraped sample.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// A label matcher: name, operator (`=`, `!=`, `=~`, `!~`), value.
type Matcher = (String, String, String);

/// `name op "value"` pairs up to the closing `}` (of a sample or of a PromQL selector, the
/// text after its `{`), and the text after the `}`.
fn label_matchers(text: &str) -> (Vec<Matcher>, &str) {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (out, after);
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| panic!("unterminated labels: {text}"));
        let name = rest[..name_end].to_string();
        rest = rest[name_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .unwrap_or_else(|| panic!("no matcher after {name:?} in {text}"));
        rest = rest[op.len()..].trim_start();
        let body = rest
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("no quoted value for {name:?} in {text}"));
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated value of {name:?} in {text}"),
            }
        };
        out.push((name, op.to_string(), value));
        rest = body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

/// The `liverelay_*` selectors of a PromQL expression: metric name and label matchers.
fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("liverelay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        rest = &tail[end..];
        let mut matchers = Vec::new();
        if let Some(inside) = rest.trim_start().strip_prefix('{') {
            (matchers, rest) = label_matchers(inside);
        }
        out.push((name, matchers));
    }
    out
}

/// The labels of `by (...)` clauses; panics on `without`, which this check does not follow.
fn grouping_labels(expr: &str) -> Vec<String> {
    assert!(
        !expr.contains("without"),
        "teach this check `without`: {expr}"
    );
    expr.match_indices("by")
        .filter(|(i, _)| {
            let before = expr[..*i].chars().next_back();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && expr[i + 2..].trim_start().starts_with('(')
        })
        .flat_map(|(i, _)| {
            let open = i + 2 + expr[i + 2..].find('(').unwrap();
            let close = open + expr[open..].find(')').unwrap();
            expr[open + 1..close]
                .split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The labels a panel's series carry: a grouping's (`le` is consumed by histogram_quantile),
/// none after an aggregation without `by`, else every label of the metric.
fn result_labels(expr: &str, exposed: &Exposed) -> BTreeSet<String> {
    const AGGREGATIONS: [&str; 8] = [
        "sum", "count", "max", "min", "avg", "topk", "bottomk", "group",
    ];
    let mut by: BTreeSet<String> = grouping_labels(expr).into_iter().collect();
    if expr.contains("histogram_quantile(") {
        by.remove("le");
    }
    let aggregated = AGGREGATIONS.iter().any(|a| {
        expr.match_indices(a).any(|(i, _)| {
            let next = expr[i + a.len()..].trim_start();
            next.starts_with('(') || next.starts_with("by")
        })
    });
    if aggregated {
        return by;
    }
    selectors(expr)
        .iter()
        .flat_map(|(metric, _)| exposed.labels(metric).keys().cloned())
        .chain(TARGET_LABELS.map(String::from))
        .collect()
}

/// What is wrong with one dashboard query (`legend` its legendFormat) against what the
/// processes expose: metrics, matchers' label names and values, groupings, legend labels.
fn query_problems(expr: &str, legend: &str, exposed: &Exposed) -> Vec<String> {
    let mut problems = Vec::new();
    let found = selectors(expr);
    if found.is_empty() {
        problems.push("no liverelay metric".into());
    }
    let is_label = |metric: &str, label: &str| {
        TARGET_LABELS.contains(&label) || exposed.labels(metric).contains_key(label)
    };
    for (metric, matchers) in &found {
        if !exposed.0.contains_key(metric) {
            problems.push(format!("{metric} is not exposed"));
            continue;
        }
        for (label, op, value) in matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            let Some(values) = exposed.labels(metric).get(label) else {
                problems.push(format!("{metric} has no label {label}"));
                continue;
            };
            assert!(
                op == "=" || op == "!=",
                "teach this check regular expressions: {label}{op}\"{value}\""
            );
            if !values.contains(value) {
                problems.push(format!(
                    "{metric}{{{label}=\"{value}\"}} never exposed (values: {values:?})"
                ));
            }
        }
        for label in grouping_labels(expr) {
            if !is_label(metric, &label) {
                problems.push(format!("{metric} has no label {label} to group by"));
            }
        }
    }
    if problems.is_empty() {
        let labels = result_labels(expr, exposed);
        for part in legend.split("{{").skip(1) {
            let label = part.split("}}").next().unwrap().trim();
            if !labels.contains(label) {
                problems.push(format!(
                    "legend {{{{{label}}}}}: the series carry only {labels:?}"
                ));
            }
        }
    }
    problems
}

/// The dashboard's queries with their legends: every `expr` of its panels, and the selectors
/// of its `label_values(selector, label)` variables (with the label as the legend).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    let legend = map["legendFormat"].as_str().unwrap_or_default();
                    out.push((expr.to_string(), legend.to_string()));
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap();
        let args = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("teach this check the variable query {query}"));
        let (selector, label) = args.rsplit_once(',').unwrap();
        queries.push((selector.trim().into(), format!("{{{{{}}}}}", label.trim())));
    }
    queries
}

/// The expression Prometheus would get from Grafana: the `$job` variable filled in (any other
/// variable is for this check to learn).
fn as_sent(expr: &str) -> String {
    let sent = expr.replace("$job", ".+");
    assert!(
        !sent.contains('$'),
        "teach this check the variables of {expr}"
    );
    sent
}

/// `promtool check rules` on a rules file recording every expression: PromQL syntax and types
/// as Prometheus parses them, offline.
fn promtool_check_queries(exprs: &[String], dir: &TempDir) {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        // A JSON string is a YAML double-quoted scalar.
        let quoted = serde_json::to_string(&as_sent(expr)).unwrap();
        rules += &format!("      - record: dashboard:query_{i}\n        expr: {quoted}\n");
    }
    let file = dir.path("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is installed (make test-deps installs the prometheus package)");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}\n---\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every query of the shipped Grafana dashboard is valid PromQL (`promtool`) and selects what
/// real processes expose: metric names, label names and values of its matchers, groupings, and
/// the labels its legends show. The processes run a cluster with every metric family
/// populated: a keyed publish (control, webhook, notify callback), a viewer at the edge, static
/// relays (one running, one refused), a failed handshake, and Redis gone at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_is_valid_and_selects_what_the_processes_expose() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/liverelay/dashboards/liverelay-overview.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "the dashboard's queries: {queries:?}");
    let dir = TempDir::new("dashboard");
    let exprs: Vec<String> = queries.iter().map(|(e, _)| e.clone()).collect();
    promtool_check_queries(&exprs, &dir);

    let mut redis = RedisServer::start();
    let url = redis.url();
    let hooks = support::hooks::HookServer::start(|_| support::hooks::Reply::status(204));
    let token = [
        ("LIVERELAY_CLUSTER_TOKEN", "dashboard-token"),
        ("LIVERELAY_ADMIN_TOKEN", "dashboard-admin"),
    ];
    let control_conf = dir.path("control.toml");
    std::fs::write(
        &control_conf,
        format!("[[control.webhooks]]\nurl = \"{}\"\n", hooks.url("/events")),
    )
    .unwrap();
    let control = Server::start_role(
        "control",
        &[
            "--redis-url",
            &url,
            "--config",
            control_conf.to_str().unwrap(),
        ],
        &token,
    );
    let edge = Server::start_role("edge", &["--redis-url", &url], &token);
    let closed = free_port();
    let ingest_conf = dir.path("ingest.toml");
    std::fs::write(
        &ingest_conf,
        format!(
            "[[notify]]\non_publish = \"{}\"\n\n\
             [[relays]]\nkind = \"pull\"\nurl = \"rtmp://{}/live/show\"\nstream = \"live/copy\"\n\n\
             [[relays]]\nkind = \"pull\"\nurl = \"rtmp://127.0.0.1:{closed}/live/nobody\"\nstream = \"live/absent\"\ninitial_backoff_ms = 100\n",
            hooks.url("/on_publish"),
            edge.rtmp
        ),
    )
    .unwrap();
    let control_url = format!("http://{}", control.grpc);
    let mut ingest = Server::start_role(
        "ingest",
        &[
            "--redis-url",
            &url,
            "--control-url",
            &control_url,
            "--config",
            ingest_conf.to_str().unwrap(),
        ],
        &token,
    );

    let key = create_stream_key(control.http, "dashboard-admin", "live", "show");
    let publish = format!("live/{key}");
    let _publisher = looping_publisher(&ingest.url(&publish), &dir.path("pub.log"));
    ingest.wait_live("live", "show", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("show").await;
    // The relay pulling the show back from the edge goes live on the ingest.
    ingest.wait_live("live", "copy", Duration::from_secs(15));
    let mut junk = tokio::net::TcpStream::connect(edge.rtmp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut junk, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    hooks
        .wait_for(Duration::from_secs(10), |h| h.path == "/events")
        .expect("a webhook delivery");
    let exposes = |server: &Server, series: &str| {
        let (_, body) = server.http_get("/metrics");
        body.lines().any(|l| l.starts_with(series))
    };
    let settled = |server: &Server, series: &[&str], what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let missing: Vec<_> = series.iter().filter(|s| !exposes(server, s)).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never showed {missing:?}; its log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    settled(
        &ingest,
        &[
            "liverelay_static_relay_attempts_total{",
            "liverelay_static_relay_bytes_total{",
            "liverelay_auth_decisions_total{",
            "liverelay_notify_calls_total{",
        ],
        "the ingest",
    );
    settled(
        &control,
        &["liverelay_webhook_deliveries_total{"],
        "control",
    );
    settled(
        &edge,
        &[
            "liverelay_handshake_failures_total{",
            "liverelay_relay_hop_latency_seconds_bucket{",
        ],
        "the edge",
    );
    let mut exposed = Exposed::default();
    exposed.scrape(&control);
    exposed.scrape(&ingest);
    // The ingest gone, and Redis: the edge's upstream breaks and its Redis calls fail.
    ingest.kill();
    redis.stop();
    settled(
        &edge,
        &[
            "liverelay_relay_reconnects_total{",
            "liverelay_redis_errors_total{",
        ],
        "the edge without ingest and Redis",
    );
    exposed.scrape(&edge);
    let problems: Vec<String> = queries
        .iter()
        .flat_map(|(expr, legend)| {
            query_problems(expr, legend, &exposed)
                .into_iter()
                .map(move |p| format!("{p}\n    in {expr}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "dashboard queries that would stay empty or mislabelled:\n{}\nexposed: {exposed:#?}",
        problems.join("\n")
    );
    drop(viewer);
}

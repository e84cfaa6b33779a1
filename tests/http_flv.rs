//! HTTP-FLV playback (`GET /flv/{app}/{stream}.flv`) with real clients: ffmpeg and ffprobe
//! read it from a standalone server and from an edge, picture by picture against the source.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::*;

fn flv_url(http: SocketAddr, path: &str) -> String {
    format!("http://{http}/flv/{path}.flv")
}

/// The status line and headers of `GET path` (lower-cased names), without reading the body:
/// an HTTP-FLV answer has no end.
fn response_head(http: SocketAddr, path: &str) -> (u16, Vec<(String, String)>) {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        let read = s
            .read(&mut byte)
            .unwrap_or_else(|e| panic!("GET {path}: no answer within 10 s ({e})"));
        assert_eq!(read, 1, "GET {path}: the answer ended early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.parse().unwrap(), headers)
}

/// Records `url` until it has `pictures` video frames, and returns them.
fn record_pictures(
    url: &str,
    pictures: usize,
    dir: &TempDir,
    tag: &str,
) -> Vec<(bool, usize, String)> {
    let out = dir.path(&format!("{tag}.flv"));
    let log = dir.path(&format!("{tag}.log"));
    let frames = pictures.to_string();
    let mut rec = ffmpeg_record_with(url, &out, &["-frames:v", &frames], &log);
    wait_success(&mut rec, Duration::from_secs(60), &log);
    let got = packet_hashes(&out);
    assert_eq!(got.len(), pictures, "{tag}");
    got
}

/// A viewer that waited for the publisher gets every audio and video frame it sent, byte for
/// byte, and its answer ends when the publisher leaves (so ffmpeg finishes by itself).
#[test]
fn standalone_serves_every_frame_to_a_waiting_viewer() {
    let server = Server::start();
    let dir = TempDir::new("flv-standalone");
    let out = dir.path("view.flv");
    let log = dir.path("view.log");
    let mut viewer = ffmpeg_record(&flv_url(server.http, "live/a"), &out, &log);
    server.wait_viewers("live", "a", 1, Duration::from_secs(10));
    let publish_log = dir.path("publish.log");
    let mut publisher = ffmpeg_publish(sample_flv(), &server.url("live/a"), &publish_log);
    wait_success(&mut publisher, Duration::from_secs(30), &publish_log);
    wait_success(&mut viewer, Duration::from_secs(15), &log);
    assert_eq!(packet_hashes(&out), packet_hashes(sample_flv()));
    let sent = probe_packets(sample_flv().to_str().unwrap());
    let got = probe_packets(out.to_str().unwrap());
    let audio = |p: &[Packet]| p.iter().filter(|p| !p.video).count();
    assert_eq!(audio(&got), audio(&sent), "audio frames");
    assert!(decode_errors(&out).is_empty(), "{}", decode_errors(&out));
}

fn start_edge_of_ingest(redis: &RedisServer) -> (Server, Server) {
    let node = |role: &str, pod: &str| {
        let env = [
            ("LIVERELAY_CLUSTER_TOKEN", "test-cluster-token"),
            ("POD_NAME", pod),
        ];
        Server::start_role(role, &["--redis-url", &redis.url()], &env)
    };
    (node("ingest", "ingest-a"), node("edge", "edge-a"))
}

/// On an edge, an HTTP-FLV request for a stream it does not pull yet starts the pull, as an
/// RTMP play does, and the viewer gets the source's pictures in order from a keyframe on; the
/// ingest (no `cluster.ingest_allow_play`) has no HTTP-FLV route.
#[test]
fn an_edge_pulls_for_an_http_flv_viewer() {
    let redis = RedisServer::start();
    let (ingest, edge) = start_edge_of_ingest(&redis);
    let dir = TempDir::new("flv-edge");
    let _publisher = looping_publisher(&ingest.url("live/e"), &dir.path("publish.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.record("live", "e").is_none() {
        assert!(Instant::now() < deadline, "live/e never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        edge.stream_info("live", "e").is_none(),
        "not pulled before a viewer asks"
    );
    let url = flv_url(edge.http, "live/e");
    assert_eq!(probe_streams(&url), ["aac", "h264,320,240"]);
    let got = record_pictures(&url, 100, &dir, "edge");
    assert_follows_source(&got, &packet_hashes(sample_flv()));
    let (status, _) = ingest.http_get("/flv/live/e.flv");
    assert_eq!(
        status, 404,
        "an ingest that takes no players serves no HTTP-FLV"
    );
}

/// Refusals in HTTP's words: a bad name is 400, a play without its token 403 (as an RTMP play
/// is refused), a stream that does not go live within `http.flv_wait_secs` 404; a good token
/// plays, with the headers a browser player on another origin needs.
#[test]
fn refusals_and_headers() {
    let server = Server::start_with(&[
        ("LIVERELAY_AUTH__PLAY", "token"),
        ("LIVERELAY_AUTH__PLAY_TOKEN_SECRET", "flvsecret"),
        ("LIVERELAY_HTTP__FLV_WAIT_SECS", "1"),
    ]);
    let dir = TempDir::new("flv-refusals");
    let _publisher = looping_publisher(&server.url("live/t"), &dir.path("publish.log"));
    server.wait_live("live", "t", Duration::from_secs(10));
    // Only the status: a wrongly admitted request's answer would never end.
    let status = |path: &str| response_head(server.http, path).0;
    for bad in [
        "/flv/live/a%3Fb.flv",
        "/flv/live/a%01.flv",
        "/flv/%20%2F/t.flv",
    ] {
        assert_eq!(status(bad), 400, "{bad}");
    }
    let long = "n".repeat(300);
    assert_eq!(status(&format!("/flv/live/{long}.flv")), 400);
    assert_eq!(status("/flv/live/t.flv"), 403);
    assert!(server.wait_log("no playback token", Duration::from_secs(2)));
    let other = play_token("flvsecret", "live", "other");
    assert_eq!(status(&format!("/flv/live/t.flv?token={other}")), 403);

    let token = play_token("flvsecret", "live", "t");
    let (code, headers) = response_head(server.http, &format!("/flv/live/t.flv?token={token}"));
    assert_eq!(code, 200);
    for (name, value) in [
        ("content-type", "video/x-flv"),
        ("access-control-allow-origin", "*"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
    ] {
        assert!(
            headers.iter().any(|(k, v)| k == name && v == value),
            "{name}: {value} missing from {headers:?}"
        );
    }
    let url = format!("{}?token={token}", flv_url(server.http, "live/t"));
    assert_eq!(probe_streams(&url), ["aac", "h264,320,240"]);

    // Not live: the request waits http.flv_wait_secs (1 s here), then 404.
    let asked = Instant::now();
    let nobody = play_token("flvsecret", "live", "nobody");
    assert_eq!(status(&format!("/flv/live/nobody.flv?token={nobody}")), 404);
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
}

/// A 2 s loop of lossless noise: about 6 MB/s, so that a client that stops reading fills its
/// socket buffers (megabytes on loopback) within a second.
fn heavy_source(dir: &TempDir) -> std::path::PathBuf {
    let source = dir.path("noise.flv");
    noise_flv(&source, "320x240", 25, 50, 25, &dir.path("encode.log"));
    source
}

/// A client that reads nothing holds neither the publisher nor a viewer of the same stream,
/// and when it reads again it is skipped ahead (counted in the stream's dropped frames)
/// instead of being sent all it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_skipped_and_holds_nobody() {
    let server = Server::start_with(&[("LIVERELAY_HUB__VIEWER_QUEUE_FRAMES", "50")]);
    let dir = TempDir::new("flv-stalled");
    let source = heavy_source(&dir);
    let url = server.url("live/s");
    let _publisher = looping_publisher_of(&source, &url, &dir.path("publish.log"));
    server.wait_live("live", "s", Duration::from_secs(10));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        b"GET /flv/live/s.flv HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    server.wait_viewers("live", "s", 1, Duration::from_secs(10));
    // Counted as a viewer and a play session, as an RTMP player is.
    assert_eq!(server.metric("liverelay_viewers"), Some(1.0));
    assert_eq!(
        server.metric(r#"liverelay_sessions_total{kind="play"}"#),
        Some(1.0)
    );
    // 150 pictures (6 s) for another viewer while the stalled one reads nothing: they follow
    // the source without a gap, at the source's pace.
    let started = Instant::now();
    let flv = flv_url(server.http, "live/s");
    let (got, dir) = tokio::task::spawn_blocking(move || {
        let got = record_pictures(&flv, 150, &dir, "viewer");
        (got, dir)
    })
    .await
    .unwrap();
    assert_follows_source(&got, &packet_hashes(&source));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the viewer took {:?} for 6 s of stream",
        started.elapsed()
    );
    drop(dir);
    // It reads again: it is skipped ahead rather than sent the backlog.
    let dropped = |s: &Server| {
        s.stream_info("live", "s").unwrap()["frames_dropped"]
            .as_u64()
            .unwrap()
    };
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped(&server) == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled reader was never skipped"
        );
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut stalled, &mut buf),
        )
        .await
        .expect("the stalled reader is sent frames again")
        .unwrap();
        assert!(n > 0, "the answer ended");
    }
}

//! Serving viewers on the internet: the public listener (`http.public_listen`,
//! `--public-http-listen`) serves the playback routes (HTTP-FLV, HLS, the player page) and
//! nothing else, and HTTP/2 without TLS (h2c, prior knowledge) is spoken beside HTTP/1.1.
//! Real clients: curl, ffmpeg.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::curl::get as curl;
use support::*;

fn start_with_public_listener(tag: &str) -> (Server, SocketAddr, TempDir, ChildGuard) {
    let public: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Server::start_role(
        "standalone",
        &["--public-http-listen", &public.to_string()],
        &[],
    );
    let dir = TempDir::new(tag);
    let publisher = looping_publisher(&server.url("live/pub"), &dir.path("pub.log"));
    server.wait_live("live", "pub", Duration::from_secs(10));
    (server, public, dir, publisher)
}

/// The public listener plays HLS (a playlist and a part), HTTP-FLV (ffmpeg reads pictures)
/// and the player page, and answers 404 to the health, metrics and API routes that the
/// private listener serves.
#[test]
fn the_public_listener_serves_playback_and_nothing_else() {
    let (server, public, dir, _publisher) = start_with_public_listener("public-routes");
    for path in ["/metrics", "/healthz", "/readyz", "/v1/streams"] {
        let (status, _) = http_get(server.http, path);
        assert_eq!(status, 200, "{path} on the private listener");
        let (status, body) = http_get(public, path);
        assert_eq!(status, 404, "{path} on the public listener: {body}");
    }

    let playlist = curl(&[], &format!("http://{public}/hls/live/pub/index.m3u8"));
    assert_eq!(playlist.status, 200);
    let text = playlist.text();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let part = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .and_then(|l| l.split("URI=\"").nth(1))
        .and_then(|u| u.split('"').next())
        .unwrap_or_else(|| panic!("a part in\n{text}"));
    let part = curl(&[], &format!("http://{public}/hls/live/pub/{part}"));
    assert_eq!(part.status, 200);
    assert!(!part.body.is_empty());

    let page = curl(&[], &format!("http://{public}/watch/live/pub"));
    assert_eq!(page.status, 200);

    let out = dir.path("public.flv");
    let log = dir.path("public-flv.log");
    let url = format!("http://{public}/flv/live/pub.flv");
    let mut viewer = ffmpeg_record_with(&url, &out, &["-frames:v", "5"], &log);
    wait_success(&mut viewer, Duration::from_secs(20), &log);
    assert!(
        probe_packets(out.to_str().unwrap()).iter().any(|p| p.video),
        "pictures over the public listener"
    );
}

/// HTTP/2 without TLS (h2c with prior knowledge, as a proxy or CDN speaks it to its origin) on
/// both listeners, and HTTP/1.1 as before.
#[test]
fn h2c_and_http1_on_plain_http() {
    let (server, public, _dir, _publisher) = start_with_public_listener("h2c");
    for addr in [server.http, public] {
        let url = format!("http://{addr}/hls/live/pub/index.m3u8");
        let h2 = curl(&["--http2-prior-knowledge"], &url);
        assert_eq!(
            (h2.status, h2.version.as_str()),
            (200, "2"),
            "h2c on {addr}"
        );
        assert!(h2.body.starts_with(b"#EXTM3U"));
        let h1 = curl(&["--http1.1"], &url);
        assert_eq!(
            (h1.status, h1.version.as_str()),
            (200, "1.1"),
            "HTTP/1.1 on {addr}"
        );
    }
}

//! Low-Latency HLS (`GET /hls/{app}/{stream}/index.m3u8`) with real clients and a playlist
//! parser: ffprobe and ffmpeg read it, the LL-HLS rules hold (blocking reload, preload hints,
//! delta updates, the server-control values), the pictures are the source's, and two edges
//! serve the same playlist entries and byte-identical parts.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::*;

/// An answer: status, headers (lower-case names) and body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a playlist is text")
    }
}

/// `GET path` over HTTP/1.0 (held requests take up to three target durations).
fn get(addr: SocketAddr, path: &str) -> Got {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no HTTP answer"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    Got {
        status: status.parse().unwrap(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
        body: raw[split + 4..].to_vec(),
    }
}

/// What a media playlist says, as a player reads it.
#[derive(Debug, Default)]
struct Playlist {
    version: u64,
    target: f64,
    part_target: f64,
    hold_back: f64,
    skip_until: f64,
    can_block: bool,
    media_sequence: u64,
    skipped: u64,
    map: Option<String>,
    /// `(sequence, duration)` of complete segments, in order.
    segments: Vec<(u64, f64)>,
    /// `(sequence, part, duration, independent)`.
    parts: Vec<(u64, usize, f64, bool)>,
    preload: Option<(u64, usize)>,
    /// The lines from the first complete segment on: what two servers must agree on.
    lines: Vec<String>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split([':', ','])
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

/// `{msn}.m4s` or `{msn}.{part}.m4s`, without a query.
fn media_name(uri: &str) -> (u64, Option<usize>) {
    let stem = uri.split('?').next().unwrap().strip_suffix(".m4s").unwrap();
    match stem.split_once('.') {
        Some((m, p)) => (m.parse().unwrap(), Some(p.parse().unwrap())),
        None => (stem.parse().unwrap(), None),
    }
}

fn parse(text: &str) -> Playlist {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let mut p = Playlist::default();
    let mut extinf = None;
    for line in text.lines() {
        let num = |name: &str| attr(line, name).map(|v| v.parse::<f64>().unwrap());
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = v.parse().unwrap();
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            p.can_block = attr(line, "CAN-BLOCK-RELOAD") == Some("YES");
            p.hold_back = num("PART-HOLD-BACK").unwrap();
            p.skip_until = num("CAN-SKIP-UNTIL").unwrap();
        } else if line.starts_with("#EXT-X-PART-INF:") {
            p.part_target = num("PART-TARGET").unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if line.starts_with("#EXT-X-SKIP:") {
            p.skipped = num("SKIPPED-SEGMENTS").unwrap() as u64;
        } else if line.starts_with("#EXT-X-MAP:") {
            p.map = attr(line, "URI").map(str::to_owned);
        } else if line.starts_with("#EXT-X-PART:") {
            let (m, part) = media_name(attr(line, "URI").unwrap());
            let independent = attr(line, "INDEPENDENT") == Some("YES");
            p.parts
                .push((m, part.unwrap(), num("DURATION").unwrap(), independent));
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            let (m, part) = media_name(attr(line, "URI").unwrap());
            p.preload = Some((m, part.unwrap()));
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (m, part) = media_name(line);
            assert!(part.is_none());
            p.segments
                .push((m, extinf.take().expect("EXTINF before a URI")));
        }
        if !p.segments.is_empty() || extinf.is_some() {
            p.lines.push(line.to_owned());
        }
    }
    p
}

fn hls_path(stream: &str, file: &str) -> String {
    format!("/hls/live/{stream}/{file}")
}

fn playlist(addr: SocketAddr, stream: &str, query: &str) -> (Got, Playlist) {
    let got = get(addr, &format!("{}{query}", hls_path(stream, "index.m3u8")));
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let p = parse(&got.text());
    (got, p)
}

/// Polls the playlist until `enough` says so.
fn playlist_when(
    addr: SocketAddr,
    stream: &str,
    limit: Duration,
    enough: impl Fn(&Playlist) -> bool,
) -> Playlist {
    let deadline = Instant::now() + limit;
    loop {
        let (_, p) = playlist(addr, stream, "");
        if enough(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "playlist never got there: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ffmpeg decodes a few seconds of the playlist without a single error.
fn assert_decodes(url: &str) {
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-v",
            "error",
            "-i",
            url,
            "-t",
            "3",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.trim().is_empty(), "{errors}");
}

/// The init section and these segments of `addrs` (taken in turn), as one fMP4 file.
fn fetch_mp4(
    addrs: &[SocketAddr],
    stream: &str,
    map: &str,
    files: &[String],
    out: &std::path::Path,
) {
    let init = get(addrs[0], &hls_path(stream, map));
    assert_eq!(init.status, 200);
    let mut file = init.body;
    for (i, name) in files.iter().enumerate() {
        let got = get(addrs[i % addrs.len()], &hls_path(stream, name));
        assert_eq!(got.status, 200, "{name}");
        assert_eq!(&got.body[4..8], b"moof", "{name} is a CMAF chunk");
        file.extend_from_slice(&got.body);
    }
    std::fs::write(out, file).unwrap();
}

/// The sample (1 s GOP) published in a loop as `live/{name}`, once it is live.
fn publish_live(server: &Server, dir: &TempDir, name: &str) -> ChildGuard {
    let publisher = looping_publisher_of(
        sample_flv_1s_gop(),
        &server.url(&format!("live/{name}")),
        &dir.path("pub.log"),
    );
    server.wait_live("live", name, Duration::from_secs(10));
    publisher
}

fn server() -> Server {
    Server::start_with(&[
        // One-second segments: the delta update has segments to skip sooner.
        ("LIVERELAY_HLS__SEGMENT_DURATION_MS", "1000"),
        ("LIVERELAY_HLS__MAX_HELD_PER_CLIENT", "3"),
    ])
}

/// A stream played by ffprobe and ffmpeg, and the LL-HLS tags and values a player relies on.
#[test]
fn a_standalone_server_serves_ll_hls_that_ffmpeg_plays() {
    let server = server();
    let dir = TempDir::new("hls-standalone");
    let _publisher = publish_live(&server, &dir, "a");
    let (got, p) = playlist(server.http, "a", "");
    assert_eq!(
        got.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(got.header("cache-control"), Some("public, max-age=1"));
    assert_eq!(p.version, 9);
    assert!(p.can_block);
    assert_eq!(p.target, 1.0);
    assert_eq!(p.part_target, 0.2);
    assert!(p.hold_back >= 3.0 * p.part_target - 1e-9, "{p:?}");
    assert!(p.skip_until >= 6.0 * p.target - 1e-9, "{p:?}");
    assert!(p.map.as_deref().is_some_and(|m| m.starts_with("init-")));
    assert!(
        p.parts.first().is_some_and(|part| part.1 == 0 && part.3),
        "{p:?}"
    );
    assert!(p.preload.is_some());
    assert!(p.parts.iter().all(|part| part.2 <= p.part_target), "{p:?}");

    // Consecutive complete segments are the source's pictures, in order, none missing.
    let p = playlist_when(server.http, "a", Duration::from_secs(30), |p| {
        p.segments.len() >= 4
    });
    // ffmpeg's HLS reader (not a low-latency one) reads complete segments.
    let url = format!("http://{}{}", server.http, hls_path("a", "index.m3u8"));
    assert_eq!(probe_streams(&url), ["aac", "h264,320,240"]);
    assert_decodes(&url);
    let files: Vec<String> = p.segments.iter().map(|s| format!("{}.m4s", s.0)).collect();
    let out = dir.path("segments.mp4");
    fetch_mp4(&[server.http], "a", p.map.as_deref().unwrap(), &files, &out);
    let got = packet_hashes(&out);
    assert_eq!(
        got.len(),
        files.len() * SAMPLE_FPS as usize,
        "1 s segments of 25 fps"
    );
    assert_follows_source(&got, &packet_hashes(sample_flv_1s_gop()));
    assert!(decode_errors(&out).is_empty(), "{}", decode_errors(&out));
}

/// Blocking reloads are answered when the part exists; too far ahead is 400; malformed values
/// are 400; a delta update is the end of the full playlist; unknown streams are 404 at once.
#[test]
fn blocking_reload_delta_updates_and_refusals() {
    let server = server();
    let dir = TempDir::new("hls-rules");
    let started = Instant::now();
    let got = get(server.http, &hls_path("nobody", "index.m3u8"));
    assert_eq!(got.status, 404);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for (path, status) in [
        ("/hls/live/a%01/index.m3u8", 400),
        ("/hls/live/a/other.txt", 404),
        ("/hls/live/a/x.m4s", 404),
    ] {
        assert_eq!(get(server.http, path).status, status, "{path}");
    }

    let _publisher = publish_live(&server, &dir, "b");
    let (_, p) = playlist(server.http, "b", "");
    let (msn, part) = p.preload.unwrap();

    // The hinted part: held until it exists, then the playlist that lists it.
    let asked = Instant::now();
    let (got, held) = playlist(
        server.http,
        "b",
        &format!("?_HLS_msn={msn}&_HLS_part={part}"),
    );
    let waited = asked.elapsed();
    assert!(
        held.parts.iter().any(|x| (x.0, x.1) == (msn, part)),
        "{held:?}"
    );
    // A part lasts 200 ms: the answer comes with it. Judged by the parts made meanwhile
    // rather than by a clock (generous for a loaded machine): an answer held well past its
    // part would list several newer ones.
    let newer = held
        .parts
        .iter()
        .filter(|x| (x.0, x.1) > (msn, part))
        .count();
    assert!(
        newer <= 2,
        "answered {newer} parts after the one asked for: {held:?}"
    );
    assert!(waited < Duration::from_secs(3), "held for {waited:?}");
    assert_eq!(got.header("cache-control"), Some("public, max-age=6"));
    // The part after the hint, asked before it exists, comes when it does.
    let (m2, p2) = held.preload.unwrap();
    let part_got = get(server.http, &hls_path("b", &format!("{m2}.{p2}.m4s")));
    assert_eq!(part_got.status, 200);
    assert_eq!(&part_got.body[4..8], b"moof");
    assert_eq!(
        part_got.header("cache-control"),
        Some("public, max-age=86400, immutable")
    );
    // Its length is declared, so that a CDN can tell a whole part from a cut one.
    let length = part_got.body.len().to_string();
    assert_eq!(part_got.header("content-length"), Some(length.as_str()));

    for (query, status) in [
        (format!("?_HLS_msn={}", msn + 5), 400),
        (format!("?_HLS_msn={msn}&_HLS_part={}", part + 10), 400),
        ("?_HLS_msn=abc".to_owned(), 400),
        ("?_HLS_part=1".to_owned(), 400),
        ("?_HLS_skip=maybe".to_owned(), 400),
    ] {
        let asked = Instant::now();
        let got = get(
            server.http,
            &format!("{}{query}", hls_path("b", "index.m3u8")),
        );
        assert_eq!(got.status, status, "{query}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{query} answered at once"
        );
    }

    // Delta updates: the segments older than CAN-SKIP-UNTIL are skipped, the rest is the same.
    let full = playlist_when(server.http, "b", Duration::from_secs(30), |p| {
        p.segments.len() >= 9
    });
    let (_, delta) = playlist(server.http, "b", "?_HLS_skip=YES");
    assert!(delta.skipped > 0, "{delta:?}");
    assert_eq!(delta.media_sequence, full.media_sequence);
    let tail = &full.segments[full.segments.len() - delta.segments.len() + 1..];
    assert!(
        delta.segments.windows(tail.len()).any(|w| w == tail) || delta.segments.ends_with(tail),
        "{delta:?} vs {full:?}"
    );
    assert_eq!(
        delta.segments.first().map(|s| s.0),
        Some(full.media_sequence + delta.skipped),
        "the first listed segment follows the skipped ones"
    );
}

/// A client may hold only `hls.max_held_per_client` requests open; the next is 429 and
/// others are not affected.
#[test]
fn held_requests_per_client_are_bounded() {
    let server = server();
    let dir = TempDir::new("hls-held");
    let _publisher = publish_live(&server, &dir, "c");
    let (_, p) = playlist(server.http, "c", "");
    let (msn, _) = p.preload.unwrap();
    // Two segments ahead: allowed, and held for about two seconds.
    let far = format!("{}?_HLS_msn={}", hls_path("c", "index.m3u8"), msn + 2);
    let addr = server.http;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let far = far.clone();
            std::thread::spawn(move || get(addr, &far).status)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("liverelay_hls_held_requests") != Some(3.0) {
        assert!(
            Instant::now() < deadline,
            "the three requests are never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(server.http, &far).status, 429);
    for h in held {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(server.metric("liverelay_hls_held_requests"), Some(0.0));
    assert!(
        server
            .metric("liverelay_hls_requests_total{kind=\"playlist\",status=\"429\"}")
            .is_some_and(|n| n >= 1.0)
    );
}

/// Two edges pulling the same stream from an ingest, one of them from later on: the playlist
/// entries they share are the same, every part is byte for byte the same, and a player that
/// alternates between them (playlist from one, parts from the other) plays the source's
/// pictures in order.
#[test]
fn two_edges_serve_identical_parts_that_play_alternately() {
    let redis = RedisServer::start();
    let node = |role: &str, pod: &str| {
        let env = [
            ("LIVERELAY_CLUSTER_TOKEN", "test-cluster-token"),
            ("POD_NAME", pod),
            ("LIVERELAY_HLS__SEGMENT_DURATION_MS", "1000"),
        ];
        Server::start_role(role, &["--redis-url", &redis.url()], &env)
    };
    let ingest = node("ingest", "ingest-h");
    let (edge_a, edge_b) = (node("edge", "edge-a"), node("edge", "edge-b"));
    let dir = TempDir::new("hls-edges");
    let _publisher = looping_publisher_of(
        sample_flv_1s_gop(),
        &ingest.url("live/e"),
        &dir.path("pub.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.record("live", "e").is_none() {
        assert!(Instant::now() < deadline, "live/e never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Edge A starts packaging now, edge B two segments later.
    let a0 = playlist_when(edge_a.http, "e", Duration::from_secs(20), |p| {
        p.segments.len() >= 2
    });
    let b0 = playlist_when(edge_b.http, "e", Duration::from_secs(20), |p| {
        p.segments.len() >= 2
    });
    assert!(b0.segments[0].0 > a0.segments[0].0, "edge B joined later");
    let (_, a) = playlist(edge_a.http, "e", "");
    let (_, b) = playlist(edge_b.http, "e", "");
    // The same segments under the same numbers, with the same durations and times.
    let common: Vec<&(u64, f64)> = b
        .segments
        .iter()
        .filter(|s| a.segments.contains(s))
        .collect();
    assert!(common.len() >= 2, "{a:?}\n{b:?}");
    let from = |p: &Playlist| {
        let first = format!("{}.m4s", common[0].0);
        let at = p.lines.iter().position(|l| l == &first).unwrap();
        p.lines[at..at + 3].to_vec()
    };
    assert_eq!(from(&a), from(&b), "the same entries");
    assert_eq!(a.map, b.map, "the same init section name");
    let init = |addr, p: &Playlist| get(addr, &hls_path("e", p.map.as_deref().unwrap())).body;
    assert_eq!(
        init(edge_a.http, &a),
        init(edge_b.http, &b),
        "the same init section"
    );
    // Every part both list is the same bytes.
    let mut compared = 0;
    for part in b.parts.iter().filter(|x| a.parts.contains(x)) {
        let name = format!("{}.{}.m4s", part.0, part.1);
        let (pa, pb) = (
            get(edge_a.http, &hls_path("e", &name)),
            get(edge_b.http, &hls_path("e", &name)),
        );
        assert_eq!((pa.status, pb.status), (200, 200), "{name}");
        assert!(pa.body == pb.body, "{name} differs between the edges");
        compared += 1;
    }
    assert!(compared >= 3, "{compared} parts compared");
    // Alternating: segments taken from A and B in turn play as the source.
    let files: Vec<String> = common.iter().map(|s| format!("{}.m4s", s.0)).collect();
    let out = dir.path("alternating.mp4");
    fetch_mp4(
        &[edge_a.http, edge_b.http],
        "e",
        b.map.as_deref().unwrap(),
        &files,
        &out,
    );
    let got = packet_hashes(&out);
    assert_eq!(got.len(), files.len() * SAMPLE_FPS as usize);
    assert_follows_source(&got, &packet_hashes(sample_flv_1s_gop()));
    assert!(decode_errors(&out).is_empty(), "{}", decode_errors(&out));
}

/// A stream with viewers of another protocol is packaged already: the first HLS request is
/// answered from complete segments, not from the moment it came.
#[test]
fn a_watched_stream_is_packaged_before_the_first_hls_request() {
    let server = server();
    let dir = TempDir::new("hls-watched");
    let _publisher = publish_live(&server, &dir, "w");
    let out = dir.path("view.flv");
    let _viewer = ffmpeg_record(&server.url("live/w"), &out, &dir.path("view.log"));
    assert!(
        server.wait_log("HLS packaging started", Duration::from_secs(10)),
        "an RTMP viewer makes the stream packaged"
    );
    // Segments are made without anyone asking: after three of them, the first request is
    // answered with segments from before it.
    let packaging = Instant::now();
    while packaging.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let asked_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let got = get(server.http, &hls_path("w", "index.m3u8"));
    assert_eq!(got.status, 200);
    let p = parse(&got.text());
    assert!(p.segments.len() >= 2, "{p:?}");
    let first = got
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")
                .map(str::to_owned)
        })
        .unwrap();
    let first_ms = unix_ms_of(&first);
    assert!(
        asked_ms.saturating_sub(first_ms) >= 1500,
        "the first segment ({first}) is from before the request ({asked_ms} ms)"
    );
}

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ` (for dates after 2000).
fn unix_ms_of(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap();
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let (h, mi, s, ms) = (n(11..13), n(14..16), n(17..19), n(20..23));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms
}

/// Streams with only audio or only video are packaged and play.
#[test]
fn audio_only_and_video_only_streams_play() {
    let server = server();
    let dir = TempDir::new("hls-one-track");
    let mut publishers = Vec::new();
    for (name, input, codec) in [
        (
            "ao",
            "sine=frequency=440:sample_rate=48000",
            ["-c:a", "aac"],
        ),
        ("vo", "testsrc=size=320x240:rate=30", ["-c:v", "libx264"]),
    ] {
        let file = dir.path(&format!("{name}.flv"));
        let status = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                input,
            ])
            .args(codec)
            .args(["-g", "30", "-t", "4"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        publishers.push(looping_publisher_of(
            &file,
            &server.url(&format!("live/{name}")),
            &dir.path(&format!("{name}.log")),
        ));
    }
    for (name, streams) in [("ao", ["aac"]), ("vo", ["h264,320,240"])] {
        server.wait_live("live", name, Duration::from_secs(10));
        playlist_when(server.http, name, Duration::from_secs(20), |p| {
            p.segments.len() >= 2 && p.parts.iter().all(|x| x.3 || name == "vo")
        });
        let url = format!("http://{}{}", server.http, hls_path(name, "index.m3u8"));
        assert_eq!(probe_streams(&url), streams, "{name}");
        assert_decodes(&url);
    }
}

/// A republish continues the playlist: `EXT-X-DISCONTINUITY` where the new publish starts, and
/// segment numbers that keep increasing.
#[test]
fn a_republish_is_a_discontinuity_with_increasing_numbers() {
    let server = server();
    let dir = TempDir::new("hls-republish");
    let url = server.url("live/r");
    let mut first = looping_publisher_of(sample_flv_1s_gop(), &url, &dir.path("first.log"));
    server.wait_live("live", "r", Duration::from_secs(10));
    let before = playlist_when(server.http, "r", Duration::from_secs(20), |p| {
        p.segments.len() >= 2
    });
    first.kill();
    let _second = looping_publisher_of(sample_flv_1s_gop(), &url, &dir.path("second.log"));
    let last_before = before.segments.last().unwrap().0;
    let after = playlist_when(server.http, "r", Duration::from_secs(30), |p| {
        p.segments.last().is_some_and(|s| s.0 > last_before + 2)
    });
    let text = get(server.http, &hls_path("r", "index.m3u8")).text();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    let numbers: Vec<u64> = after.segments.iter().map(|s| s.0).collect();
    assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{numbers:?}");
    assert!(
        numbers.contains(&last_before),
        "the first publish's segments stay listed"
    );
}

/// An HTTP/2 connection (h2c here) carries at most `http.max_streams_per_connection` requests
/// at once: the server announces it in its first SETTINGS frame, so that one connection cannot
/// hold more viewers or held requests than that.
#[test]
fn http2_connections_announce_their_stream_limit() {
    let server = Server::start_with(&[("LIVERELAY_HTTP__MAX_STREAMS_PER_CONNECTION", "7")]);
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The client preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let mut header = [0u8; 9];
    s.read_exact(&mut header).unwrap();
    assert_eq!(header[3], 4, "the server speaks first with SETTINGS");
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(3, 7)), "{settings:?}");
}

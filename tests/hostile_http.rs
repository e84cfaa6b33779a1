//! Hostile HTTP clients against a real `liverelay standalone`: a slowloris that trickles its
//! headers, an HTTP/2 client that goes quiet, a flood of connections over the cap, an oversized
//! body. Each costs the attacker its own connection (closed, with a log line saying why) and
//! the listener keeps answering.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// Waits until the server closes `s` (EOF or reset); how long that took, `None` if it was
/// still open after `limit`. Whatever the server writes before closing is read and dropped.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn slowloris_headers_are_cut_off_at_the_header_read_timeout() {
    let server = Server::start_with(&[("LIVERELAY_HTTP__HEADER_READ_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(server.http).unwrap();
    let start = Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // One byte every 100 ms: the socket never goes quiet, the headers never end.
    let mut closed = false;
    for b in request.iter().cycle().take(150) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut [0u8; 512]) {
            Ok(0) => closed = true,
            Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                closed = true
            }
            _ => {}
        }
        if closed {
            break;
        }
    }
    let took = start.elapsed();
    assert!(
        closed,
        "a client trickling headers for {took:?} was never closed"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "closed after {took:?}, expected about the 2 s header-read timeout"
    );
    assert!(
        server.wait_log(
            "request headers not received within 2s",
            Duration::from_secs(5)
        ),
        "no log line with the reason:\n{}",
        server.log()
    );
    assert_eq!(server.http_get("/healthz").0, 200);
}

#[test]
fn a_quiet_http2_connection_is_closed_at_the_idle_timeout() {
    let server = Server::start_with(&[("LIVERELAY_HTTP__IDLE_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(server.http).unwrap();
    // HTTP/2 with prior knowledge has no header-read timer: only the idle one bounds it.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let took = closed_within(&mut s, Duration::from_secs(10));
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(1500)),
        "a silent HTTP/2 connection: closed after {took:?}, expected about the 2 s idle timeout"
    );
    assert!(
        server.wait_log("HTTP connection closed: idle", Duration::from_secs(5)),
        "no log line with the reason:\n{}",
        server.log()
    );
}

#[test]
fn a_flood_over_the_connection_cap_is_closed_at_accept_and_health_answers_after() {
    // Long timeouts: the slots must come back because the flood left, not because it timed out.
    let server = Server::start_with(&[
        ("LIVERELAY_HTTP__MAX_CONNECTIONS", "8"),
        ("LIVERELAY_HTTP__HEADER_READ_TIMEOUT_SECS", "60"),
    ]);
    let mut flood: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.http).unwrap())
        .collect();
    // The cap is taken once the server has accepted all eight: wait until a ninth is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < 12 {
        assert!(
            Instant::now() < deadline,
            "connections over the cap of 8 were not closed ({refused} so far)"
        );
        let mut extra = TcpStream::connect(server.http).unwrap();
        if closed_within(&mut extra, Duration::from_millis(500)).is_some() {
            refused += 1;
        } else {
            flood.push(extra);
        }
    }
    assert!(
        flood.len() <= 9,
        "{} connections held open with a cap of 8",
        flood.len()
    );
    assert!(
        server.wait_log(
            "HTTP connection refused: limit reached",
            Duration::from_secs(5)
        ),
        "no log line with the reason:\n{}",
        server.log()
    );
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_http_request(server.http, "GET", "/healthz", None, "") {
            Some((200, _)) => break,
            other => assert!(
                Instant::now() < deadline,
                "/healthz after the flood left: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read once the flood left (it held every slot). The log is throttled; the metric counts
    // every refusal, and every connection served.
    let counted = |kind: &str| {
        server
            .metric(&format!(
                "liverelay_http_connections_total{{kind=\"{kind}\"}}"
            ))
            .unwrap_or_default()
    };
    let (refused_counted, accepted_counted) = (counted("refused"), counted("accepted"));
    assert!(
        refused_counted >= f64::from(refused),
        "{refused} connections refused at the cap, the metric counts {refused_counted}"
    );
    assert!(
        accepted_counted >= 8.0,
        "eight flood connections were served, the metric counts {accepted_counted}"
    );
}

/// The status line's code for a request that declares `length` body bytes and sends only a
/// few: a limit must answer from the headers, not after reading what it refuses.
fn status_for_declared_body(server: &Server, method: &str, path: &str, length: usize) -> u16 {
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n{{}}"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .unwrap_or_else(|e| panic!("{method} {path} declaring {length} bytes: no answer ({e})"));
    let head = String::from_utf8_lossy(&head);
    head[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("not HTTP: {head}"))
}

#[test]
fn an_oversized_body_gets_413_on_any_route() {
    let server = Server::start();
    for (method, path) in [
        ("GET", "/healthz"),
        ("POST", "/v1/streams"),
        ("GET", "/v1/relays"),
    ] {
        let status = status_for_declared_body(&server, method, path, 64 * 1024 + 1);
        assert_eq!(
            status, 413,
            "{method} {path} declaring a 64 KiB + 1 byte body"
        );
    }
    let (status, _) = http_request(server.http, "GET", "/healthz", None, &"x".repeat(1000));
    assert_eq!(status, 200, "a small body is fine");
}

/// Commands Redis has run so far (`INFO stats`).
fn redis_commands(redis: &support::redis::RedisServer) -> u64 {
    let info = redis.cli(&["INFO", "stats"]).unwrap();
    info.lines()
        .find_map(|l| l.trim().strip_prefix("total_commands_processed:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no total_commands_processed in {info}"))
}

/// The open route lookup on control costs Redis round trips: a flood of lookups for one
/// stream reuses the answer (500 ms) instead of asking Redis for each.
#[test]
fn a_flood_of_route_lookups_costs_redis_one_lookup_per_stream_per_interval() {
    let redis = support::redis::RedisServer::start();
    let control = Server::start_role(
        "control",
        &["--redis-url", &redis.url()],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", "route-test-token"),
            ("LIVERELAY_ADMIN_TOKEN", "admin"),
        ],
    );
    const LOOKUPS: u64 = 200;
    let before = redis_commands(&redis);
    let start = Instant::now();
    for _ in 0..LOOKUPS {
        let (status, body) = http_get(control.http, "/v1/streams/live/nobody/route");
        assert_eq!(status, 404, "{body}");
    }
    let took = start.elapsed();
    let commands = redis_commands(&redis) - before;
    // One lookup per 500 ms plus control's own background traffic; uncached, one per request.
    let allowed = 20 + 4 * (took.as_millis() as u64 / 500 + 1);
    assert!(
        commands < allowed.min(LOOKUPS),
        "{LOOKUPS} route lookups in {took:?} ran {commands} Redis commands (allowed {allowed})"
    );
}

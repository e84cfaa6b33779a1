//! Static pull and push relays against a real external RTMP server: nginx with Debian's
//! `libnginx-mod-rtmp` on a free port, ffmpeg publishing, ffprobe/ffmpeg playing.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use liverelay_rtmp::MediaKind;
use liverelay_rtmp::session::ClientEvent;
use support::nginx::Nginx;
use support::redis::RedisServer;
use support::rtmp::{TestClient, is_picture};
use support::*;

const SAMPLE_STREAMS: [&str; 2] = ["aac", "h264,320,240"];

/// Writes a config file holding `relays` (TOML `[[relays]]` entries).
fn config(dir: &TempDir, relays: &str) -> PathBuf {
    let path = dir.path("liverelay.toml");
    std::fs::write(&path, relays).unwrap();
    path
}

/// Longest backoff of the relays here (`max_backoff_ms`).
const MAX_BACKOFF_MS: u64 = 1000;

/// A `[[relays]]` entry with the short backoff of these tests and `extra` keys.
fn relay(kind: &str, url: &str, stream: &str, extra: &str) -> String {
    format!(
        "[[relays]]\nkind = \"{kind}\"\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         initial_backoff_ms = 200\nmax_backoff_ms = {MAX_BACKOFF_MS}\n{extra}\n"
    )
}

fn pull(url: &str, stream: &str, extra: &str) -> String {
    relay(
        "pull",
        url,
        stream,
        &format!("stall_timeout_ms = 3000\n{extra}"),
    )
}

/// The admin token every server here is started with: `GET /v1/relays` answers only with it.
const ADMIN: &str = "relay-test-admin";

fn start(role: &str, config: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let path = config.to_str().unwrap();
    let mut env = env.to_vec();
    env.push(("LIVERELAY_ADMIN_TOKEN", ADMIN));
    Server::start_role(role, &["--config", path], &env)
}

/// Rows of `GET /v1/relays`.
fn relays(server: &Server) -> Vec<serde_json::Value> {
    let (status, body) = http_request(server.http, "GET", "/v1/relays", Some(ADMIN), "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["relays"].as_array().unwrap().clone()
}

/// Waits until the only relay's row satisfies `ok`; returns it.
fn wait_relay(
    server: &Server,
    limit: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let rows = relays(server);
        if let Some(row) = rows.iter().find(|r| ok(r)) {
            return row.clone();
        }
        assert!(
            Instant::now() < deadline,
            "relay never {what}: {rows:?}\nlog:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plays `url` for two seconds with ffmpeg, decoding everything; fails on any decode error.
/// `-re`: at the media's pace, or the cached GOP alone (a burst of up to 2 s of media) ends
/// the play within a fraction of a second.
fn play_decodes(url: &str, dir: &TempDir, tag: &str) {
    let log = dir.path(&format!("{tag}.log"));
    let mut player = spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-re", "-i", url])
            .args(["-t", "2", "-f", "null", "-"]),
        &log,
    );
    wait_success(&mut player, Duration::from_secs(20), &log);
    let errors = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        errors.trim().is_empty(),
        "decode errors playing {url}: {errors}"
    );
}

/// ffmpeg → nginx → static pull → liverelay: ffprobe and ffmpeg play it from liverelay.
#[test]
fn static_pull_from_nginx() {
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-pull");
    let _publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", ""));
    let server = start("standalone", &conf, &[]);
    server.wait_live("live", "foo", Duration::from_secs(15));
    assert_eq!(probe_streams(&server.url("live/foo")), SAMPLE_STREAMS);
    play_decodes(&server.url("live/foo"), &dir, "play");
    let row = wait_relay(&server, Duration::from_secs(5), "live", |r| {
        r["state"] == "live" && r["bytes_in"].as_u64() > Some(10_000)
    });
    assert_eq!(row["kind"], "pull");
    assert_eq!(row["stream"], "live/foo");
    assert_eq!(row["mode"], "static");
    assert!(row["owner"].is_string(), "{row}");
    assert!(row["id"].as_str().unwrap().starts_with("pull:live/foo:"));
}

/// ffmpeg → liverelay → push → nginx: ffprobe and ffmpeg play it from nginx. The URL shown in
/// the API hides the target's stream key.
#[test]
fn push_to_nginx() {
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-push");
    let relays_toml = relay("push", &nginx.url("live/secret-stream-key"), "live/foo", "");
    let server = start("standalone", &config(&dir, &relays_toml), &[]);
    // Relay URLs and remote errors are for the admin only.
    for token in [None, Some("wrong")] {
        let (status, body) = http_request(server.http, "GET", "/v1/relays", token, "");
        assert_eq!(status, 401, "GET /v1/relays with {token:?}: {body}");
        assert!(!body.contains(&nginx.port.to_string()), "{body}");
    }
    let row = &relays(&server)[0];
    assert_eq!(row["state"], "stopped", "nothing to push yet: {row}");
    assert!(!row["url"].as_str().unwrap().contains("secret"), "{row}");
    let _publisher = looping_publisher(&server.url("live/foo"), &dir.path("pub.log"));
    wait_relay(&server, Duration::from_secs(15), "live", |r| {
        r["state"] == "live"
    });
    let target = nginx.url("live/secret-stream-key");
    assert_eq!(probe_streams(&target), SAMPLE_STREAMS, "{}", nginx.log());
    play_decodes(&target, &dir, "play");
    let row = wait_relay(&server, Duration::from_secs(5), "counted bytes", |r| {
        r["bytes_out"].as_u64() > Some(10_000)
    });
    assert_eq!(row["attempts"], 1, "{row}");
}

/// nginx dies during a pull and comes back with a new publish: the liverelay viewer stays
/// connected and gets pictures again with monotonic timestamps; attempts and backoff show in
/// `/v1/relays` and the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn pull_reconnects_and_viewers_stay() {
    let mut nginx = Nginx::start();
    let dir = TempDir::new("relay-reconnect");
    let mut publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", ""));
    let server = start("standalone", &conf, &[]);
    server.wait_live("live", "foo", Duration::from_secs(15));

    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("foo").await;
    let mut last_ts = 0;
    for _ in 0..10 {
        match viewer.expect(Duration::from_secs(5), is_picture).await {
            Some(ClientEvent::Media { media, .. }) => last_ts = media.timestamp,
            other => panic!("no picture before the outage: {other:?}"),
        }
    }

    publisher.kill();
    nginx.stop();
    let stopped = Instant::now();
    let row = wait_relay(&server, Duration::from_secs(10), "backed off", |r| {
        r["state"] == "backing_off" && r["attempts"].as_u64() >= Some(3)
    });
    assert!(
        row["last_error"].as_str().unwrap().contains("refused"),
        "{row}"
    );
    let refused = server
        .metric(&format!(
            "liverelay_static_relay_attempts_total{{relay=\"{}\",reason=\"refused\"}}",
            row["id"].as_str().unwrap()
        ))
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "refused attempts counted: {refused}");

    nginx.restart();
    let _publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub2.log"));
    let restarted = Instant::now();
    loop {
        match viewer
            .next_event(Duration::from_secs(10))
            .await
            .expect("viewer still connected")
        {
            ClientEvent::Media { media, .. } if media.kind == MediaKind::Video => {
                assert!(
                    media.timestamp >= last_ts,
                    "timestamps stay monotonic: {:?} at {} after {last_ts}",
                    media.kind,
                    media.timestamp
                );
                last_ts = media.timestamp;
                if is_picture(&ClientEvent::Media {
                    stream_id: 1,
                    media,
                }) {
                    break;
                }
            }
            ClientEvent::Status { code, .. } => {
                assert_ne!(
                    code, "NetStream.Play.UnpublishNotify",
                    "viewer saw no unpublish"
                )
            }
            _ => {}
        }
    }
    eprintln!(
        "reconnect: pictures again {:?} after nginx came back (outage {:?})",
        restarted.elapsed(),
        restarted - stopped
    );
    assert!(restarted.elapsed() < Duration::from_secs(8));
    wait_relay(&server, Duration::from_secs(5), "live again", |r| {
        r["state"] == "live" && r["last_error"].is_string()
    });
}

/// Lease TTL of the cluster tests (`redis.lease_ttl_ms`): takeovers wait for it, so it is short.
const TTL_MS: u64 = 1500;

/// Pod ids of [`ingest_pair`], by index.
const PODS: [&str; 2] = ["ingest-a", "ingest-b"];

/// A pod of a cluster on `redis` with relay config `conf`, as pod `pod`.
fn cluster_node(role: &str, conf: &std::path::Path, redis: &RedisServer, pod: &str) -> Server {
    start(
        role,
        conf,
        &[
            ("LIVERELAY_CLUSTER_TOKEN", "relay-test-token"),
            ("LIVERELAY_CLUSTER__POD_ID", pod),
            ("LIVERELAY_REDIS__URL", &redis.url()),
            ("LIVERELAY_REDIS__LEASE_TTL_MS", &TTL_MS.to_string()),
        ],
    )
}

/// Two ingests with the same relays, as [`PODS`].
fn ingest_pair(conf: &std::path::Path, redis: &RedisServer) -> [Server; 2] {
    PODS.map(|pod| cluster_node("ingest", conf, redis, pod))
}

/// How these tests tell that a pod ran a relay: the connection attempts it logged for relay
/// `id` after `mark` (a [`Server::log_mark`]; each attempt logs "relay connecting" with the id).
fn attempts_logged(server: &Server, id: &str, mark: usize) -> usize {
    server
        .log_since(mark)
        .lines()
        .filter(|l| l.contains("relay connecting") && l.contains(id))
        .count()
}

/// The `kind` relay's row on `server`.
fn row(server: &Server, kind: &str) -> serde_json::Value {
    relays(server)
        .into_iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} relay listed"))
}

/// Waits until the `kind` relay is live on one of `pods` and checks, over a lease period (a few
/// claims by the other pod), that it runs there and only there: both pods list that owner,
/// and the detector that finds no attempt on the other pod finds the owner's (its positive
/// control). Returns the owner's index and the relay's id.
fn runs_once(pods: &[Server; 2], kind: &str) -> (usize, String) {
    let row = wait_relay(&pods[0], Duration::from_secs(15), "live", |r| {
        r["kind"] == kind && r["state"] == "live"
    });
    let id = row["id"].as_str().unwrap().to_owned();
    let owner = PODS
        .iter()
        .position(|p| row["owner"] == *p)
        .unwrap_or_else(|| panic!("owned by one of the pods: {row}"));
    let other = &pods[1 - owner];
    std::thread::sleep(Duration::from_millis(TTL_MS));
    assert!(
        attempts_logged(&pods[owner], &id, 0) >= 1,
        "the detector sees the owner run {id}:\n{}",
        pods[owner].log()
    );
    assert_eq!(
        attempts_logged(other, &id, 0),
        0,
        "the other pod never ran {id}:\n{}",
        other.log()
    );
    let listed = row_by_id(other, &id);
    assert_eq!(listed["owner"], PODS[owner], "both pods list the owner");
    (owner, id)
}

fn row_by_id(server: &Server, id: &str) -> serde_json::Value {
    relays(server)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
}

/// The relay's byte counter on `server` (`direction` in or out).
fn relay_bytes(server: &Server, id: &str, direction: &str) -> f64 {
    server
        .metric(&format!(
            "liverelay_static_relay_bytes_total{{relay=\"{id}\",direction=\"{direction}\"}}"
        ))
        .unwrap_or(0.0)
}

/// Two ingests with the same relay: only one runs it (both list it with that owner); the
/// stream plays from an edge; kill -9 of the owner and the other takes it over within the
/// lease TTL.
#[test]
fn pull_runs_once_in_the_cluster_and_fails_over() {
    let redis = RedisServer::start();
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-once");
    let _publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", ""));
    let mut pods = ingest_pair(&conf, &redis);
    let (owner, id) = runs_once(&pods, "pull");
    let other = 1 - owner;
    assert_eq!(
        redis.record("live", "foo").unwrap()["owner"],
        PODS[owner],
        "the pulled stream is registered by its puller"
    );
    let edge = cluster_node("edge", &conf, &redis, "edge-x");
    play_decodes(&edge.url("live/foo"), &dir, "edge-play");

    pods[owner].kill();
    let killed = Instant::now();
    let other = &pods[other];
    assert!(
        other.wait_log("relay lease taken", Duration::from_millis(3 * TTL_MS)),
        "no takeover:\n{}",
        other.log()
    );
    let took_over = killed.elapsed();
    let row = wait_relay(
        other,
        Duration::from_secs(10),
        "live on the other pod",
        |r| r["state"] == "live" && r["owner"] == PODS[1 - owner],
    );
    eprintln!(
        "exactly once: takeover {took_over:?} after kill -9 (lease TTL {TTL_MS} ms), live again {:?}",
        killed.elapsed()
    );
    assert_eq!(row["id"], id.as_str());
    assert!(
        took_over <= Duration::from_millis(TTL_MS + TTL_MS / 3 + 500),
        "takeover took {took_over:?}"
    );
    play_decodes(&edge.url("live/foo"), &dir, "edge-play-2");
}

/// Pauses pod `old` (SIGSTOP) until `new` runs `ids` (its lease ran out and the other pod
/// took and started each), then resumes it. Its first renewal after the pause finds each
/// lease gone: it must stop those relays before making any connection and log it. (A pull only
/// ever stops that way; a push may see its stream end there first, and stop as released.)
/// Returns its log mark from before the resume (everything it did since).
fn pause_until_taken_over(old: &Server, new: &Server, new_pod: &str, ids: &[&str]) -> usize {
    old.pause();
    let paused = Instant::now();
    for id in ids {
        wait_relay(
            new,
            Duration::from_millis(3 * TTL_MS) + Duration::from_secs(10),
            "running on the other pod",
            |r| r["id"] == *id && r["owner"] == new_pod && r["state"] == "live",
        );
    }
    eprintln!(
        "fencing: the other pod runs the relays {:?} after the owner was paused (lease TTL {TTL_MS} ms)",
        paused.elapsed()
    );
    // A stopped process writes nothing: what the log gets from here on came after SIGCONT.
    let mark = old.log_mark();
    old.resume();
    for id in ids {
        // Immediate on an idle machine: its renewal timer ran out during the pause.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !old.log_since(mark).lines().any(|l| {
            l.contains(*id)
                && (l.contains("relay lease lost; relay stopped here")
                    || l.contains("relay released"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the resumed pod was not fenced off {id}:\n{}",
                old.log_since(mark)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    mark
}

/// For two lease periods after `old` was fenced off: it makes no attempt for any of `ids`,
/// lists `new_pod` as their owner (a stale status of its own would show up here), and `check`
/// holds (what the destination sees); `new` keeps running them.
fn only_new_owner_runs(
    old: &Server,
    new: &Server,
    new_pod: &str,
    ids: &[&str],
    mark: usize,
    check: impl Fn(),
) {
    let until = Instant::now() + Duration::from_millis(2 * TTL_MS);
    while Instant::now() < until {
        for id in ids {
            assert_eq!(
                attempts_logged(old, id, mark),
                0,
                "the resumed pod ran {id} again:\n{}",
                old.log_since(mark)
            );
            let listed = row_by_id(old, id);
            assert_eq!(
                listed["owner"], new_pod,
                "status names the new owner: {listed}"
            );
            let running = row_by_id(new, id);
            assert_eq!(
                (running["owner"].as_str(), running["state"].as_str()),
                (Some(new_pod), Some("live")),
                "{running}"
            );
        }
        check();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The owner of a pull hangs (SIGSTOP) past its lease; the other ingest takes the pull over
/// and runs it. When the old owner resumes, it is fenced off: it stops at its first renewal,
/// logs it, and from then on only the new owner pulls: the old one makes no connection, moves
/// no more bytes, does not have the stream, and the registry names the new owner.
#[test]
fn paused_pull_owner_is_fenced_off_when_it_resumes() {
    let redis = RedisServer::start();
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-fenced-pull");
    let _publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", ""));
    let pods = ingest_pair(&conf, &redis);
    let (owner, id) = runs_once(&pods, "pull");
    let (old, new, new_pod) = (&pods[owner], &pods[1 - owner], PODS[1 - owner]);

    let mark = pause_until_taken_over(old, new, new_pod, &[&id]);
    let fenced_bytes = relay_bytes(old, &id, "in");
    only_new_owner_runs(old, new, new_pod, &[&id], mark, || {
        assert_eq!(
            relay_bytes(old, &id, "in"),
            fenced_bytes,
            "the old owner pulls"
        );
        assert!(
            old.stream_info("live", "foo")
                .is_none_or(|s| s["live"] != true),
            "the old owner still has the pulled stream"
        );
        assert_eq!(redis.record("live", "foo").unwrap()["owner"], new_pod);
    });
}

/// Two ingests pull `live/src` from nginx as `live/foo` and push it back to nginx as
/// `live/out`: the push runs on the pod that has the stream, once.
fn pull_and_push(tag: &str, nginx: &Nginx) -> (TempDir, ChildGuard, PathBuf) {
    let dir = TempDir::new(tag);
    let publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let relays_toml = pull(&nginx.url("live/src"), "live/foo", "")
        + &relay("push", &nginx.url("live/out"), "live/foo", "");
    let conf = config(&dir, &relays_toml);
    (dir, publisher, conf)
}

/// Two ingests with the same push: exactly one pushes (the target got one publish, the other
/// pod made no attempt); kill -9 of that pod and the other pushes instead, with never two
/// publishers at the target.
#[test]
fn push_runs_once_in_the_cluster_and_fails_over() {
    let redis = RedisServer::start();
    let nginx = Nginx::start();
    let (_dir, _publisher, conf) = pull_and_push("relay-push-once", &nginx);
    let mut pods = ingest_pair(&conf, &redis);
    let (owner, id) = runs_once(&pods, "push");
    assert_eq!(
        (nginx.publishes("out"), nginx.already_publishing()),
        (1, 0),
        "the target saw one publisher:\n{}",
        nginx.log()
    );
    assert_eq!(probe_streams(&nginx.url("live/out")), SAMPLE_STREAMS);

    pods[owner].kill();
    let other = &pods[1 - owner];
    wait_relay(
        other,
        Duration::from_millis(3 * TTL_MS) + Duration::from_secs(10),
        "pushing from the other pod",
        |r| r["id"] == id.as_str() && r["owner"] == PODS[1 - owner] && r["state"] == "live",
    );
    assert_eq!(
        (nginx.publishes("out"), nginx.already_publishing()),
        (2, 0),
        "one more publish, the new owner's:\n{}",
        nginx.log()
    );
    assert_eq!(probe_streams(&nginx.url("live/out")), SAMPLE_STREAMS);
}

/// The pod that pulls and pushes hangs (SIGSTOP) past its leases; nginx drops its idle
/// publish and the other pod takes both relays over. When the old owner resumes it is fenced
/// off both: no connection from it, no new publish at the target, and every status names the
/// new owner.
#[test]
fn paused_push_owner_is_fenced_off_when_it_resumes() {
    let redis = RedisServer::start();
    // A hung publisher would otherwise hold the target's name until it resumes.
    let nginx = Nginx::start_with("drop_idle_publisher 1s;");
    let (_dir, _publisher, conf) = pull_and_push("relay-fenced-push", &nginx);
    let pods = ingest_pair(&conf, &redis);
    let (owner, push_id) = runs_once(&pods, "push");
    let pull_id = row(&pods[owner], "pull")["id"].as_str().unwrap().to_owned();
    let (old, new, new_pod) = (&pods[owner], &pods[1 - owner], PODS[1 - owner]);

    let mark = pause_until_taken_over(old, new, new_pod, &[&pull_id, &push_id]);
    let publishes = nginx.publishes("out");
    let refused = nginx.already_publishing();
    only_new_owner_runs(old, new, new_pod, &[&pull_id, &push_id], mark, || {
        assert_eq!(
            (nginx.publishes("out"), nginx.already_publishing()),
            (publishes, refused),
            "a publish at the target after the new owner's:\n{}",
            nginx.log()
        );
    });
    assert_eq!(probe_streams(&nginx.url("live/out")), SAMPLE_STREAMS);
}

/// A pull whose source accepts the play and then sends nothing (its publisher hangs) is
/// dropped after `stall_timeout_ms` and connected again, and again while nothing comes; it is
/// live again once media flows.
#[test]
fn stalled_pull_reconnects_after_the_stall_timeout() {
    const STALL_MS: u64 = 1000;
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-stall");
    let publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let stall = format!("stall_timeout_ms = {STALL_MS}");
    let conf = config(
        &dir,
        &relay("pull", &nginx.url("live/src"), "live/foo", &stall),
    );
    let server = start("standalone", &conf, &[]);
    let row = wait_relay(&server, Duration::from_secs(15), "live", |r| {
        r["state"] == "live" && r["bytes_in"].as_u64() > Some(10_000)
    });
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(row["attempts"], 1, "{row}");

    publisher.pause();
    let paused = Instant::now();
    // Ten times the setting is still well under the 10 s default.
    let row = wait_relay(
        &server,
        Duration::from_millis(5 * STALL_MS),
        "reconnected after a stall",
        |r| {
            r["attempts"].as_u64() >= Some(2)
                && r["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("stalled"))
        },
    );
    let noticed = paused.elapsed();
    eprintln!(
        "stall: reconnecting {noticed:?} after the source went quiet (stall_timeout_ms {STALL_MS})"
    );
    assert!(
        noticed >= Duration::from_millis(STALL_MS / 2),
        "dropped before the stall timeout: {noticed:?} {row}"
    );
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("no media for {STALL_MS} ms")),
        "{row}"
    );
    let stalled = |s: &Server| {
        s.metric(&format!(
            "liverelay_static_relay_attempts_total{{relay=\"{id}\",reason=\"stalled\"}}"
        ))
        .unwrap_or(0.0)
    };
    assert!(stalled(&server) >= 1.0, "stalled attempts counted");
    assert!(server.log().contains("relay attempt failed"));
    // Still nothing: the next connection stalls too.
    wait_relay(
        &server,
        Duration::from_millis(5 * STALL_MS),
        "stalled again",
        |_| stalled(&server) >= 2.0,
    );

    publisher.resume();
    wait_relay(&server, Duration::from_secs(10), "live again", |r| {
        r["state"] == "live"
    });
}

/// What [`proxy`] does with the client's bytes once it has passed its budget.
#[derive(Clone, Copy)]
enum Then {
    /// Reads nothing more, holding the connection open: a target that went deaf.
    Deaf,
    /// Reads and forwards at most `bytes` every `every`: a slow target that keeps reading.
    Trickle { bytes: usize, every: Duration },
}

/// A TCP proxy in front of `target` that forwards both ways until it has passed `budget`
/// bytes from the client (enough for the handshake, connect and publish), then does `then`
/// with the rest. Its receive buffer is small, so the client's writes wait on it soon. Later
/// connections are forwarded the same way.
async fn proxy(target: std::net::SocketAddr, budget: usize, then: Then) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (mut client_r, mut client_w) = client.into_split();
            let (mut up_r, mut up_w) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
            });
            tokio::spawn(async move {
                let mut left = budget;
                let mut buf = vec![0u8; 1024];
                while left > 0 {
                    let want = left.min(buf.len());
                    match client_r.read(&mut buf[..want]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            left -= n;
                            if up_w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let Then::Trickle { bytes, every } = then else {
                    // Hold the socket, read nothing, until the test ends.
                    std::future::pending::<()>().await;
                    return drop(client_r);
                };
                let mut buf = vec![0u8; bytes];
                loop {
                    tokio::time::sleep(every).await;
                    match client_r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) if up_w.write_all(&buf[..n]).await.is_err() => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

/// A push of `live/foo` through [`proxy`] (doing `then`) to nginx-rtmp, with the stall
/// timeout at `STALL_MS`, fed by ffmpeg at fifty times the media's pace: whatever the kernel
/// buffers (it grows a blocked sender's buffer towards megabytes), the writes wait on the
/// proxy within seconds. Returns once the push is live, with its id.
struct ProxiedPush {
    _nginx: Nginx,
    server: Server,
    _publisher: ChildGuard,
    _dir: TempDir,
    id: String,
}

const PUSH_STALL_MS: u64 = 1000;

impl ProxiedPush {
    async fn start(then: Then) -> Self {
        let nginx = Nginx::start();
        // Enough for the handshake, connect, publish and the first frames.
        let budget = 32 * 1024;
        let proxy = proxy(
            format!("127.0.0.1:{}", nginx.port).parse().unwrap(),
            budget,
            then,
        )
        .await;
        let dir = TempDir::new("relay-push-proxied");
        let target = format!("rtmp://{proxy}/live/out");
        let stall = format!("stall_timeout_ms = {PUSH_STALL_MS}");
        let server = start(
            "standalone",
            &config(&dir, &relay("push", &target, "live/foo", &stall)),
            &[],
        );
        let publisher = spawn_logged(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-stream_loop", "-1"])
                .args(["-readrate", "50", "-i"])
                .arg(sample_flv())
                .args(["-c", "copy", "-f", "flv", &server.url("live/foo")]),
            &dir.path("pub.log"),
        );
        let row = wait_relay(&server, Duration::from_secs(15), "live", |r| {
            r["state"] == "live"
        });
        let id = row["id"].as_str().unwrap().to_owned();
        Self {
            _nginx: nginx,
            server,
            _publisher: publisher,
            _dir: dir,
            id,
        }
    }

    /// Attempts that ended as stalled.
    fn stalled(&self) -> f64 {
        self.server
            .metric(&format!(
                "liverelay_static_relay_attempts_total{{relay=\"{}\",reason=\"stalled\"}}",
                self.id
            ))
            .unwrap_or(0.0)
    }
}

/// A push whose target accepted the connection, took the publish and then stopped reading:
/// the stall timeout covers writes, so the relay leaves "live" and tries again instead of
/// hanging in a write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_target_that_stops_reading_stalls_and_retries() {
    let push = ProxiedPush::start(Then::Deaf).await;
    let server = &push.server;
    let deaf = Instant::now();
    // The socket buffers fill first (about 4 s here), then one stall timeout.
    let deadline = deaf + Duration::from_secs(30);
    while push.stalled() < 1.0 {
        assert!(
            Instant::now() < deadline,
            "push still {:?} 30 s after going live with a target that stopped reading\nlog:\n{}",
            relays(server)[0]["state"],
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("push: stalled {:?} after going live", deaf.elapsed());
    assert!(
        server
            .log()
            .contains(&format!("target read nothing for {PUSH_STALL_MS} ms")),
        "no log line with the reason:\n{}",
        server.log()
    );
    wait_relay(server, Duration::from_secs(5), "out of live", |r| {
        r["state"] != "live"
    });
}

/// A push whose target reads slowly but never stops: with the publisher far ahead, a batch
/// of frames takes longer than the stall timeout to go out, yet bytes keep leaving, so the
/// push is not called stalled and stays live (the timeout bounds each write, not the batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_slow_target_that_keeps_reading_stays_live() {
    let every = Duration::from_millis(10);
    let push = ProxiedPush::start(Then::Trickle { bytes: 2048, every }).await;
    let server = &push.server;
    let bytes_out = || relays(server)[0]["bytes_out"].as_u64().unwrap_or(0);
    let (start, sent) = (Instant::now(), bytes_out());
    while start.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            push.stalled(),
            0.0,
            "a target reading all along was called stalled after {:?}\nlog:\n{}",
            start.elapsed(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let row = &relays(server)[0];
    assert_eq!(row["state"], "live", "{row}");
    let moved = bytes_out() - sent;
    eprintln!("push: {moved} bytes to a slow target in 12 s");
    assert!(moved > 100_000, "{moved} bytes in 12 s: {row}");
}

/// A relay whose peer refuses is tried `max_attempts` times, then given up: `stopped`, the
/// last error kept, and no further attempt.
#[test]
fn relay_gives_up_after_max_attempts() {
    const MAX: u64 = 3;
    let dir = TempDir::new("relay-max-attempts");
    let nobody = format!("rtmp://127.0.0.1:{}/live/src", free_port());
    let max = format!("max_attempts = {MAX}");
    let conf = config(&dir, &relay("pull", &nobody, "live/foo", &max));
    let server = start("standalone", &conf, &[]);
    // Stopped with attempts made: only giving up does that (before the first it has none).
    let row = wait_relay(&server, Duration::from_secs(10), "given up", |r| {
        r["state"] == "stopped" && r["attempts"].as_u64() >= Some(1)
    });
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(row["attempts"], MAX, "{row}");
    assert!(
        row["last_error"].as_str().unwrap().contains("refused"),
        "{row}"
    );
    assert!(server.wait_log("relay gave up after max_attempts", Duration::from_secs(1)));
    // Longer than any backoff: a next attempt would have started by now.
    std::thread::sleep(Duration::from_millis(MAX_BACKOFF_MS + 500));
    let row = row_by_id(&server, &id);
    assert_eq!(
        (row["state"].as_str(), row["attempts"].as_u64()),
        (Some("stopped"), Some(MAX))
    );
    assert_eq!(
        attempts_logged(&server, &id, 0),
        MAX as usize,
        "{}",
        server.log()
    );
    let refused = server.metric(&format!(
        "liverelay_static_relay_attempts_total{{relay=\"{id}\",reason=\"refused\"}}"
    ));
    assert_eq!(refused, Some(MAX as f64));
}

/// nginx with a publisher looping on `live/src`, and a config pulling it on demand as
/// `live/foo` with a 1 s linger.
fn on_demand_source(tag: &str) -> (Nginx, TempDir, ChildGuard, PathBuf) {
    let nginx = Nginx::start();
    let dir = TempDir::new(tag);
    let publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let on_demand = "mode = \"on-demand\"\nlinger_secs = 1";
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", on_demand));
    (nginx, dir, publisher, conf)
}

/// An on-demand pull does nothing until its stream is played, runs while watched and stops
/// after the linger.
#[test]
fn on_demand_pull_starts_on_play_and_stops_after_linger() {
    let (_nginx, dir, _publisher, conf) = on_demand_source("relay-on-demand");
    let server = start("standalone", &conf, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let row = &relays(&server)[0];
    assert_eq!(
        (row["state"].as_str(), row["attempts"].as_u64()),
        (Some("stopped"), Some(0))
    );
    assert!(
        server.stream_info("live", "foo").is_none(),
        "not pulled before a play"
    );

    let started = Instant::now();
    assert_eq!(probe_streams(&server.url("live/foo")), SAMPLE_STREAMS);
    eprintln!("on-demand: first play answered in {:?}", started.elapsed());
    play_decodes(&server.url("live/foo"), &dir, "play");
    let played = Instant::now();
    wait_relay(
        &server,
        Duration::from_secs(5),
        "stopped after the linger",
        |r| r["state"] == "stopped" && r["attempts"].as_u64() >= Some(1),
    );
    // The player's exit is seen a moment after its socket closed.
    assert!(
        played.elapsed() >= Duration::from_millis(800),
        "stopped {:?} after the play, before the linger",
        played.elapsed()
    );
    assert!(server.wait_log("on-demand pull stopped", Duration::from_secs(1)));
    let deadline = Instant::now() + Duration::from_secs(2);
    while server
        .stream_info("live", "foo")
        .is_some_and(|s| s["live"] == true)
    {
        assert!(Instant::now() < deadline, "the pulled stream ended");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Players that leave again at once still start an on-demand pull: each play is announced as
/// it is admitted, where a look at the hub's viewer count every 200 ms would miss a viewer
/// that stayed a few milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_pull_starts_for_a_player_gone_at_once() {
    let (_nginx, _dir, _publisher, conf) = on_demand_source("relay-on-demand-brief");
    let server = start("standalone", &conf, &[]);
    for _ in 0..3 {
        let mut client = TestClient::connect(server.rtmp, "live").await;
        client.play_status("foo").await;
        drop(client);
    }
    // Before a play it makes no attempt (on_demand_pull_starts_on_play_and_stops_after_linger).
    wait_relay(&server, Duration::from_secs(5), "started", |r| {
        r["attempts"].as_u64() >= Some(1)
    });
    // Nobody is watching: it stops after the linger.
    wait_relay(
        &server,
        Duration::from_secs(5),
        "stopped after the linger",
        |r| r["state"] == "stopped",
    );
    assert!(server.wait_log("on-demand pull stopped", Duration::from_secs(1)));
}

/// In a cluster, an on-demand pull declared on the ingests starts when a viewer asks an edge
/// for its stream (the edge announces it wants it), serves the edge, and stops after the
/// linger once the edge has let go.
#[test]
fn on_demand_pull_starts_when_an_edge_wants_the_stream() {
    let redis = RedisServer::start();
    let (_nginx, _dir, _publisher, conf) = on_demand_source("relay-on-demand-edge");
    let url = redis.url();
    let env = |pod| {
        [
            ("LIVERELAY_CLUSTER_TOKEN", "relay-test-token"),
            ("LIVERELAY_REDIS__URL", url.as_str()),
            ("LIVERELAY_CLUSTER__UPSTREAM_LINGER_SECS", "1"),
            ("POD_NAME", pod),
        ]
    };
    let ingest = start("ingest", &conf, &env("ingest-a"));
    let edge = Server::start_role("edge", &[], &env("edge-a"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        relays(&ingest)[0]["attempts"],
        0,
        "nothing pulled before a play"
    );
    assert!(redis.record("live", "foo").is_none());

    let started = Instant::now();
    assert_eq!(probe_streams(&edge.url("live/foo")), SAMPLE_STREAMS);
    eprintln!(
        "on-demand through an edge: first play answered in {:?}",
        started.elapsed()
    );
    assert_eq!(redis.record("live", "foo").unwrap()["owner"], "ingest-a");
    // The edge lingers 1 s after its last viewer, the pull 1 s after the edge let go.
    wait_relay(
        &ingest,
        Duration::from_secs(10),
        "stopped after the linger",
        |r| r["state"] == "stopped" && r["attempts"].as_u64() >= Some(1),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.record("live", "foo").is_some() {
        assert!(Instant::now() < deadline, "the stream left the registry");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
use support::rtmp_client::{RtmpClient, is_picture};
use support::*;

const SAMPLE_STREAMS: [&str; 2] = ["aac", "h264,320,240"];

/// Writes a config file holding `relays` (TOML `[[relays]]` entries).
fn config(dir: &TempDir, relays: &str) -> PathBuf {
    let path = dir.path("liverelay.toml");
    std::fs::write(&path, relays).unwrap();
    path
}

fn pull(url: &str, stream: &str, extra: &str) -> String {
    format!(
        "[[relays]]\nkind = \"pull\"\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         initial_backoff_ms = 200\nmax_backoff_ms = 1000\nstall_timeout_ms = 3000\n{extra}\n"
    )
}

fn start(role: &str, config: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let path = config.to_str().unwrap();
    Server::start_role(role, &["--config", path], env)
}

/// Rows of `GET /v1/relays`.
fn relays(server: &Server) -> Vec<serde_json::Value> {
    let (status, body) = server.http_get("/v1/relays");
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
fn play_decodes(url: &str, dir: &TempDir, tag: &str) {
    let log = dir.path(&format!("{tag}.log"));
    let mut player = spawn_logged(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i", url])
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
    let relays_toml = format!(
        "[[relays]]\nkind = \"push\"\nurl = \"{}\"\nstream = \"live/foo\"\n\
         initial_backoff_ms = 200\nmax_backoff_ms = 1000\n",
        nginx.url("live/secret-stream-key")
    );
    let server = start("standalone", &config(&dir, &relays_toml), &[]);
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

    let mut viewer = RtmpClient::connect(server.rtmp, "live").await;
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

/// Two ingests with the same relay: only one runs it (both list it with that owner); the
/// stream plays from an edge; kill -9 of the owner and the other takes it over within the
/// lease TTL.
#[test]
fn pull_runs_once_in_the_cluster_and_fails_over() {
    const TTL_MS: u64 = 1500;
    let redis = RedisServer::start();
    let nginx = Nginx::start();
    let dir = TempDir::new("relay-once");
    let _publisher = looping_publisher(&nginx.url("live/src"), &dir.path("pub.log"));
    let conf = config(&dir, &pull(&nginx.url("live/src"), "live/foo", ""));
    let node = |role: &str, pod: &str| {
        start(
            role,
            &conf,
            &[
                ("LIVERELAY_CLUSTER_TOKEN", "relay-test-token"),
                ("LIVERELAY_CLUSTER__POD_ID", pod),
                ("LIVERELAY_REDIS__URL", &redis.url()),
                ("LIVERELAY_REDIS__LEASE_TTL_MS", &TTL_MS.to_string()),
            ],
        )
    };
    let mut a = node("ingest", "ingest-a");
    let mut b = node("ingest", "ingest-b");
    let row = wait_relay(&a, Duration::from_secs(15), "live", |r| {
        r["state"] == "live"
    });
    let owner = row["owner"].as_str().unwrap().to_owned();
    let id = row["id"].as_str().unwrap().to_owned();
    assert_eq!(
        relays(&b)[0]["owner"],
        owner.as_str(),
        "both pods list the owner"
    );
    let (owner_node, other, other_pod) = if owner == "ingest-a" {
        (&mut a, &b, "ingest-b")
    } else {
        (&mut b, &a, "ingest-a")
    };
    let attempts = |s: &Server| s.log().matches("relay connecting").count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        attempts(other),
        0,
        "the other pod never ran it:\n{}",
        other.log()
    );
    assert_eq!(
        redis.record("live", "foo").unwrap()["owner"],
        owner.as_str(),
        "the pulled stream is registered by its puller"
    );
    let edge = node("edge", "edge-x");
    play_decodes(&edge.url("live/foo"), &dir, "edge-play");

    owner_node.kill();
    let killed = Instant::now();
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
        |r| r["state"] == "live" && r["owner"] == other_pod,
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

//! The control service with real parts: `redis-server`, `liverelay control`, ingest and edge
//! processes, ffmpeg and ffprobe, and an HTTP receiver for callbacks and webhooks started by
//! the test.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use liverelay_rtmp::session::ClientEvent;
use sha2::Sha256;
use support::hooks::{Hook, HookServer, Reply};
use support::redis::RedisServer;
use support::rtmp::TestClient;
use support::*;

const TOKEN: &str = "test-cluster-token";
const ADMIN: &str = "test-admin-token";

struct Platform {
    redis: RedisServer,
    control: Server,
}

impl Platform {
    fn start(env: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start();
        let url = redis.url();
        let mut all = vec![
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_ADMIN_TOKEN", ADMIN),
            ("POD_NAME", "control-0"),
        ];
        all.extend_from_slice(env);
        let control = Server::start_role("control", &["--redis-url", &url], &all);
        Self { redis, control }
    }

    fn start_with_config(config: &std::path::Path) -> Self {
        let redis = RedisServer::start();
        let (url, config) = (redis.url(), config.to_str().unwrap().to_string());
        let env = [
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_ADMIN_TOKEN", ADMIN),
        ];
        let control =
            Server::start_role("control", &["--redis-url", &url, "--config", &config], &env);
        Self { redis, control }
    }

    fn control_url(&self) -> String {
        format!("http://{}", self.control.grpc)
    }

    fn node(&self, role: &str, pod: &str, env: &[(&str, &str)]) -> Server {
        self.node_with(role, pod, &[], env)
    }

    /// A node with more command-line arguments (e.g. `--config`).
    fn node_with(&self, role: &str, pod: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let (url, control) = (self.redis.url(), self.control_url());
        let mut all = vec![
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("POD_NAME", pod),
            ("LIVERELAY_CLUSTER__REPORT_INTERVAL_SECS", "1"),
        ];
        all.extend_from_slice(env);
        let mut all_args = vec!["--redis-url", &url, "--control-url", &control];
        all_args.extend_from_slice(args);
        Server::start_role(role, &all_args, &all)
    }

    fn api(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        api(self.control.http, method, path, Some(ADMIN), body)
    }
}

fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http_request(addr, method, path, bearer, body);
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The status a play of `name` (query included) gets, with `app` (query included).
async fn play_status(addr: SocketAddr, app: &str, name: &str) -> String {
    TestClient::connect(addr, app).await.play_status(name).await
}

/// Waits until the ffmpeg child exits; returns how long that took.
fn wait_ended(child: &mut ChildGuard, limit: Duration) -> Duration {
    let started = Instant::now();
    child
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("{} still running after {limit:?}", child.name()));
    started.elapsed()
}

/// Fails if `secret` is in Redis (a key's name or any value) or in the log of any of `servers`.
fn assert_secret_nowhere(secret: &str, redis: &RedisServer, servers: &[(&str, &Server)]) {
    let holding = redis.keys_holding(secret);
    assert!(holding.is_empty(), "Redis holds a secret in {holding:?}");
    for (role, server) in servers {
        assert!(
            !server.log().contains(secret),
            "the {role} log holds a secret"
        );
    }
}

/// Publishes `live/NAME` with the test client: the ingest must answer
/// `NetStream.Publish.BadName` and log `reason` for this very attempt.
fn assert_publish_refused(ingest: &Server, name: &str, reason: &str) {
    let mark = ingest.log_mark();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, _, code) = runtime.block_on(async {
        TestClient::connect(ingest.rtmp, "live")
            .await
            .publish(name)
            .await
    });
    assert_eq!(
        code, "NetStream.Publish.BadName",
        "the publish was not refused"
    );
    assert!(
        ingest.wait_log_since(
            mark,
            &format!("unauthorized: {reason}"),
            Duration::from_secs(2)
        ),
        "no refusal for {reason:?} logged after the attempt"
    );
}

/// Waits until the registry holds `app/name`.
fn wait_registered(redis: &RedisServer, app: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.record(app, name).is_none() {
        assert!(Instant::now() < deadline, "{app}/{name} never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stream_keys_publish_under_the_public_name_and_die_when_rotated_or_revoked() {
    let dir = TempDir::new("keys");
    let p = Platform::start(&[]);
    let ingest = p.node("ingest", "ingest-a", &[]);
    let edge = p.node("edge", "edge-a", &[]);
    let every_log = [
        ("ingest", &ingest),
        ("edge", &edge),
        ("control", &p.control),
    ];

    // Admin API: no token, wrong token.
    let body = r#"{"app":"live","stream":"cam","metadata":{"channel":7,"note":"only-in-a-value"}}"#;
    assert_eq!(api(p.control.http, "POST", "/v1/keys", None, body).0, 401);
    assert_eq!(
        api(p.control.http, "POST", "/v1/keys", Some("nope"), body).0,
        401
    );
    assert_eq!(api(p.control.http, "GET", "/v1/keys", None, "").0, 401);
    assert_eq!(p.api("POST", "/v1/keys", r#"{"app":"live"}"#).0, 400);

    let (status, created) = p.api("POST", "/v1/keys", body);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["key"].as_str().unwrap().to_string();
    assert_eq!(created["stream"], "cam");
    assert_eq!(created["metadata"]["channel"], 7);
    // The secret is shown once: never by the reads, never in Redis, never in a log.
    let (_, shown) = p.api("GET", &format!("/v1/keys/{id}"), "");
    assert_eq!(shown["id"], id.as_str());
    assert!(shown.get("key").is_none() && !shown.to_string().contains(&secret));
    let (_, list) = p.api("GET", "/v1/keys", "");
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));
    assert_eq!(p.api("GET", "/v1/keys/key_nope", "").0, 404);
    // The Redis scan reads values, not only key names: it finds what only a value holds.
    assert!(!p.redis.keys_holding("only-in-a-value").is_empty());
    assert!(
        p.redis
            .keys()
            .iter()
            .all(|k| !k.contains("only-in-a-value"))
    );

    // Another key's stream runs through all of this: rotating and revoking `cam` leave it be.
    let (_, other) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"other"}"#);
    let other_secret = other["key"].as_str().unwrap().to_string();
    let mut bystander = looping_publisher(
        &ingest.url(&format!("live/{other_secret}")),
        &dir.path("other.log"),
    );
    wait_registered(&p.redis, "live", "other");

    // A wrong key: refused, nothing registered.
    assert_publish_refused(&ingest, "sk_wrong", "unknown stream key");
    assert!(p.redis.record("live", "cam").is_none());
    assert!(p.redis.keys_holding("sk_wrong").is_empty());

    // The key publishes `live/cam`; viewers play it by its public name from the edge.
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&ingest.url(&format!("live/{secret}")), &log);
    wait_registered(&p.redis, "live", "cam");
    let streams = probe_streams(&edge.url("live/cam"));
    assert!(
        streams.iter().any(|s| s.starts_with("h264")),
        "edge plays the public name: {streams:?}"
    );
    assert_secret_nowhere(&secret, &p.redis, &every_log);

    // The live view: owner, codecs, viewers per edge; the route sends players to the edge.
    let rtmp = FfmpegViewer::play(edge.rtmp, "live", "cam");
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let (status, view) = p.api("GET", "/v1/streams", "");
        assert_eq!(status, 200);
        let cam = view["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cam")
            .cloned();
        // Codecs land in the record with the lease's next renewal.
        if let Some(cam) = cam.filter(|c| c["edges"]["edge-a"] == 1 && c["video_codec"] == "h264") {
            break cam;
        }
        assert!(Instant::now() < deadline, "no viewer on edge-a in {view}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(live["ingest"], "ingest-a");
    let (status, route) = api(
        p.control.http,
        "GET",
        "/v1/streams/live/cam/route",
        None,
        "",
    );
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["pod"], "edge-a");
    assert_eq!(
        route["play_url"],
        format!("rtmp://127.0.0.1:{}/live/cam", edge.rtmp.port())
    );
    assert_eq!(
        api(
            p.control.http,
            "GET",
            "/v1/streams/live/none/route",
            None,
            ""
        )
        .0,
        404
    );
    drop(rtmp);

    // Rotation: the old secret's publish ends within 2 s, for that reason, and the old secret
    // is refused (not answered from the ingest's cache).
    let mark = ingest.log_mark();
    let (status, rotated) = p.api("POST", &format!("/v1/keys/{id}/rotate"), "");
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let took = wait_ended(&mut publisher, Duration::from_secs(5));
    eprintln!("rotation ended the publish in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "publish ended after {took:?}"
    );
    assert!(ingest.wait_log_since(
        mark,
        "publish revoked: stream key revoked",
        Duration::from_secs(2)
    ));
    assert_publish_refused(&ingest, &secret, "unknown stream key");

    // The new secret works, given as `?key=` this time; revoking ends it within 2 s.
    let log = dir.path("new.log");
    let mut publisher = looping_publisher(&ingest.url(&format!("live/cam?key={new_secret}")), &log);
    wait_registered(&p.redis, "live", "cam");
    assert_secret_nowhere(&new_secret, &p.redis, &every_log);
    let mark = ingest.log_mark();
    let (status, revoked) = p.api("DELETE", &format!("/v1/keys/{id}"), "");
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"], true);
    let took = wait_ended(&mut publisher, Duration::from_secs(5));
    eprintln!("revocation ended the publish in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "publish ended after {took:?}"
    );
    assert!(ingest.wait_log_since(
        mark,
        "publish revoked: stream key revoked",
        Duration::from_secs(2)
    ));
    assert_publish_refused(&ingest, &new_secret, "stream key revoked");

    // The ingest kept serving the other key's stream through all of it.
    assert!(bystander.is_running(), "the other key's publish ended");
    let streams = probe_streams(&edge.url("live/other"));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
    for secret in [&secret, &new_secret, &other_secret] {
        assert_secret_nowhere(secret, &p.redis, &every_log);
    }
}

/// A viewer for as long as it is held (ffmpeg playing into the void).
struct FfmpegViewer(ChildGuard);

impl FfmpegViewer {
    fn play(addr: SocketAddr, app: &str, name: &str) -> Self {
        Self(ChildGuard::spawn(
            std::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-i"])
                .arg(format!("rtmp://{addr}/{app}/{name}"))
                .args(["-c", "copy", "-f", "null", "-"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        ))
    }
}

/// Control warns at start when the Redis holding the keys keeps nothing across a restart
/// (the test Redis runs with `--save "" --appendonly no`), not when it writes an AOF, and says
/// so when it cannot ask (managed Redis services refuse `CONFIG`).
#[test]
fn control_warns_at_start_when_redis_does_not_persist() {
    let p = Platform::start(&[]);
    let warning = "Redis does not persist";
    assert!(
        p.control.wait_log(warning, Duration::from_secs(10)),
        "no persistence warning: {}",
        p.control.log()
    );
    let env = [
        ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
        ("LIVERELAY_ADMIN_TOKEN", ADMIN),
    ];
    let control_on =
        |redis: &RedisServer| Server::start_role("control", &["--redis-url", &redis.url()], &env);
    let persistent = RedisServer::start_with(&["--appendonly", "yes"]);
    let control = control_on(&persistent);
    assert!(control.wait_log("Redis persists its data", Duration::from_secs(10)));
    assert!(!control.log().contains(warning));
    let managed = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let control = control_on(&managed);
    assert!(control.wait_log(
        "Redis persistence could not be checked",
        Duration::from_secs(10)
    ));
    assert!(!control.log().contains(warning));
}

#[test]
fn control_unreachable_denies_publishing_with_a_clear_log_line() {
    let dir = TempDir::new("down");
    let redis = RedisServer::start();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &redis.url(), "--control-url", &closed],
        &[("LIVERELAY_CLUSTER_TOKEN", TOKEN)],
    );
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&ingest.url("live/sk_anything"), &log);
    wait_ended(&mut publisher, Duration::from_secs(10));
    assert!(
        ingest.wait_log(
            "control unreachable: publish denied (auth.on_control_unavailable = deny)",
            Duration::from_secs(2)
        ),
        "{}",
        ingest.log()
    );
    assert!(redis.keys().iter().all(|k| !k.contains(":stream:")));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("authorization service unavailable")
    );
}

/// `t=<unix>,v1=<hex>`: checks the HMAC over `<t>.<body>` with the hmac crate directly.
fn signature_valid(hook: &Hook, secret: &str) -> bool {
    let Some(header) = hook.header("x-liverelay-signature") else {
        return false;
    };
    let parts: std::collections::HashMap<&str, &str> = header
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&hook.body);
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

#[test]
fn event_webhooks_are_signed_and_retried() {
    let dir = TempDir::new("events");
    // The first delivery of each event fails: the retry must get through.
    let failed_once = std::sync::Mutex::new(std::collections::HashSet::new());
    let receiver = HookServer::start(move |h| {
        let id = h.header("x-liverelay-delivery").unwrap_or("").to_string();
        if failed_once.lock().unwrap().insert(id) {
            Reply::status(503)
        } else {
            Reply::status(204)
        }
    });
    let config = dir.path("control.toml");
    let url = receiver.url("/events");
    std::fs::write(
        &config,
        format!("[[control.webhooks]]\nurl = \"{url}\"\nsecret = \"whsec\"\n"),
    )
    .unwrap();
    let p = Platform::start_with_config(&config);
    let ingest = p.node("ingest", "ingest-a", &[]);
    let (_, created) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"show"}"#);
    let secret = created["key"].as_str().unwrap();
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&ingest.url(&format!("live/{secret}")), &log);
    let ok = |kind: &'static str| {
        move |h: &Hook| {
            h.header("x-liverelay-event") == Some(kind)
                && serde_json::from_slice::<serde_json::Value>(&h.body)
                    .is_ok_and(|v| v["type"] == kind)
        }
    };
    let started = receiver
        .wait_for(Duration::from_secs(10), ok("stream.started"))
        .expect("stream.started delivered");
    let event: serde_json::Value = serde_json::from_slice(&started.body).unwrap();
    assert_eq!(event["data"]["stream"], "show");
    assert_eq!(event["data"]["ingest"], "ingest-a");
    assert!(signature_valid(&started, "whsec"), "valid signature");
    assert!(!signature_valid(&started, "other"));
    publisher.kill();
    let ended = receiver
        .wait_for(Duration::from_secs(10), ok("stream.ended"))
        .expect("stream.ended delivered");
    assert!(signature_valid(&ended, "whsec"));
    // Every event came twice: refused once, then delivered by the retry.
    let deliveries = |kind: &str| {
        receiver
            .seen()
            .iter()
            .filter(|h| h.header("x-liverelay-event") == Some(kind))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while deliveries("stream.started") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(deliveries("stream.started"), 2);
    let retried = p
        .control
        .metric(r#"liverelay_webhook_deliveries_total{action="stream.started",result="retried"}"#);
    assert_eq!(retried, Some(1.0));
    let (_, revoked) = p.api(
        "DELETE",
        &format!("/v1/keys/{}", created["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(revoked["revoked"], true);
    let event = receiver
        .wait_for(Duration::from_secs(10), ok("key.revoked"))
        .expect("key.revoked delivered");
    assert!(signature_valid(&event, "whsec"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_play_tokens_are_checked_at_the_edge() {
    let dir = TempDir::new("tokens");
    let secrets = [
        ("LIVERELAY_AUTH__PLAY", "token"),
        ("LIVERELAY_AUTH__PLAY_TOKEN_SECRET", "playsecret"),
    ];
    let p = Platform::start(&secrets);
    let ingest = p.node("ingest", "ingest-a", &[("LIVERELAY_AUTH__PUBLISH", "open")]);
    // The edge caps lifetimes at 20 minutes, control at its default day: the edge refuses
    // what control (or anyone holding the secret) signs beyond its own cap.
    let edge_settings = [
        secrets[0],
        secrets[1],
        ("LIVERELAY_AUTH__PLAY_TOKEN_MAX_TTL_SECS", "1200"),
    ];
    let edge = p.node("edge", "edge-a", &edge_settings);
    let log = dir.path("publish.log");
    let _publisher = looping_publisher(&ingest.url("live/tv"), &log);
    wait_registered(&p.redis, "live", "tv");
    let token = |ttl: u64| {
        let (status, t) = p.api(
            "POST",
            "/v1/play-tokens",
            &format!(r#"{{"app":"live","stream":"tv","ttl_secs":{ttl}}}"#),
        );
        assert_eq!(status, 200, "{t}");
        t["token"].as_str().unwrap().to_string()
    };
    let valid = token(600);
    // ffprobe with the token in the stream name's query decodes the stream.
    let streams = probe_streams(&edge.url(&format!("live/tv?token={valid}")));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
    // Also accepted on the app (tcUrl) query.
    assert_eq!(
        play_status(edge.rtmp, &format!("live?token={valid}"), "tv").await,
        "NetStream.Play.Reset"
    );
    let refused = |code: String| assert_eq!(code, "NetStream.Play.Failed");
    refused(play_status(edge.rtmp, "live", "tv").await);
    let expired = token(0);
    refused(play_status(edge.rtmp, "live", &format!("tv?token={expired}")).await);
    let (expires, sig) = valid.split_once('.').unwrap();
    let forged = format!("{}.{sig}", expires.parse::<u64>().unwrap() + 3600);
    refused(play_status(edge.rtmp, "live", &format!("tv?token={forged}")).await);
    let other = format!("{expires}.{}", "0".repeat(sig.len()));
    refused(play_status(edge.rtmp, "live", &format!("tv?token={other}")).await);
    // A token for one stream does not open another.
    refused(play_status(edge.rtmp, "live", &format!("tv2?token={valid}")).await);
    let too_long = token(86_400);
    refused(play_status(edge.rtmp, "live", &format!("tv?token={too_long}")).await);
    assert!(edge.wait_log(
        "playback token lives longer than auth.play_token_max_ttl_secs",
        Duration::from_secs(2)
    ));
    assert!(edge.wait_log("playback token expired", Duration::from_secs(2)));
    assert!(edge.wait_log(
        "playback token signature does not match",
        Duration::from_secs(2)
    ));
    assert!(edge.wait_log("no playback token", Duration::from_secs(2)));
    // Neither the signing secret nor any token, good or bad, is kept or logged anywhere.
    let every_log = [
        ("ingest", &ingest),
        ("edge", &edge),
        ("control", &p.control),
    ];
    for secret in ["playsecret", &valid, &expired, &forged, &other, &too_long] {
        assert_secret_nowhere(secret, &p.redis, &every_log);
    }
}

/// nginx-rtmp's notify callbacks against a receiver that answers like an nginx-rtmp auth
/// backend: the fields nginx-rtmp sends, 2xx allows, 3xx renames, anything else denies.
#[test]
fn nginx_style_callbacks_allow_rename_and_deny() {
    let dir = TempDir::new("notify");
    let receiver = HookServer::start(|h| match (h.path.as_str(), h.field("name").as_str()) {
        ("/on_publish", "blocked") => Reply::status(403),
        ("/on_publish", "src") => Reply::redirect("renamed"),
        ("/on_play", "secret") => Reply::status(401),
        _ => Reply::status(200),
    });
    let config = dir.path("notify.toml");
    let mut toml = String::from("[[notify]]\napp = \"live\"\nnotify_update_timeout_secs = 1\n");
    for call in [
        "on_connect",
        "on_publish",
        "on_play",
        "on_publish_done",
        "on_play_done",
        "on_done",
        "on_update",
    ] {
        toml += &format!("{call} = \"{}\"\n", receiver.url(&format!("/{call}")));
    }
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_role("standalone", &["--config", config.to_str().unwrap()], &[]);

    // 403 on publish: denied, nothing goes live.
    let log = dir.path("blocked.log");
    let mut blocked = looping_publisher(&server.url("live/blocked"), &log);
    wait_ended(&mut blocked, Duration::from_secs(10));
    assert!(server.wait_log("publish callback answered 403", Duration::from_secs(2)));
    assert!(
        server
            .stream_info("live", "blocked")
            .is_none_or(|s| s["live"] == false)
    );

    // 302 with Location: the publish goes live under the new name, with nginx-rtmp's fields.
    let log = dir.path("src.log");
    let mut publisher = looping_publisher(&server.url("live/src?sign=abc"), &log);
    server.wait_live("live", "renamed", Duration::from_secs(10));
    let publish = receiver
        .wait_for(Duration::from_secs(2), |h| {
            h.path == "/on_publish" && h.field("name") == "src"
        })
        .unwrap();
    let f = publish.form();
    assert_eq!(publish.method, "POST");
    assert_eq!(f["call"], "publish");
    assert_eq!(f["app"], "live");
    assert_eq!(f["type"], "live");
    assert_eq!(f["addr"], "127.0.0.1");
    assert_eq!(f["sign"], "abc", "the name's query is passed on");
    assert!(f["tcurl"].starts_with("rtmp://"));
    assert!(f["flashver"].starts_with("FMLE"), "{f:?}");
    assert!(f["clientid"].parse::<u64>().is_ok());
    let connect = receiver
        .wait_for(Duration::from_secs(2), |h| h.path == "/on_connect")
        .unwrap();
    assert_eq!(connect.field("call"), "connect");
    assert!(connect.field("epoch").parse::<u64>().is_ok());

    // Plays: allowed with the play fields, or refused by the backend.
    let streams = probe_streams(&server.url("live/renamed"));
    assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
    let play = receiver
        .wait_for(Duration::from_secs(2), |h| h.path == "/on_play")
        .unwrap();
    assert_eq!(play.field("call"), "play");
    assert_eq!(play.field("name"), "renamed");
    assert!(play.form().contains_key("start") && play.form().contains_key("reset"));
    assert!(
        receiver
            .wait_for(Duration::from_secs(5), |h| h.path == "/on_play_done")
            .is_some()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let code = runtime.block_on(play_status(server.rtmp, "live", "secret"));
    assert_eq!(code, "NetStream.Play.Failed");

    // on_update comes every second while publishing; done calls come at the end.
    let update = receiver
        .wait_for(Duration::from_secs(5), |h| h.path == "/on_update")
        .unwrap();
    assert_eq!(update.field("call"), "update_publish");
    assert!(update.form().contains_key("time"));
    publisher.kill();
    let done = receiver
        .wait_for(Duration::from_secs(5), |h| h.path == "/on_publish_done")
        .unwrap();
    assert_eq!(done.field("call"), "publish_done");
    assert_eq!(done.field("name"), "renamed");
    assert!(
        receiver
            .wait_for(Duration::from_secs(5), |h| h.path == "/on_done"
                && h.field("call") == "done")
            .is_some()
    );
}

/// A refusing `on_update` ends a running publish (nginx-rtmp's behaviour).
#[test]
fn a_refusing_update_callback_ends_the_session() {
    let dir = TempDir::new("update");
    let receiver = HookServer::start(|h| {
        if h.path == "/on_update" {
            Reply::status(403)
        } else {
            Reply::status(200)
        }
    });
    let config = dir.path("notify.toml");
    let toml = format!(
        "[[notify]]\non_update = \"{}\"\nnotify_update_timeout_secs = 1\n",
        receiver.url("/on_update")
    );
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_role("standalone", &["--config", config.to_str().unwrap()], &[]);
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&server.url("live/upd"), &log);
    server.wait_live("live", "upd", Duration::from_secs(10));
    let took = wait_ended(&mut publisher, Duration::from_secs(10));
    assert!(took < Duration::from_secs(4), "ended after {took:?}");
    assert!(server.wait_log("on_update refused the session", Duration::from_secs(2)));
}

/// Drops through the API end a stream's viewers (nginx-rtmp's control drop).
#[test]
fn dropping_viewers_through_the_api() {
    let dir = TempDir::new("drop");
    let p = Platform::start(&[]);
    let ingest = p.node("ingest", "ingest-a", &[("LIVERELAY_AUTH__PUBLISH", "open")]);
    let edge = p.node("edge", "edge-a", &[]);
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&ingest.url("live/dropme"), &log);
    wait_registered(&p.redis, "live", "dropme");
    let mut viewer = FfmpegViewer::play(edge.rtmp, "live", "dropme");
    edge.wait_viewers("live", "dropme", 1, Duration::from_secs(10));
    assert_eq!(
        api(
            p.control.http,
            "POST",
            "/v1/streams/live/dropme/drop",
            None,
            ""
        )
        .0,
        401
    );
    let (status, sent) = p.api(
        "POST",
        "/v1/streams/live/dropme/drop",
        r#"{"target":"viewers"}"#,
    );
    assert_eq!(status, 202, "{sent}");
    assert!(sent["sent_to_pods"].as_u64().unwrap() >= 2);
    wait_ended(&mut viewer.0, Duration::from_secs(5));
    assert!(edge.wait_log(
        "play revoked: dropped by an operator",
        Duration::from_secs(2)
    ));
    assert!(publisher.is_running(), "the publisher was not a target");
    let (status, _) = p.api("POST", "/v1/streams/live/dropme/drop", "");
    assert_eq!(status, 202);
    wait_ended(&mut publisher, Duration::from_secs(5));
}

/// The gRPC API: admin calls need the admin token, publish authorization the cluster token,
/// and a key made over gRPC authorizes exactly its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_api_keeps_to_its_tokens() {
    use liverelay_proto::control::v1::control_client::ControlClient;
    use liverelay_proto::control::v1::{AuthorizePublishRequest, CreateKeyRequest, KeyRef};
    use tonic::Code;

    let p = Platform::start(&[]);
    let mut client = ControlClient::connect(p.control_url()).await.unwrap();
    fn with<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }
    let create = || CreateKeyRequest {
        app: "live".into(),
        stream: "grpc".into(),
        expires_at: 0,
        metadata_json: r#"{"plan":"pro"}"#.into(),
    };
    let denied = client.create_key(create()).await.unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let denied = client.create_key(with(TOKEN, create())).await.unwrap_err();
    assert_eq!(
        denied.code(),
        Code::Unauthenticated,
        "the cluster token is not an admin token"
    );
    let created = client
        .create_key(with(ADMIN, create()))
        .await
        .unwrap()
        .into_inner();
    let key = created.key.unwrap();
    assert_eq!((key.app.as_str(), key.stream.as_str()), ("live", "grpc"));

    let ask = |app: &str, secret: &str| AuthorizePublishRequest {
        app: app.into(),
        key: secret.into(),
        client_addr: "127.0.0.1:1".into(),
        pod: "test".into(),
    };
    let denied = client
        .authorize_publish(with(ADMIN, ask("live", &created.secret)))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::Unauthenticated,
        "ingests use the cluster token"
    );
    let allowed = client
        .authorize_publish(with(TOKEN, ask("live", &created.secret)))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed.allowed);
    assert_eq!(
        (allowed.stream.as_str(), allowed.key_id.as_str()),
        ("grpc", key.id.as_str())
    );
    let other_app = client
        .authorize_publish(with(TOKEN, ask("other", &created.secret)))
        .await
        .unwrap()
        .into_inner();
    assert!(!other_app.allowed);
    assert_eq!(other_app.reason, "stream key belongs to another app");

    let rotated = client
        .rotate_key(with(ADMIN, KeyRef { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let old = client
        .authorize_publish(with(TOKEN, ask("live", &created.secret)))
        .await
        .unwrap()
        .into_inner();
    assert!(!old.allowed, "the old secret is dead after rotation");
    let revoked = client
        .revoke_key(with(ADMIN, KeyRef { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked);
    let after = client
        .authorize_publish(with(TOKEN, ask("live", &rotated.secret)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.reason, "stream key revoked");
    let missing = client
        .get_key(with(
            ADMIN,
            KeyRef {
                id: "key_none".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // A key past its expiry is refused with the reason.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let soon = CreateKeyRequest {
        expires_at: now + 1,
        ..create()
    };
    let expiring = client
        .create_key(with(ADMIN, soon))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = client
        .authorize_publish(with(TOKEN, ask("live", &expiring.secret)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expired.reason, "stream key expired");
}

/// Simulcast: a restream target added to a stream key through the API makes the owning ingest
/// push the key's stream to a real nginx-rtmp; removing it stops the push.
#[test]
fn restream_targets_follow_the_stream_key() {
    let dir = TempDir::new("restream");
    let nginx = support::nginx::Nginx::start();
    let p = Platform::start(&[]);
    let ingest = p.node("ingest", "ingest-a", &[]);
    let (_, key) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"sim"}"#);
    let id = key["id"].as_str().unwrap();
    let secret = key["key"].as_str().unwrap();
    let targets = format!("/v1/keys/{id}/targets");
    assert_eq!(api(p.control.http, "POST", &targets, None, "{}").0, 401);
    let bad = p.api("POST", &targets, r#"{"url":"http://nope/x"}"#);
    assert_eq!(bad.0, 400, "{}", bad.1);
    let target_url = nginx.url("live/out-secret");
    let (status, target) = p.api("POST", &targets, &format!(r#"{{"url":"{target_url}"}}"#));
    assert_eq!(status, 201, "{target}");
    assert!(
        !target["url"].as_str().unwrap().contains("out-secret"),
        "the target's key is hidden: {target}"
    );
    let (_, listed) = p.api("GET", &targets, "");
    assert_eq!(listed["targets"].as_array().unwrap().len(), 1);
    // An rtmps:// target with TLS files on the ingest: here a CA that is not there, which the
    // ingest names when it runs the push (a client certificate needs its key too).
    let missing_ca = "/nonexistent/liverelay-restream-ca.pem";
    let tls_url = format!("rtmps://127.0.0.1:{}/live/tls-out", free_port());
    let half = p.api(
        "POST",
        &targets,
        &format!(r#"{{"url":"{tls_url}","tls_client_cert":"/tls/c.pem"}}"#),
    );
    assert!(
        half.0 == 400 && half.1.to_string().contains("go together"),
        "{half:?}"
    );
    let (status, tls_target) = p.api(
        "POST",
        &targets,
        &format!(r#"{{"url":"{tls_url}","tls_ca":"{missing_ca}"}}"#),
    );
    assert_eq!(status, 201, "{tls_target}");

    let _publisher =
        looping_publisher(&ingest.url(&format!("live/{secret}")), &dir.path("pub.log"));
    // Relay URLs and remote errors are for the admin only.
    let (status, rows) = api(p.control.http, "GET", "/v1/relays", None, "");
    assert_eq!(
        status, 401,
        "GET /v1/relays without the admin token: {rows}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let relay = loop {
        let (_, rows) = p.api("GET", "/v1/relays", "");
        let live = rows["relays"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == target["relay_id"] && r["state"] == "live")
            .cloned();
        if let Some(row) = live {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "the push never went live: {rows}\n{}",
            ingest.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(relay["owner"], "ingest-a");
    assert_eq!(relay["stream"], "live/sim");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, rows) = p.api("GET", "/v1/relays", "");
        let named = rows["relays"].as_array().unwrap().iter().any(|r| {
            r["id"] == tls_target["relay_id"]
                && r["last_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("tls: ") && e.contains(missing_ca))
        });
        if named {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rtmps:// target never read its CA: {rows}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let streams = probe_streams(&target_url);
    assert!(
        streams.iter().any(|s| s.starts_with("h264")),
        "{streams:?}\n{}",
        nginx.log()
    );

    let target_id = target["id"].as_str().unwrap();
    assert_eq!(
        p.api("DELETE", &format!("{targets}/{target_id}"), "").0,
        204
    );
    assert_eq!(
        p.api("DELETE", &format!("{targets}/{target_id}"), "").0,
        404
    );
    assert!(ingest.wait_log(
        "relay no longer declared; stopping it",
        Duration::from_secs(10)
    ));
}

/// A draining edge (SIGTERM) reports it at once, and control stops routing new viewers to it.
/// A draining edge leaves routing at once, while it still serves its viewers, and a pod that
/// exits leaves no report behind for control to route to.
#[test]
fn control_stops_routing_to_a_draining_edge() {
    let dir = TempDir::new("route-drain");
    let p = Platform::start(&[]);
    let ingest = p.node("ingest", "ingest-a", &[("LIVERELAY_AUTH__PUBLISH", "open")]);
    // Reports every 30 s: a switch within seconds shows the draining pod reported at once.
    let grace = [
        ("LIVERELAY_RTMP__DRAIN_GRACE_SECS", "20"),
        ("LIVERELAY_CLUSTER__REPORT_INTERVAL_SECS", "30"),
    ];
    let mut edge_a = p.node("edge", "edge-a", &grace);
    let edge_b = p.node("edge", "edge-b", &grace);
    let _publisher = looping_publisher(&ingest.url("live/routed"), &dir.path("pub.log"));
    // A viewer on each edge keeps the draining one serving through its grace period.
    let mut viewer_a = FfmpegViewer::play(edge_a.rtmp, "live", "routed");
    let _viewer_b = FfmpegViewer::play(edge_b.rtmp, "live", "routed");
    edge_a.wait_viewers("live", "routed", 1, Duration::from_secs(15));
    edge_b.wait_viewers("live", "routed", 1, Duration::from_secs(15));
    let route = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, route) = api(
                p.control.http,
                "GET",
                "/v1/streams/live/routed/route",
                None,
                "",
            );
            if status == 200 && route["pod"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never routed to {want}: {status} {route}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Equal load: the first pod by name.
    route("edge-a");
    edge_a.terminate();
    let drained = Instant::now();
    route("edge-b");
    eprintln!(
        "routing left the draining edge after {:?}",
        drained.elapsed()
    );
    assert!(drained.elapsed() < Duration::from_secs(5));
    assert!(
        edge_a.is_running(),
        "edge-a must still be draining (serving its viewer) when routing leaves it"
    );
    // Its last viewer gone, the edge finishes draining; its report is gone when it has exited.
    viewer_a.0.kill();
    assert!(
        edge_a.wait_exit(Duration::from_secs(15)).is_some(),
        "edge-a did not exit after its last viewer left"
    );
    let report = p.redis.cli(&["EXISTS", "liverelay:node:{edge-a}"]);
    assert_eq!(
        report.as_deref(),
        Some("0"),
        "an exited pod left its load report in Redis"
    );
}

/// `auth.on_control_unavailable = allow` keeps publishers going while control is away, but
/// never makes a secret a public stream name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_unreachable_with_allow_never_publishes_a_key_as_a_name() {
    let redis = RedisServer::start();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &redis.url(), "--control-url", &closed],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_AUTH__ON_CONTROL_UNAVAILABLE", "allow"),
        ],
    );
    let mut as_name = TestClient::connect(ingest.rtmp, "live").await;
    let (_, _, code) = as_name.publish("sk_secret").await;
    assert_eq!(code, "NetStream.Publish.Denied");
    assert!(ingest.wait_log(
        "the stream name is the key; it cannot be mapped without control",
        Duration::from_secs(2)
    ));
    let mut as_param = TestClient::connect(ingest.rtmp, "live").await;
    let (_, _, code) = as_param.publish("cam?key=sk_secret").await;
    assert_eq!(code, "NetStream.Publish.Start");
    assert!(redis.record("live", "cam").is_some());
    assert_secret_nowhere("sk_secret", &redis, &[("ingest", &ingest)]);
}

const WEBHOOK_QUEUE: &str = "liverelay:webhook-events";

/// The webhook queue's consumer groups (`XINFO GROUPS`), none before the queue exists.
fn webhook_groups(redis: &RedisServer) -> Vec<serde_json::Value> {
    match redis.try_query(&["XINFO", "GROUPS", WEBHOOK_QUEUE]) {
        Ok(serde_json::Value::Array(groups)) => groups,
        _ => Vec::new(),
    }
}

/// How many control replicas read the webhook queue, over all its groups.
fn webhook_consumers(redis: &RedisServer) -> u64 {
    webhook_groups(redis)
        .iter()
        .filter_map(|g| g["consumers"].as_u64())
        .sum()
}

/// Waits until every queued webhook event was handed out and acknowledged in every group:
/// every delivery (a duplicate too) happens before its acknowledgement, so what a receiver
/// got is final then.
fn wait_queue_settled(redis: &RedisServer, queued: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let groups = webhook_groups(redis);
        let settled = |g: &serde_json::Value| {
            g["entries-read"].as_u64() == Some(queued) && g["pending"].as_u64() == Some(0)
        };
        if !groups.is_empty() && groups.iter().all(settled) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook queue never settled ({queued} queued): {groups:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes the control config that sends every event to `receiver`'s `/events`, signed with
/// `whsec`; returns its path.
fn webhook_config(dir: &TempDir, receiver: &HookServer) -> std::path::PathBuf {
    let config = dir.path("control.toml");
    let url = receiver.url("/events");
    std::fs::write(
        &config,
        format!("[[control.webhooks]]\nurl = \"{url}\"\nsecret = \"whsec\"\n"),
    )
    .unwrap();
    config
}

/// A control replica `pod` on `redis` with the webhook config, and more environment.
fn webhook_control(
    redis: &RedisServer,
    config: &std::path::Path,
    pod: &str,
    env: &[(&str, &str)],
) -> Server {
    let base = [
        ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
        ("LIVERELAY_ADMIN_TOKEN", ADMIN),
        ("POD_NAME", pod),
    ];
    Server::start_role(
        "control",
        &[
            "--redis-url",
            &redis.url(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[&base[..], env].concat(),
    )
}

/// Two control replicas share the queue's consumer group; every event goes out once.
#[test]
fn each_webhook_event_is_delivered_by_exactly_one_control_replica() {
    let dir = TempDir::new("events-once");
    let receiver = HookServer::start(|_| Reply::status(204));
    let config = webhook_config(&dir, &receiver);
    let p = Platform::start_with_config(&config);
    let _second = webhook_control(&p.redis, &config, "control-1", &[]);
    // Both replicas are in the group before any event is queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while webhook_consumers(&p.redis) != 2 {
        assert!(Instant::now() < deadline, "both replicas never joined");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ingest = p.node("ingest", "ingest-a", &[]);
    let (_, created) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"once"}"#);
    let secret = created["key"].as_str().unwrap();
    let mut publisher =
        looping_publisher(&ingest.url(&format!("live/{secret}")), &dir.path("pub.log"));
    let kind = |kind: &'static str| move |h: &Hook| h.header("x-liverelay-event") == Some(kind);
    receiver
        .wait_for(Duration::from_secs(10), kind("stream.started"))
        .expect("stream.started delivered");
    publisher.kill();
    receiver
        .wait_for(Duration::from_secs(10), kind("stream.ended"))
        .expect("stream.ended delivered");
    let (status, _) = api(
        p.control.http,
        "DELETE",
        &format!("/v1/keys/{}", created["id"].as_str().unwrap()),
        Some(ADMIN),
        "",
    );
    assert_eq!(status, 200);
    receiver
        .wait_for(Duration::from_secs(10), kind("key.revoked"))
        .expect("key.revoked delivered");
    wait_queue_settled(&p.redis, 3);
    let ids: Vec<String> = receiver
        .seen()
        .iter()
        .map(|h| {
            h.header("x-liverelay-delivery")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 3, "each event arrived once: {ids:?}");
}

/// Webhook events come from a queue in Redis: the events of publishes made while no control
/// ran are delivered when one starts, signed, and in order per stream although each
/// `stream.started` is refused once and only its retry gets through.
#[test]
fn webhook_events_from_while_control_was_down_are_delivered_in_order() {
    let dir = TempDir::new("events-queued");
    let refused_once = std::sync::Mutex::new(std::collections::HashSet::new());
    let receiver = HookServer::start(move |h| {
        let id = h.header("x-liverelay-delivery").unwrap_or("").to_string();
        let started = h.header("x-liverelay-event") == Some("stream.started");
        if started && refused_once.lock().unwrap().insert(id) {
            Reply::status(503)
        } else {
            Reply::status(204)
        }
    });
    let redis = RedisServer::start();
    let url = redis.url();
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &url],
        &[("LIVERELAY_CLUSTER_TOKEN", TOKEN), ("POD_NAME", "ingest-q")],
    );
    let names = ["q1", "q2"];
    let mut publishers: Vec<(ChildGuard, std::path::PathBuf)> = names
        .iter()
        .map(|name| {
            let log = dir.path(&format!("{name}.log"));
            (
                ffmpeg_publish(sample_flv(), &ingest.url(&format!("live/{name}")), &log),
                log,
            )
        })
        .collect();
    for (publisher, log) in &mut publishers {
        wait_success(publisher, Duration::from_secs(30), log);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.query(&["XLEN", WEBHOOK_QUEUE]) != 4 {
        assert!(Instant::now() < deadline, "4 events never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        receiver.seen().is_empty(),
        "nothing delivered without control"
    );

    let config = webhook_config(&dir, &receiver);
    let _control = webhook_control(&redis, &config, "control-late", &[]);
    wait_queue_settled(&redis, 4);
    let seen = receiver.seen();
    for name in names {
        let of = |kind: &str| -> Vec<(usize, &Hook)> {
            seen.iter()
                .enumerate()
                .filter(|(_, h)| {
                    let event: serde_json::Value =
                        serde_json::from_slice(&h.body).unwrap_or_default();
                    event["type"] == kind && event["data"]["stream"] == name
                })
                .collect()
        };
        let (started, ended) = (of("stream.started"), of("stream.ended"));
        assert_eq!(started.len(), 2, "{name}: refused once, then delivered");
        assert_eq!(ended.len(), 1, "{name}: stream.ended once");
        let (delivered_at, ended_at) = (started[1].0, ended[0].0);
        assert!(
            delivered_at < ended_at,
            "{name}: stream.ended (request {ended_at}) overtook the retried stream.started \
             (request {delivered_at})"
        );
        for (_, hook) in [started[1], ended[0]] {
            assert!(signature_valid(hook, "whsec"), "{name}: signed");
            let event: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
            assert_eq!(event["data"]["ingest"], "ingest-q");
        }
    }
}

/// A control replica that dies while delivering leaves its event pending in the group;
/// another replica takes it over once it has been idle `control.webhook_takeover_secs`.
#[test]
fn a_dead_replicas_webhook_event_is_taken_over() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = TempDir::new("events-takeover");
    let release = Arc::new(AtomicBool::new(false));
    // The delivery id of the first request, which hangs (until released) while its sender is
    // killed. (The receiver records requests only once answered.)
    let held = Arc::new(Mutex::new(None::<String>));
    let receiver = {
        let (release, held) = (release.clone(), held.clone());
        HookServer::start(move |h| {
            let id = h.header("x-liverelay-delivery").unwrap_or("").to_owned();
            let first = {
                let mut held = held.lock().unwrap();
                let first = held.is_none();
                if first {
                    *held = Some(id);
                }
                first
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while first && !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            Reply::status(204)
        })
    };
    let redis = RedisServer::start();
    let config = webhook_config(&dir, &receiver);
    let takeover = [("LIVERELAY_CONTROL__WEBHOOK_TAKEOVER_SECS", "1")];
    let mut first = webhook_control(&redis, &config, "control-a", &takeover);
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &redis.url()],
        &[("LIVERELAY_CLUSTER_TOKEN", TOKEN), ("POD_NAME", "ingest-t")],
    );
    let _publisher = looping_publisher(&ingest.url("live/t"), &dir.path("pub.log"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        if let Some(id) = held.lock().unwrap().clone() {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "control-a never sent stream.started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill();
    let second = webhook_control(&redis, &config, "control-b", &takeover);
    let taken_over = receiver.wait_for(Duration::from_secs(15), |h| {
        h.header("x-liverelay-delivery") == Some(id.as_str())
    });
    assert!(
        taken_over.is_some(),
        "{id} was never taken over: {:?}\n{}",
        redis.try_query(&["XPENDING", WEBHOOK_QUEUE, "webhooks", "-", "+", "10"]),
        second.log()
    );
    release.store(true, Ordering::SeqCst);
    wait_queue_settled(&redis, 1);
    assert!(second.wait_log("webhook delivered", Duration::from_secs(1)));
}

/// With stream keys on, nginx-style callbacks see the public name and the other arguments,
/// never the key: not given as `?key=` on the name, nor on the app (and so in tcUrl), nor as
/// the stream name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_never_see_a_stream_key() {
    let dir = TempDir::new("notify-keys");
    let receiver = HookServer::start(|_| Reply::status(200));
    let mut toml = String::from("[[notify]]\nnotify_update_timeout_secs = 1\n");
    for call in [
        "on_connect",
        "on_publish",
        "on_publish_done",
        "on_done",
        "on_update",
    ] {
        toml += &format!("{call} = \"{}\"\n", receiver.url(&format!("/{call}")));
    }
    let config = dir.path("notify.toml");
    std::fs::write(&config, toml).unwrap();
    let p = Platform::start(&[]);
    let ingest = p.node_with(
        "ingest",
        "ingest-a",
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let (_, created) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"pub"}"#);
    let secret = created["key"].as_str().unwrap();

    // The three places a key rides, each with another argument that must still get through.
    let attempts = [
        ("live".to_string(), format!("cam?key={secret}&sign=n")),
        (format!("live?key={secret}&sign=a"), "cam".to_string()),
        ("live".to_string(), secret.to_string()),
    ];
    let calls = |path: &str| receiver.seen().iter().filter(|h| h.path == path).count();
    for (n, (app, name)) in attempts.iter().enumerate() {
        let mut client = TestClient::connect(ingest.rtmp, app).await;
        let (_, _, code) = client.publish(name).await;
        assert_eq!(code, "NetStream.Publish.Start", "{app} {name}");
        // Held until an update call went out, then ended: every kind of call is made.
        let (updates, deadline) = (calls("/on_update"), Instant::now() + Duration::from_secs(5));
        while calls("/on_update") == updates {
            assert!(Instant::now() < deadline, "no on_update for {app} {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(client);
        // The session is over (its last call made, the name free) before the next one.
        let deadline = Instant::now() + Duration::from_secs(5);
        let live = || {
            ingest
                .stream_info("live", "pub")
                .is_some_and(|s| s["live"] == true)
        };
        while calls("/on_done") == n || live() {
            assert!(Instant::now() < deadline, "{app} {name} did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let hooks = receiver.seen();
    // Positive control: the calls carried the public name and the other arguments.
    let publishes: Vec<_> = hooks.iter().filter(|h| h.path == "/on_publish").collect();
    assert_eq!(publishes.len(), attempts.len());
    assert!(publishes.iter().all(|h| h.field("name") == "pub"));
    // The name's query goes to on_publish, the app's to on_connect.
    let signs: Vec<String> = publishes.iter().map(|h| h.field("sign")).collect();
    assert_eq!(signs, ["n", "", ""]);
    let connects: Vec<String> = hooks
        .iter()
        .filter(|h| h.path == "/on_connect")
        .map(|h| h.field("sign"))
        .collect();
    assert_eq!(connects, ["", "a", ""]);
    for path in ["/on_connect", "/on_publish_done", "/on_update"] {
        assert!(hooks.iter().any(|h| h.path == path), "no {path} call");
    }
    for hook in &hooks {
        let text = format!(
            "{} {}?{} {:?} {}",
            hook.method,
            hook.path,
            hook.query,
            hook.headers,
            String::from_utf8_lossy(&hook.body)
        );
        let form = hook.form();
        assert!(
            !text.contains(secret)
                && !form.contains_key("key")
                && !form.values().any(|v| v.contains("key=")),
            "a callback saw the key: {text}"
        );
    }
}

/// An nginx-rtmp auth backend works unchanged: given the same publish and play, nginx-rtmp and
/// liverelay call the same receiver with the same form fields.
#[test]
fn callbacks_send_what_nginx_rtmp_sends() {
    let dir = TempDir::new("notify-nginx");
    let receiver = HookServer::start(|_| Reply::status(200));
    let calls = [
        "on_publish",
        "on_play",
        "on_publish_done",
        "on_play_done",
        "on_update",
    ];
    let url = |server: &str, call: &str| receiver.url(&format!("/{server}/{call}"));
    let directives: String = calls
        .iter()
        .map(|c| format!("{c} {};", url("nginx", c)))
        .collect();
    let nginx =
        support::nginx::Nginx::start_with(&format!("{directives} notify_update_timeout 1s;"));
    let mut toml = String::from("[[notify]]\nnotify_update_timeout_secs = 1\n");
    for c in calls {
        toml += &format!("{c} = \"{}\"\n", url("liverelay", c));
    }
    let config = dir.path("notify.toml");
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_role("standalone", &["--config", config.to_str().unwrap()], &[]);

    // The same client, app, name and arguments against both.
    let mut publishers =
        [("nginx", nginx.url("")), ("liverelay", server.url(""))].map(|(name, base)| {
            let log = dir.path(&format!("{name}.log"));
            looping_publisher(&format!("{base}live/cmp?sign=abc&user=7"), &log)
        });
    let call = |server: &str, call: &str| {
        let path = format!("/{server}/{call}");
        receiver
            .wait_for(Duration::from_secs(10), |h| h.path == path)
            .unwrap_or_else(|| panic!("no {path} call: {:?}", receiver.seen()))
    };
    let compare = |name: &str| {
        let (a, b) = (call("nginx", name), call("liverelay", name));
        eprintln!(
            "{name}\n  nginx-rtmp: {:?}\n  liverelay:  {:?}",
            a.form(),
            b.form()
        );
        assert_eq!(a.method, b.method, "{name}");
        let (mut a, mut b) = (a.form(), b.form());
        let mut names: Vec<&String> = a.keys().collect();
        names.sort();
        let mut other: Vec<&String> = b.keys().collect();
        other.sort();
        assert_eq!(names, other, "{name}: the same field names");
        // Each server's own address and client counter.
        for form in [&mut a, &mut b] {
            let tcurl = form.remove("tcurl").unwrap();
            assert!(tcurl.starts_with("rtmp://127.0.0.1:") && tcurl.ends_with("/live"));
            let id = form.remove("clientid").unwrap();
            assert!(id.parse::<u64>().is_ok(), "{name}: clientid {id:?}");
        }
        // Intended: nginx-rtmp keeps flashVer in a 32-byte buffer and cuts it at 31 bytes
        // (ffmpeg's "FMLE/3.0 (compatible; Lavf…" is longer); liverelay sends it whole.
        let (cut, whole) = (a.remove("flashver").unwrap(), b.remove("flashver").unwrap());
        assert_eq!(cut, whole[..whole.len().min(31)], "{name}: flashver");
        // Timings are compared by name only (above): nginx-rtmp's `timestamp` is the stream's,
        // liverelay's the session's age. A play's start, duration and reset must match too
        // (ffmpeg's start of -2000 as the unsigned 4294965296, absent ones as 0).
        for field in ["time", "timestamp"] {
            a.remove(field);
            b.remove(field);
        }
        assert_eq!(a, b, "{name}: the same values");
    };
    compare("on_publish");
    for (name, base) in [("nginx", nginx.url("")), ("liverelay", server.url(""))] {
        let streams = probe_streams(&format!("{base}live/cmp?viewer=9"));
        assert!(
            streams.iter().any(|s| s.starts_with("h264")),
            "{name}: {streams:?}"
        );
    }
    compare("on_play");
    compare("on_play_done");
    compare("on_update");
    for publisher in &mut publishers {
        publisher.kill();
    }
    compare("on_publish_done");
}

/// The form fields of a callback as sent, duplicates included (`Hook::form` keeps one).
fn raw_fields(hook: &Hook) -> Vec<(String, String)> {
    let source: &[u8] = if hook.method == "GET" {
        hook.query.as_bytes()
    } else {
        &hook.body
    };
    form_urlencoded::parse(source).into_owned().collect()
}

/// The code and description of the next status a client gets.
async fn first_status(client: &mut TestClient) -> (String, String) {
    let status = client
        .expect(Duration::from_secs(10), |e| {
            matches!(e, ClientEvent::Status { .. })
        })
        .await;
    match status {
        Some(ClientEvent::Status {
            code, description, ..
        }) => (code, description),
        other => panic!("no status: {other:?}"),
    }
}

/// A client cannot make a callback backend read another name or address, callbacks never see
/// `key` or `token`, and a refused client learns nothing about the backend: a fixed reason
/// goes to it, the details (URL without its query, status, error) to the log.
#[tokio::test(flavor = "multi_thread")]
async fn callbacks_get_server_fields_once_and_clients_only_a_fixed_reason() {
    let dir = TempDir::new("notify-hostile");
    let receiver = HookServer::start(|h| match h.path.as_str() {
        "/deny" => Reply::status(500),
        _ => Reply::status(200),
    });
    // Nothing listens on this port: the callback cannot be reached.
    let down = format!("http://127.0.0.1:{}/on_publish?psk=hooksecret", free_port());
    let toml = format!(
        "[[notify]]\napp = \"live\"\nnotify_method = \"get\"\non_publish = \"{}\"\n\
         on_play = \"{}\"\n\n[[notify]]\napp = \"down\"\non_publish = \"{down}\"\n",
        receiver.url("/on_publish"),
        receiver.url("/deny?psk=hooksecret"),
    );
    let config = dir.path("notify.toml");
    std::fs::write(&config, toml).unwrap();
    let server = Server::start_role("standalone", &["--config", config.to_str().unwrap()], &[]);

    // Every server field a client might try to shadow, and both secrets, in the name's query
    // and the app's (tcUrl).
    let mut client = TestClient::connect(server.rtmp, "live?key=appkey&token=apptoken&a=1").await;
    let hostile = "cam?name=other&addr=1.2.3.4&call=play&app=x&clientid=9&flashver=f&swfurl=s\
                   &tcurl=t&pageurl=p&type=record&epoch=1&start=1&duration=2&reset=1&key=k1\
                   &token=t1&sign=abc";
    let (_, _, code) = client.publish(hostile).await;
    assert_eq!(code, "NetStream.Publish.Start");
    let publish = receiver
        .wait_for(Duration::from_secs(5), |h| h.path == "/on_publish")
        .expect("on_publish call");
    let fields = raw_fields(&publish);
    let values = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("name"), ["cam"], "{fields:?}");
    assert_eq!(values("addr"), ["127.0.0.1"], "{fields:?}");
    assert_eq!(values("call"), ["publish"], "{fields:?}");
    assert_eq!(values("app"), ["live"], "{fields:?}");
    assert_eq!(values("type"), ["live"], "{fields:?}");
    for server_field in ["clientid", "flashver", "swfurl", "tcurl", "pageurl"] {
        assert_eq!(values(server_field).len(), 1, "{server_field}: {fields:?}");
    }
    for client_only in ["epoch", "start", "duration", "reset", "key", "token"] {
        assert!(values(client_only).is_empty(), "{client_only}: {fields:?}");
    }
    assert_eq!(values("sign"), ["abc"], "other arguments still pass");
    assert!(values("tcurl")[0].ends_with("/live?a=1"), "{fields:?}");

    // Refused by the backend: the player gets a fixed reason, the log the details.
    let mut player = TestClient::connect(server.rtmp, "live").await;
    let id = player.create_stream().await;
    player.send_play(id, "cam");
    assert_eq!(
        first_status(&mut player).await,
        ("NetStream.Play.Failed".into(), "callback refused".into())
    );
    assert!(server.wait_log("play callback answered 500", Duration::from_secs(2)));
    assert!(server.log().contains(&receiver.url("/deny")));

    // Unreachable: another fixed reason.
    let mut publisher = TestClient::connect(server.rtmp, "down").await;
    let id = publisher.create_stream().await;
    publisher.send_publish(id, "cam2");
    assert_eq!(
        first_status(&mut publisher).await,
        (
            "NetStream.Publish.Denied".into(),
            "callback unavailable".into()
        )
    );
    assert!(server.wait_log("publish callback failed", Duration::from_secs(2)));
    assert!(
        !server.log().contains("hooksecret"),
        "a callback URL's query was logged"
    );
}

/// Control gives playback tokens for at most `auth.play_token_max_ttl_secs`; a longer (or
/// overflowing) `ttl_secs` is a 400, and control keeps serving.
#[test]
fn play_token_lifetimes_are_capped() {
    let p = Platform::start(&[
        ("LIVERELAY_AUTH__PLAY_TOKEN_SECRET", "playsecret"),
        ("LIVERELAY_AUTH__PLAY_TOKEN_MAX_TTL_SECS", "100"),
    ]);
    let ask = |ttl: &str| {
        p.api(
            "POST",
            "/v1/play-tokens",
            &format!(r#"{{"app":"live","stream":"tv","ttl_secs":{ttl}}}"#),
        )
    };
    let (status, ok) = ask("100");
    assert_eq!(status, 200, "{ok}");
    let expires = ok["expires_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires <= now + 100, "{expires} {now}");
    for too_long in ["101", &u64::MAX.to_string()] {
        let (status, answer) = ask(too_long);
        assert_eq!(status, 400, "ttl_secs {too_long}: {answer}");
    }
    assert_eq!(ask("1").0, 200, "control still serves");
}

/// `--print-config` shows that secrets are set, never what they are.
#[test]
fn print_config_redacts_every_secret() {
    let dir = TempDir::new("print-config");
    let config = dir.path("secrets.toml");
    std::fs::write(
        &config,
        "[auth]\nplay_token_secret = \"sec-play\"\n\n\
         [[control.webhooks]]\nurl = \"https://platform/hook?auth=sec-hookquery\"\nsecret = \"sec-webhook\"\n\n\
         [[notify]]\non_publish = \"http://auth/on_publish?psk=sec-notify\"\n\n\
         [[relays]]\nkind = \"push\"\nurl = \"rtmp://a.rtmp.youtube.com/live2/abcd-sec-streamkey\"\nstream = \"live/foo\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liverelay"))
        .args([
            "ingest",
            "--config",
            config.to_str().unwrap(),
            "--print-config",
        ])
        .args(["--redis-url", "redis://:sec-redis@127.0.0.1:6379"])
        .env("LIVERELAY_CLUSTER_TOKEN", "sec-cluster")
        .env("LIVERELAY_ADMIN_TOKEN", "sec-admin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("sec-"), "a secret is printed:\n{printed}");
    let settings: serde_json::Value = serde_json::from_str(&printed).unwrap();
    // Positive control: each was read, and shows as set.
    assert_eq!(settings["cluster"]["token"], "<redacted>");
    assert_eq!(settings["control"]["admin_token"], "<redacted>");
    assert_eq!(settings["control"]["webhooks"][0]["secret"], "<redacted>");
    assert_eq!(settings["auth"]["play_token_secret"], "<redacted>");
    assert_eq!(
        settings["redis"]["url"],
        "redis://:<redacted>@127.0.0.1:6379"
    );
}

/// A webhook URL's query (often a receiver's credential) never reaches the log.
#[test]
fn webhook_urls_are_logged_without_their_query() {
    let dir = TempDir::new("webhook-log");
    let refused_once = std::sync::atomic::AtomicBool::new(false);
    let receiver = HookServer::start(move |_| {
        if refused_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Reply::status(204)
        } else {
            Reply::status(503)
        }
    });
    let config = dir.path("control.toml");
    let url = receiver.url("/events?auth=hooksecret");
    std::fs::write(&config, format!("[[control.webhooks]]\nurl = \"{url}\"\n")).unwrap();
    let p = Platform::start_with_config(&config);
    let (_, created) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"show"}"#);
    let id = created["id"].as_str().unwrap();
    let (status, _) = p.api("DELETE", &format!("/v1/keys/{id}"), "");
    assert_eq!(status, 200);
    // Refused once (logged with the URL), then delivered (logged again).
    assert!(
        p.control
            .wait_log("webhook delivered", Duration::from_secs(10))
    );
    let log = p.control.log();
    assert!(log.contains("webhook delivery failed"), "{log}");
    assert!(log.contains(&receiver.url("/events")), "{log}");
    assert!(
        !log.contains("hooksecret"),
        "a webhook URL's query was logged:\n{log}"
    );
}

/// A pod's subscription whose connection went half-open (nothing arrives, nothing fails) is
/// noticed by its PING and replaced, so control's commands reach the pod again: a key revoked
/// afterwards ends the live publish.
#[test]
fn a_half_open_subscription_is_replaced() {
    let p = Platform::start(&[]);
    let upstream = format!("127.0.0.1:{}", p.redis.port).parse().unwrap();
    let proxy = support::proxy::FreezingProxy::start(upstream);
    let proxied = format!("redis://{}", proxy.addr);
    let control = p.control_url();
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &proxied, "--control-url", &control],
        &[("LIVERELAY_CLUSTER_TOKEN", TOKEN), ("POD_NAME", "ingest-h")],
    );
    let subscribers = || p.redis.query(&["PUBSUB", "NUMSUB", "liverelay:commands"])[1].as_u64();
    let wait_subscribers = |n: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while subscribers() != Some(n) {
            assert!(
                Instant::now() < deadline,
                "{what}: {:?} subscribers\n{}",
                subscribers(),
                ingest.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_subscribers(1, "the ingest follows the commands");
    let (_, created) = p.api("POST", "/v1/keys", r#"{"app":"live","stream":"half"}"#);
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let dir = TempDir::new("half-open");
    let mut publisher =
        looping_publisher(&ingest.url(&format!("live/{secret}")), &dir.path("pub.log"));
    wait_registered(&p.redis, "live", "half");

    assert!(
        proxy.freeze_subscriptions() >= 1,
        "no subscription to freeze"
    );
    // Redis still counts the frozen connection: a second subscriber is the replacement.
    wait_subscribers(2, "the half-open subscription was never replaced");
    let (status, _) = p.api("DELETE", &format!("/v1/keys/{id}"), "");
    assert_eq!(status, 200);
    wait_ended(&mut publisher, Duration::from_secs(10));
}

/// An ingest checks the keys of its live publishes again, at most `auth.cache_secs` apart: a
/// key revoked while the ingest never heard the command (here: behind control's back, in
/// Redis, so no command is sent) still ends its publish.
#[test]
fn a_revoked_key_ends_its_publish_even_without_the_command() {
    let dir = TempDir::new("keys-recheck");
    let p = Platform::start(&[]);
    let ingest = p.node("ingest", "ingest-r", &[("LIVERELAY_AUTH__CACHE_SECS", "1")]);
    let body = serde_json::json!({ "app": "live", "stream": "quiet" }).to_string();
    let (status, created) = p.api("POST", "/v1/keys", &body);
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let log = dir.path("publish.log");
    let mut publisher = looping_publisher(&ingest.url(&format!("live/{secret}")), &log);
    wait_registered(&p.redis, "live", "quiet");
    let key = format!("liverelay:key:{id}");
    let mut record: serde_json::Value =
        serde_json::from_str(&p.redis.cli(&["GET", &key]).unwrap()).unwrap();
    record["revoked"] = serde_json::Value::Bool(true);
    p.redis.query(&["SET", &key, &record.to_string()]);
    let took = wait_ended(&mut publisher, Duration::from_secs(10));
    eprintln!("the re-check ended the publish in {took:?}");
    assert!(ingest.wait_log("stream key no longer accepted", Duration::from_secs(2)));
}

//! Abuse of streams and viewers by clients that follow the protocol: idle players of names
//! nobody publishes, floods of empty media, plays of made-up names on an edge. Each attack
//! costs the attacker a refusal or nothing at all, with a log line saying why, and a bystander
//! stream on the same server keeps every frame.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use liverelay_rtmp::{Media, MediaKind};
use support::redis::RedisServer;
use support::rtmp::TestClient;
use support::*;

const TOKEN: &str = "test-cluster-token";

/// Viewers waiting for names nobody publishes are counted apart from live streams: once their
/// limit is reached further idle plays are refused, and publishers still get every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_players_never_take_the_publishers_slots() {
    let dir = TempDir::new("idle-players");
    let server = Server::start_with(&[
        ("LIVERELAY_HUB__MAX_WAITING_STREAMS", "20"),
        ("LIVERELAY_HUB__MAX_STREAMS", "3"),
    ]);
    let bystander = Bystander::start(&server, "cam", &dir);
    server.wait_live("live", "cam", Duration::from_secs(10));

    let mut idle = Vec::new();
    for i in 0..20 {
        let mut player = TestClient::connect(server.rtmp, "live").await;
        player.play(&format!("idle{i}")).await;
        idle.push(player);
    }
    let mark = server.log_mark();
    let mut one_more = TestClient::connect(server.rtmp, "live").await;
    assert_eq!(
        one_more.play_status("idle20").await,
        "NetStream.Play.Failed"
    );
    assert!(server.wait_log_since(
        mark,
        "limit of 20 streams waiting for a publisher reached",
        Duration::from_secs(5)
    ));

    // Every waiting slot is taken; publishers are limited only by `max_streams` (3).
    let mut publishers = Vec::new();
    for name in ["late1", "late2"] {
        let mut publisher = TestClient::connect(server.rtmp, "live").await;
        let (_, _, code) = publisher.publish(name).await;
        assert_eq!(code, "NetStream.Publish.Start", "publish of {name}");
        publishers.push(publisher);
    }
    let mut over = TestClient::connect(server.rtmp, "live").await;
    let (_, _, code) = over.publish("late3").await;
    assert_eq!(code, "NetStream.Publish.Denied", "a 4th live stream");
    bystander.assert_every_frame();
}

/// Empty media messages (a 1-byte chunk each on the wire) never become frames: a flood of
/// them neither grows the stream's memory nor reaches viewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_media_floods_never_become_frames() {
    let dir = TempDir::new("empty-flood");
    let server = Server::start();
    let bystander = Bystander::start(&server, "cam", &dir);

    let mut attacker = TestClient::connect(server.rtmp, "live").await;
    let (id, _, code) = attacker.publish("flood").await;
    assert_eq!(code, "NetStream.Publish.Start");
    let keyframe = Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65]),
    };
    attacker.send_media(id, &keyframe).await;
    const EMPTY: u64 = 20_000;
    for i in 0..EMPTY {
        let kind = if i % 2 == 0 {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let empty = Media {
            kind,
            timestamp: i,
            payload: Bytes::new(),
        };
        attacker.send_media(id, &empty).await;
    }
    // A last real frame: once it is counted, every empty message before it was handled.
    attacker
        .send_media(
            id,
            &Media {
                timestamp: EMPTY,
                ..keyframe.clone()
            },
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let flood = loop {
        let info = server
            .stream_info("live", "flood")
            .expect("flood is listed");
        if info["frames_in"].as_u64() >= Some(2) {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "the last frame never arrived: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        flood["frames_in"].as_u64(),
        Some(2),
        "only the two keyframes became frames: {flood}"
    );
    bystander.assert_every_frame();
}

/// One connection may ask for only so many plays a minute (and in all): a client cannot make
/// a server look up and wait for name after name on one socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_per_connection_are_limited() {
    let dir = TempDir::new("plays-per-connection");
    let server = Server::start_with(&[("LIVERELAY_RTMP__MAX_PLAYS_PER_MINUTE", "3")]);
    let bystander = Bystander::start(&server, "cam", &dir);
    let mut churner = TestClient::connect(server.rtmp, "live").await;
    for i in 0..3 {
        churner.play(&format!("name{i}")).await;
    }
    let mark = server.log_mark();
    assert_eq!(churner.play_status("name3").await, "NetStream.Play.Failed");
    assert!(server.wait_log_since(
        mark,
        "more than 3 plays a minute on one connection",
        Duration::from_secs(5)
    ));
    assert!(
        churner.closed_by_server(Duration::from_secs(5)).await,
        "the connection is closed"
    );
    // Another connection has its own budget.
    let mut player = TestClient::connect(server.rtmp, "live").await;
    player.play("cam").await;
    bystander.assert_every_frame();
}

/// An edge pulls at most `cluster.max_upstreams` streams at once, so plays of made-up names
/// cannot spawn work without bound; it announces that a viewer waits (`{prefix}:wants`) only
/// while one does, at most once a second per stream, and never on the publish/unpublish
/// channel every upstream listens to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_of_made_up_names_are_bounded_on_an_edge() {
    let dir = TempDir::new("edge-names");
    let redis = RedisServer::start();
    let wants = Subscription::start(&redis, "liverelay:wants", &dir.path("wants.log"));
    let events = Subscription::start(&redis, "liverelay:events", &dir.path("events.log"));
    let edge = Server::start_role(
        "edge",
        &["--redis-url", &redis.url()],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_CLUSTER__MAX_UPSTREAMS", "5"),
            ("LIVERELAY_CLUSTER__UPSTREAM_LINGER_SECS", "30"),
        ],
    );
    let mut players = Vec::new();
    for i in 0..5 {
        let mut player = TestClient::connect(edge.rtmp, "live").await;
        player.play(&format!("nobody{i}")).await;
        players.push(player);
    }
    let mark = edge.log_mark();
    let mut one_more = TestClient::connect(edge.rtmp, "live").await;
    assert_eq!(
        one_more.play_status("nobody5").await,
        "NetStream.Play.Failed"
    );
    assert!(edge.wait_log_since(
        mark,
        "this edge already pulls its limit of 5 streams",
        Duration::from_secs(5)
    ));

    // Waiting viewers: each stream is wanted, at most once a second. Four more announcements
    // are at least three intervals apart, however the first falls.
    let before = wants.count("nobody0");
    let watched = Instant::now();
    let deadline = watched + Duration::from_secs(15);
    while wants.count("nobody0") < before + 4 {
        assert!(
            Instant::now() < deadline,
            "nobody0 was not wanted every second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        watched.elapsed() >= Duration::from_millis(2500),
        "4 wants within {:?} (debounced to one a second)",
        watched.elapsed()
    );

    // The viewers leave; the upstreams linger (30 s) but nobody waits, so nothing is wanted.
    drop(players);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..5).any(|i| {
        edge.stream_info("live", &format!("nobody{i}"))
            .is_some_and(|s| s["viewers"] != 0)
    }) {
        assert!(Instant::now() < deadline, "the players never left");
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = wants.total();
    let quiet = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < quiet {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wants.total() <= left + 5,
        "wants kept coming after the viewers left: {} then {}",
        left,
        wants.total()
    );
    assert_eq!(
        events.count("nobody"),
        0,
        "wants leaked onto the events channel"
    );
}

/// `redis-cli SUBSCRIBE` writing what arrives on a channel to a file.
struct Subscription {
    _child: ChildGuard,
    log: std::path::PathBuf,
}

impl Subscription {
    fn start(redis: &RedisServer, channel: &str, log: &std::path::Path) -> Self {
        let out = std::fs::File::create(log).unwrap();
        let child = ChildGuard::spawn(
            // Line-buffered: redis-cli's stdout is a file, which stdio would buffer.
            Command::new("stdbuf")
                .args(["-oL", "redis-cli", "-p", &redis.port.to_string()])
                .args(["SUBSCRIBE", channel])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(Stdio::null()),
        );
        let sub = Self {
            _child: child,
            log: log.to_path_buf(),
        };
        // redis-cli prints the subscription confirmation once it is subscribed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sub.text().contains(channel) {
            assert!(Instant::now() < deadline, "redis-cli never subscribed");
            std::thread::sleep(Duration::from_millis(20));
        }
        sub
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Messages that mention `needle`.
    fn count(&self, needle: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| l.starts_with('{') && l.contains(needle))
            .count()
    }

    fn total(&self) -> usize {
        self.count("")
    }
}

//! Cluster mode with real parts: `redis-server` on a free port, `liverelay ingest` and
//! `liverelay edge` processes, ffmpeg as publisher and player.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liverelay_rtmp::session::ClientEvent;
use liverelay_rtmp::{Media, MediaKind};
use support::redis::{RedisCluster, RedisServer};
use support::rtmp::{TestClient, is_picture};
use support::*;

const TOKEN: &str = "test-cluster-token";

struct Cluster {
    redis: RedisServer,
    lease_ttl_ms: &'static str,
}

impl Cluster {
    fn new() -> Self {
        Self {
            redis: RedisServer::start(),
            lease_ttl_ms: "5000",
        }
    }

    /// Short leases, for tests that wait for one to expire.
    fn with_short_leases() -> Self {
        Self {
            redis: RedisServer::start(),
            lease_ttl_ms: "1500",
        }
    }

    fn node(&self, role: &str, pod: &str) -> Server {
        self.node_with(role, pod, &[])
    }

    fn node_with(&self, role: &str, pod: &str, extra_env: &[(&str, &str)]) -> Server {
        let url = self.redis.url();
        let env = [
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("POD_NAME", pod),
            ("LIVERELAY_REDIS__LEASE_TTL_MS", self.lease_ttl_ms),
            ("LIVERELAY_CLUSTER__UPSTREAM_LINGER_SECS", "2"),
        ];
        Server::start_role(
            role,
            &["--redis-url", &url],
            &[&env[..], extra_env].concat(),
        )
    }

    /// An edge whose reconnect window (10 s by default) is `window`.
    fn edge_with_window(&self, window: Duration) -> Server {
        let secs = window.as_secs().to_string();
        self.node_with(
            "edge",
            "edge-x",
            &[("LIVERELAY_CLUSTER__RECONNECT_WINDOW_SECS", &secs)],
        )
    }

    fn wait_owner(&self, name: &str, owner: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self
                .redis
                .record("live", name)
                .filter(|r| r["owner"] == owner)
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "live/{name} not owned by {owner}: {:?}",
                self.redis.record("live", name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A stream published on an ingest is registered in Redis under that ingest and plays, decoded,
/// from two edges; the ingest itself refuses RTMP players.
#[test]
fn publish_on_ingest_play_from_two_edges() {
    let cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let edge_x = cluster.node("edge", "edge-x");
    let edge_y = cluster.node("edge", "edge-y");
    let dir = TempDir::new("cluster-basic");
    let _publisher = looping_publisher(&ingest.url("live/show"), &dir.path("pub.log"));
    let record = cluster.wait_owner("show", "ingest-a", Duration::from_secs(10));
    assert_eq!(record["grpc_addr"], ingest.grpc.to_string());
    assert!(record["generation"].as_u64().unwrap() >= 1);

    for edge in [&edge_x, &edge_y] {
        let url = edge.url("live/show");
        assert_eq!(probe_streams(&url), ["aac", "h264,320,240"]);
        let out = dir.path(&format!("edge-{}.flv", edge.rtmp.port()));
        let mut rec = spawn_logged(
            std::process::Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    &url,
                    "-t",
                    "3",
                    "-c",
                    "copy",
                ])
                .arg(&out),
            &dir.path("rec.log"),
        );
        wait_success(&mut rec, Duration::from_secs(20), &dir.path("rec.log"));
        let packets = probe_packets(out.to_str().unwrap());
        assert!(
            packets.iter().find(|p| p.video).unwrap().keyframe,
            "edge playback starts on a keyframe"
        );
        assert!(
            packets.iter().filter(|p| p.video).count() >= 50,
            "about 3 s of video"
        );
        assert_eq!(decode_errors(&out), "");
    }
    let codecs = cluster.redis.record("live", "show").unwrap();
    assert_eq!(
        (
            codecs["video_codec"].as_str(),
            codecs["audio_codec"].as_str()
        ),
        (Some("h264"), Some("aac"))
    );

    let refused = std::process::Command::new("ffprobe")
        .args(["-v", "error", &ingest.url("live/show")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("play live/show from an edge"),
        "clear status for a play on an ingest"
    );
}

/// However many viewers an edge has, it pulls the stream from the ingest once.
#[tokio::test]
async fn many_viewers_on_one_edge_make_one_upstream() {
    let cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let edge = cluster.node("edge", "edge-x");
    let dir = TempDir::new("cluster-fanout");
    let _publisher = looping_publisher(&ingest.url("live/fan"), &dir.path("pub.log"));
    cluster.wait_owner("fan", "ingest-a", Duration::from_secs(10));
    let mut viewers = Vec::new();
    for _ in 0..6 {
        let mut v = TestClient::connect(edge.rtmp, "live").await;
        v.play("fan").await;
        viewers.push(v);
    }
    for v in &mut viewers {
        assert!(
            v.expect(Duration::from_secs(5), is_picture).await.is_some(),
            "every viewer gets pictures"
        );
    }
    edge.wait_viewers("live", "fan", 6, Duration::from_secs(5));
    ingest.wait_viewers("live", "fan", 1, Duration::from_secs(5));
    // The upstream outlives the last viewer by the linger time (2 s here), then closes.
    drop(viewers);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ingest.wait_viewers("live", "fan", 1, Duration::from_secs(1));
    let closed = Instant::now();
    ingest.wait_viewers("live", "fan", 0, Duration::from_secs(6));
    assert!(
        closed.elapsed() >= Duration::from_millis(800),
        "upstream lingered"
    );
}

/// Video payloads of a [`MarkedSource`] carry this after the FLV AVC header, so a viewer tells
/// that source's messages from anything an earlier source sent.
const MARK: &[u8] = b"liverelay-marked-source";

/// A live source played by the test's own RTMP client, so the instant each picture is sent is
/// known: it publishes `live/NAME` (retrying while the name is refused, as encoders do), then
/// sends a sequence header and 25 pictures a second, each marked with [`MARK`] and its index.
/// Every `gop`-th picture from 0 is a keyframe ([`start`](Self::start): only picture 0, so a
/// viewer that starts from the GOP cache starts there). The video is synthetic; nothing on the
/// relay path decodes it.
struct MarkedSource {
    /// Taken just before picture `i` is written to the socket.
    sent: Arc<Mutex<Vec<Instant>>>,
    /// When the accepted publish attempt began (its connect), and which attempt it was.
    accepted: Arc<Mutex<Option<(Instant, u32)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MarkedSource {
    fn with_gop(addr: SocketAddr, name: &'static str, gop: u32) -> Self {
        Self::publishing(addr, name, gop, Duration::from_millis(50))
    }

    /// A source that, refused, tries again after `retry` (as an encoder does).
    fn retrying(addr: SocketAddr, name: &'static str, retry: Duration) -> Self {
        Self::publishing(addr, name, u32::MAX, retry)
    }

    fn publishing(addr: SocketAddr, name: &'static str, gop: u32, retry: Duration) -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let (sent, accepted) = (sent.clone(), accepted.clone());
            async move {
                let (mut client, id) = {
                    let mut attempt = 1;
                    loop {
                        let began = Instant::now();
                        let mut client = TestClient::connect(addr, "live").await;
                        let (id, _, code) = client.publish(name).await;
                        if code == "NetStream.Publish.Start" {
                            *accepted.lock().unwrap() = Some((began, attempt));
                            break (client, id);
                        }
                        attempt += 1;
                        tokio::time::sleep(retry).await;
                    }
                };
                let video = |head: [u8; 5], tail: &[u8], timestamp| Media {
                    kind: MediaKind::Video,
                    timestamp,
                    payload: [&head[..], MARK, tail].concat().into(),
                };
                client
                    .send_media(id, &video([0x17, 0, 0, 0, 0], &[], 0))
                    .await;
                let mut tick = tokio::time::interval(Duration::from_millis(40));
                for index in 0u32.. {
                    tick.tick().await;
                    let frame_type = if index % gop == 0 { 0x17 } else { 0x27 };
                    let picture = video(
                        [frame_type, 1, 0, 0, 0],
                        &index.to_be_bytes(),
                        u64::from(index) * 40,
                    );
                    sent.lock().unwrap().push(Instant::now());
                    client.send_media(id, &picture).await;
                }
            }
        });
        Self {
            sent,
            accepted,
            task,
        }
    }

    /// When the accepted publish attempt began and its number, once one was accepted.
    fn accepted(&self) -> Option<(Instant, u32)> {
        *self.accepted.lock().unwrap()
    }

    /// When picture `index` was sent, if it was.
    fn sent(&self, index: u32) -> Option<Instant> {
        self.sent.lock().unwrap().get(index as usize).copied()
    }

    /// Pictures sent so far.
    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// A picture's index and timestamp, as a viewer received it.
    fn picture(event: &ClientEvent) -> Option<(u32, u64)> {
        let index = Self::marked(event)?.try_into().ok()?;
        match event {
            ClientEvent::Media { media, .. } => Some((u32::from_be_bytes(index), media.timestamp)),
            _ => None,
        }
    }

    /// What follows [`MARK`] in a video message from this source: empty for its sequence
    /// header, the index for a picture.
    fn marked(event: &ClientEvent) -> Option<&[u8]> {
        match event {
            ClientEvent::Media { media, .. } if media.kind == MediaKind::Video => {
                media.payload.get(5..)?.strip_prefix(MARK)
            }
            _ => None,
        }
    }
}

impl Drop for MarkedSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The viewer's next event while its stream fails over: it stays connected, is never told the
/// stream ended, and its video timestamps never go back.
async fn next_failover_event(viewer: &mut TestClient, last_ts: &mut u64) -> ClientEvent {
    let event = viewer
        .next_event(Duration::from_secs(5))
        .await
        .expect("the viewer stays connected and fed");
    match &event {
        ClientEvent::Media { media, .. } if media.kind == MediaKind::Video => {
            assert!(
                media.timestamp >= *last_ts,
                "timestamps stay monotonic: {} after {last_ts}",
                media.timestamp
            );
            *last_ts = media.timestamp;
        }
        ClientEvent::Status { code, .. } => assert_ne!(
            code, "NetStream.Play.UnpublishNotify",
            "the viewer is not told the stream ended"
        ),
        _ => {}
    }
    event
}

/// kill -9 of the ingest a viewer's stream comes from, with the default 5 s lease; the
/// publisher moves to another ingest (retrying every second, as encoders do). Its first attempt
/// takes the stream over: the dead owner's relay port refuses connections, so no lease is waited
/// out. The viewer stays connected, gets the new source's sequence header and then every one of
/// its pictures from the first, with monotonic timestamps, and is never told the stream ended,
/// not even after the window would have run out; nothing stale stays in Redis. Prints the
/// failover figures the docs quote: the new source's first picture from send to arrival at the
/// viewer, and from the publisher's reconnect and from the kill to that arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_survives_ingest_failover() {
    const WINDOW: Duration = Duration::from_secs(4);
    let cluster = Cluster::new();
    let mut ingest_a = cluster.node("ingest", "ingest-a");
    let ingest_b = cluster.node("ingest", "ingest-b");
    let edge = cluster.edge_with_window(WINDOW);
    let dir = TempDir::new("cluster-failover");
    let mut publisher = looping_publisher(&ingest_a.url("live/move"), &dir.path("pub-a.log"));
    cluster.wait_owner("move", "ingest-a", Duration::from_secs(10));

    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("move").await;
    let mut last_ts = 0;
    for _ in 0..30 {
        if let Some(ClientEvent::Media { media, .. }) =
            viewer.expect(Duration::from_secs(5), is_picture).await
        {
            last_ts = media.timestamp;
        }
    }

    ingest_a.kill();
    publisher.kill();
    let broke = Instant::now();
    let source = MarkedSource::retrying(ingest_b.rtmp, "move", Duration::from_secs(1));

    let mut saw_header = false;
    let arrived = loop {
        assert!(
            broke.elapsed() < Duration::from_secs(15),
            "no picture from the new source ({} sent)",
            source.sent.lock().unwrap().len()
        );
        let event = next_failover_event(&mut viewer, &mut last_ts).await;
        let Some(tail) = MarkedSource::marked(&event) else {
            continue; // the old source's last messages
        };
        if tail.is_empty() {
            saw_header = true;
            continue;
        }
        let arrived = Instant::now();
        assert!(saw_header, "the new sequence header comes first");
        assert_eq!(
            tail,
            0u32.to_be_bytes(),
            "the first new picture is the keyframe"
        );
        break arrived;
    };
    let sent = source
        .sent(0)
        .expect("picture 0 was sent before it arrived");
    assert!(arrived > sent, "arrived {arrived:?}, sent {sent:?}");
    let delay = arrived - sent;
    let (reconnected, attempt) = source.accepted().expect("accepted before it sent");
    eprintln!(
        "failover: the new source's first picture reached the edge's viewer {delay:?} after it \
         was sent to ingest B, {:?} after the publisher's reconnect (attempt {attempt}), {:?} \
         after ingest A died",
        arrived - reconnected,
        arrived - broke
    );
    assert_eq!(
        attempt,
        1,
        "the first publish on ingest B takes the stream over; ingest B log:\n{}",
        ingest_b.log()
    );
    // Loopback takes a few milliseconds; this bound only catches a failover that stalls.
    assert!(
        delay < Duration::from_secs(5),
        "first new picture after {delay:?}"
    );

    // Every later picture arrives, in order, and nothing ends the stream when the window (had
    // the outage not been repaired) would have run out.
    let mut next_index = 1u32;
    while broke.elapsed() < WINDOW + Duration::from_secs(3) {
        let event = next_failover_event(&mut viewer, &mut last_ts).await;
        if let Some(tail) = MarkedSource::marked(&event) {
            assert_eq!(tail, next_index.to_be_bytes(), "every picture, in order");
            next_index += 1;
        }
    }
    assert!(
        next_index > 50,
        "the new source kept flowing ({next_index} pictures)"
    );

    // Pods' load reports expire by themselves (a dead pod's within three report intervals);
    // the dead pod's presence is gone (1.5 s). The webhook queue is not stream state.
    let keys: Vec<String> = cluster
        .redis
        .keys()
        .into_iter()
        .filter(|k| !k.starts_with("liverelay:node") && k != "liverelay:webhook-events")
        .collect();
    assert_eq!(
        keys,
        [
            "liverelay:alive:{ingest-b}",
            "liverelay:gen:{live/move}",
            "liverelay:stream:{live/move}",
            "liverelay:streams"
        ],
        "no stale keys"
    );
    assert_eq!(
        cluster.redis.record("live", "move").unwrap()["owner"],
        "ingest-b"
    );
}

/// The ingest dies and no new source appears: the edge keeps its viewer connected through the
/// reconnect window (`cluster.reconnect_window_secs`, 2 s here), then tells it the stream ended
/// with `NetStream.Play.UnpublishNotify`. (`viewer_survives_ingest_failover` is the other side:
/// a new source within the window, and no such message.)
#[tokio::test]
async fn viewer_is_told_when_no_source_returns_within_the_window() {
    const WINDOW: Duration = Duration::from_secs(2);
    let cluster = Cluster::new();
    let mut ingest = cluster.node("ingest", "ingest-a");
    let edge = cluster.edge_with_window(WINDOW);
    let dir = TempDir::new("cluster-window");
    let mut publisher = looping_publisher(&ingest.url("live/gone"), &dir.path("pub.log"));
    cluster.wait_owner("gone", "ingest-a", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("gone").await;
    assert!(
        viewer
            .expect(Duration::from_secs(5), is_picture)
            .await
            .is_some()
    );

    ingest.kill();
    publisher.kill();
    let broke = Instant::now();
    // `expect` gives up if the connection ends: the viewer has to stay connected to be told.
    let told = viewer
        .expect(Duration::from_secs(15), |e| {
            matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify")
        })
        .await;
    let after = broke.elapsed();
    assert!(
        told.is_some(),
        "the viewer stays connected and is told the stream ended; edge log:\n{}",
        edge.log()
    );
    eprintln!("reconnect window: told {after:?} after the ingest died (window {WINDOW:?})");
    assert!(after >= WINDOW, "not before the window ran out: {after:?}");
}

/// Redis restarts (empty) during a live stream: the stream keeps flowing to its viewer, new
/// lookups fail with a clear status meanwhile, and everything recovers by itself.
#[tokio::test]
async fn redis_restart_keeps_streams_flowing_and_recovers() {
    let mut cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let edge_x = cluster.node("edge", "edge-x");
    let edge_y = cluster.node("edge", "edge-y");
    let dir = TempDir::new("cluster-redis");
    let _publisher = looping_publisher(&ingest.url("live/steady"), &dir.path("pub.log"));
    cluster.wait_owner("steady", "ingest-a", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge_x.rtmp, "live").await;
    viewer.play("steady").await;
    assert!(
        viewer
            .expect(Duration::from_secs(5), is_picture)
            .await
            .is_some()
    );

    cluster.redis.stop();
    let down = Instant::now();
    let pictures = viewer.count_pictures(down + Duration::from_secs(2)).await;
    assert!(
        pictures > 30,
        "the stream kept flowing without Redis ({pictures} pictures in 2 s)"
    );
    // A new lookup (edge Y has not pulled the stream) fails with a status, not a hang.
    let mut newcomer = TestClient::connect(edge_y.rtmp, "live").await;
    let id = newcomer.create_stream().await;
    newcomer.send_play(id, "steady");
    let status = newcomer
        .expect(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::Status { .. })
        })
        .await
        .expect("a status answers the play");
    assert!(
        matches!(&status, ClientEvent::Status { code, description, .. }
        if code == "NetStream.Play.Failed" && description.contains("registry unavailable")),
        "{status:?}"
    );
    assert!(
        edge_y.log().contains("registry unavailable"),
        "edge logs why"
    );
    // So does a new publish: it cannot be registered.
    let mut late_publisher = TestClient::connect(ingest.rtmp, "live").await;
    let (_, level, code) = late_publisher.publish("late").await;
    assert_eq!(
        (level.as_str(), code.as_str()),
        ("error", "NetStream.Publish.Denied")
    );
    assert!(
        ingest
            .log()
            .contains("publish refused: registry unavailable"),
        "ingest logs why"
    );

    cluster.redis.restart();
    // The ingest re-registers its stream with its next heartbeat.
    cluster.wait_owner("steady", "ingest-a", Duration::from_secs(10));
    let mut again = TestClient::connect(edge_y.rtmp, "live").await;
    again.play("steady").await;
    assert!(
        again
            .expect(Duration::from_secs(5), is_picture)
            .await
            .is_some(),
        "new viewers work again"
    );
    assert!(
        viewer
            .expect(Duration::from_secs(2), is_picture)
            .await
            .is_some(),
        "the first viewer never stopped"
    );
}

/// One owner per name across the cluster: a second publisher on another ingest is refused.
#[tokio::test]
async fn second_publisher_on_another_ingest_is_refused() {
    let cluster = Cluster::new();
    let ingest_a = cluster.node("ingest", "ingest-a");
    let ingest_b = cluster.node("ingest", "ingest-b");
    let dir = TempDir::new("cluster-dup");
    let _publisher = looping_publisher(&ingest_a.url("live/one"), &dir.path("pub.log"));
    cluster.wait_owner("one", "ingest-a", Duration::from_secs(10));
    let mut second = TestClient::connect(ingest_b.rtmp, "live").await;
    let (_, level, code) = second.publish("one").await;
    assert_eq!(
        (level.as_str(), code.as_str()),
        ("error", "NetStream.Publish.BadName")
    );
    assert!(second.closed_by_server(Duration::from_secs(5)).await);
    assert_eq!(
        cluster.redis.record("live", "one").unwrap()["owner"],
        "ingest-a",
        "the first owner keeps the stream"
    );
    assert!(
        ingest_b.stream_info("live", "one").is_none(),
        "nothing left behind on ingest B"
    );
}

/// The same roles against a Redis Cluster (three masters): registration, playback from an
/// edge, and removal on unpublish go through the cluster client; so does a takeover from a
/// killed owner (its presence key is in another slot than the stream's), which ffmpeg, giving
/// up after one refusal, gets at its one attempt.
#[test]
fn works_against_redis_cluster() {
    let redis = RedisCluster::start();
    assert_eq!(redis.node_count(), 3);
    let urls = redis.urls();
    let env = [
        ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
        ("LIVERELAY_REDIS__CLUSTER", "true"),
        ("POD_NAME", "ingest-c"),
    ];
    let mut ingest = Server::start_role("ingest", &["--redis-url", &urls], &env);
    let edge = Server::start_role("edge", &["--redis-url", &urls], &env);
    let dir = TempDir::new("cluster-redis-cluster");
    let mut publisher = ffmpeg_publish(sample_flv(), &ingest.url("live/cl"), &dir.path("pub.log"));
    let key = "liverelay:stream:{live/cl}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.get(key).is_none() {
        assert!(
            Instant::now() < deadline,
            "stream registered in the cluster"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(redis.get(key).unwrap().contains("\"owner\":\"ingest-c\""));
    assert_eq!(probe_streams(&edge.url("live/cl")), ["aac", "h264,320,240"]);
    wait_success(
        &mut publisher,
        Duration::from_secs(20),
        &dir.path("pub.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.get(key).is_some() {
        assert!(Instant::now() < deadline, "record removed on unpublish");
        std::thread::sleep(Duration::from_millis(20));
    }

    let other = [&env[..2], &[("POD_NAME", "ingest-d")]].concat();
    let ingest_d = Server::start_role("ingest", &["--redis-url", &urls], &other);
    let mut first = looping_publisher(&ingest.url("live/cl"), &dir.path("pub-c.log"));
    let owned_by = |pod: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        let owner = format!("\"owner\":\"{pod}\"");
        while !redis.get(key).is_some_and(|r| r.contains(&owner)) {
            assert!(
                Instant::now() < deadline,
                "not owned by {pod}: {:?}",
                redis.get(key)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    owned_by("ingest-c", Duration::from_secs(10));
    ingest.kill();
    first.kill();
    let _second = ffmpeg_publish(
        sample_flv(),
        &ingest_d.url("live/cl"),
        &dir.path("pub-d.log"),
    );
    owned_by("ingest-d", Duration::from_secs(10));
}

/// A publish attempt on an edge is refused, and does not disturb the viewers of that name.
#[tokio::test]
async fn publish_on_an_edge_is_refused_without_disturbing_viewers() {
    let cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let edge = cluster.node("edge", "edge-x");
    let dir = TempDir::new("cluster-edge-publish");
    let _publisher = looping_publisher(&ingest.url("live/calm"), &dir.path("pub.log"));
    cluster.wait_owner("calm", "ingest-a", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("calm").await;
    assert!(
        viewer
            .expect(Duration::from_secs(5), is_picture)
            .await
            .is_some()
    );
    for _ in 0..3 {
        let mut intruder = TestClient::connect(edge.rtmp, "live").await;
        let (_, level, code) = intruder.publish("calm").await;
        assert_eq!(
            (level.as_str(), code.as_str()),
            ("error", "NetStream.Publish.Denied")
        );
        assert!(intruder.closed_by_server(Duration::from_secs(5)).await);
    }
    let pictures = viewer
        .count_pictures(Instant::now() + Duration::from_secs(2))
        .await;
    assert!(
        pictures > 30,
        "the viewer kept its stream ({pictures} pictures in 2 s)"
    );
    assert_eq!(
        cluster.redis.record("live", "calm").unwrap()["owner"],
        "ingest-a"
    );
}

/// If another ingest ends up owning the stream (our lease ran out while Redis was unreachable
/// and someone else claimed it), the old owner's publish is closed at its next renewal, so two
/// pods never serve the same name.
#[tokio::test]
async fn losing_the_lease_closes_the_publish() {
    let cluster = Cluster::with_short_leases();
    let ingest = cluster.node("ingest", "ingest-a");
    let mut publisher = TestClient::connect(ingest.rtmp, "live").await;
    let (_, level, code) = publisher.publish("taken").await;
    assert_eq!(
        (level.as_str(), code.as_str()),
        ("status", "NetStream.Publish.Start")
    );
    let mut record = cluster.wait_owner("taken", "ingest-a", Duration::from_secs(5));
    // Another pod's newer claim, as the registry would store it.
    record["owner"] = "ingest-z".into();
    record["generation"] = (record["generation"].as_u64().unwrap() + 1).into();
    cluster
        .redis
        .cli(&[
            "SET",
            "liverelay:stream:{live/taken}",
            &record.to_string(),
            "PX",
            "60000",
        ])
        .unwrap();
    assert!(
        publisher.closed_by_server(Duration::from_secs(3)).await,
        "publish closed within a renewal period"
    );
    assert!(
        ingest.wait_log(
            "publish revoked: stream taken over by ingest-z",
            Duration::from_secs(5)
        ),
        "{}",
        ingest.log()
    );
    assert_eq!(
        cluster.redis.record("live", "taken").unwrap()["owner"],
        "ingest-z",
        "the newer owner's record is untouched"
    );
}

/// Waits (at most `limit`) for `source`'s publish to be accepted: when its accepted attempt
/// began, and which attempt that was.
async fn accepted_within(source: &MarkedSource, limit: Duration, log: &Server) -> (Instant, u32) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(accepted) = source.accepted() {
            return accepted;
        }
        assert!(
            Instant::now() < deadline,
            "publish not accepted; log:\n{}",
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ingests A and B, and a publish of `name` on A (the test's own client), registered.
async fn publish_on_the_first_of_two_ingests(
    cluster: &Cluster,
    name: &str,
) -> (Server, Server, TestClient) {
    let ingest_a = cluster.node("ingest", "ingest-a");
    let ingest_b = cluster.node("ingest", "ingest-b");
    let mut publisher = TestClient::connect(ingest_a.rtmp, "live").await;
    let (_, _, code) = publisher.publish(name).await;
    assert_eq!(code, "NetStream.Publish.Start");
    cluster.wait_owner(name, "ingest-a", Duration::from_secs(5));
    (ingest_a, ingest_b, publisher)
}

/// The owner stops answering (SIGSTOP: alive, its relay port still accepting connections, as if
/// cut off) while holding a 30 s lease. A publisher retrying every second on another ingest
/// takes the stream over once the owner's presence lapses (1.5 s), long before the lease could
/// run out (20 s at the earliest). When the old owner comes back it notices its presence had
/// lapsed and ends its publish at once, fenced by the generation; the new record is untouched.
#[tokio::test]
async fn a_silent_owner_loses_its_stream_and_ends_its_publish_when_back() {
    let cluster = Cluster {
        redis: RedisServer::start(),
        lease_ttl_ms: "30000",
    };
    let (ingest_a, ingest_b, mut old) =
        publish_on_the_first_of_two_ingests(&cluster, "silent").await;

    ingest_a.pause();
    let paused = Instant::now();
    let source = MarkedSource::retrying(ingest_b.rtmp, "silent", Duration::from_secs(1));
    let (accepted, attempt) = accepted_within(&source, Duration::from_secs(15), &ingest_b).await;
    eprintln!(
        "silent owner: taken over by attempt {attempt}, {:?} after the owner stopped",
        accepted - paused
    );
    let new = cluster.wait_owner("silent", "ingest-b", Duration::from_secs(5));

    let mark = ingest_a.log_mark();
    ingest_a.resume();
    let resumed = Instant::now();
    assert!(
        old.closed_by_server(Duration::from_secs(5)).await,
        "the old owner ends its publish when back; log:\n{}",
        ingest_a.log_since(mark)
    );
    eprintln!(
        "silent owner: its publish ended {:?} after it resumed",
        resumed.elapsed()
    );
    for line in [
        "presence had lapsed",
        "publish revoked: stream taken over by ingest-b",
    ] {
        assert!(
            ingest_a.wait_log_since(mark, line, Duration::from_secs(5)),
            "{line}: {}",
            ingest_a.log_since(mark)
        );
    }
    let now = cluster.redis.record("live", "silent").unwrap();
    assert_eq!(
        (&now["owner"], &now["generation"]),
        (&new["owner"], &new["generation"]),
        "the new owner's record is untouched"
    );
}

/// An edge's viewer while the owner hangs (SIGSTOP, default lease) and the publisher moves to
/// another ingest, retrying every second: the viewer stays connected, gets the new source's
/// pictures, and once the first has come never again a picture of the old owner's, not even
/// after the old owner resumes. Prints the time from the hang to the first new picture at the
/// viewer (the edge sees the hung owner through the relay's keepalive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_never_mixes_a_hung_owner_with_its_successor() {
    let cluster = Cluster::new();
    let ingest_a = cluster.node("ingest", "ingest-a");
    let ingest_b = cluster.node("ingest", "ingest-b");
    let edge = cluster.node("edge", "edge-x");
    let dir = TempDir::new("cluster-hung-owner");
    let _old = looping_publisher(&ingest_a.url("live/hung"), &dir.path("pub-a.log"));
    cluster.wait_owner("hung", "ingest-a", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("hung").await;
    let mut last_ts = 0;
    assert!(
        viewer
            .expect(Duration::from_secs(10), is_picture)
            .await
            .is_some()
    );

    ingest_a.pause();
    let paused = Instant::now();
    let _new = MarkedSource::retrying(ingest_b.rtmp, "hung", Duration::from_secs(1));
    let mut first_new = None;
    let mut resumed = None;
    let mut new_pictures = 0;
    while new_pictures < 75 {
        assert!(
            paused.elapsed() < Duration::from_secs(30),
            "{new_pictures} new pictures; edge log:\n{}",
            edge.log()
        );
        let event = next_failover_event(&mut viewer, &mut last_ts).await;
        if !is_picture(&event) {
            continue;
        }
        let new = MarkedSource::marked(&event).is_some();
        if first_new.is_none() && new {
            first_new = Some(paused.elapsed());
            ingest_a.resume();
            resumed = Some(Instant::now());
        }
        assert!(
            first_new.is_none() || new,
            "a picture of the old owner after the new owner's"
        );
        new_pictures += usize::from(new);
    }
    eprintln!(
        "hung owner: the first new picture reached the edge's viewer {:?} after the owner hung; \
         no old picture in the {:?} after it resumed",
        first_new.unwrap(),
        resumed.unwrap().elapsed()
    );
}

/// SIGTERM on an ingest marks its streams as moving: while it still drains (alive, serving its
/// publisher), a publish of the stream on another ingest takes it over at the first attempt,
/// and the draining ingest ends its own publish at its next renewal.
#[tokio::test]
async fn a_draining_ingest_hands_its_streams_over() {
    let cluster = Cluster::new();
    let (ingest_a, ingest_b, mut old) =
        publish_on_the_first_of_two_ingests(&cluster, "moving").await;

    ingest_a.terminate();
    assert!(
        ingest_a.wait_log("streams marked as moving", Duration::from_secs(10)),
        "{}",
        ingest_a.log()
    );
    let source = MarkedSource::retrying(ingest_b.rtmp, "moving", Duration::from_secs(1));
    let (_, attempt) = accepted_within(&source, Duration::from_secs(10), &ingest_b).await;
    assert_eq!(attempt, 1, "taken over at once");
    cluster.wait_owner("moving", "ingest-b", Duration::from_secs(5));
    assert!(
        old.closed_by_server(Duration::from_secs(5)).await,
        "the draining ingest ends its publish; log:\n{}",
        ingest_a.log()
    );
}

/// SIGTERM on an edge with a viewer: out of readiness at once, new connections refused, the
/// viewer keeps playing through the grace period and is then told and closed; clean exit.
#[tokio::test]
async fn edge_drains_on_sigterm() {
    let cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let url = cluster.redis.url();
    let mut edge = Server::start_role(
        "edge",
        &["--redis-url", &url],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_RTMP__DRAIN_GRACE_SECS", "3"),
        ],
    );
    let dir = TempDir::new("cluster-drain");
    let _publisher = looping_publisher(&ingest.url("live/drain"), &dir.path("pub.log"));
    cluster.wait_owner("drain", "ingest-a", Duration::from_secs(10));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("drain").await;
    assert!(
        viewer
            .expect(Duration::from_secs(5), is_picture)
            .await
            .is_some()
    );

    edge.terminate();
    let signalled = Instant::now();
    let mut not_ready = None;
    while signalled.elapsed() < Duration::from_secs(3) {
        if edge.http_get("/readyz").0 == 503 {
            not_ready = Some(signalled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        not_ready.is_some_and(|t| t < Duration::from_secs(1)),
        "readiness fails at once: {not_ready:?}"
    );
    // The listener closes as the drain starts, a moment after readiness turned.
    let closing = Instant::now();
    while tokio::net::TcpStream::connect(edge.rtmp).await.is_ok() {
        assert!(
            closing.elapsed() < Duration::from_secs(2),
            "new connections are refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let pictures = viewer
        .count_pictures(signalled + Duration::from_millis(2500))
        .await;
    assert!(
        pictures > 30,
        "the viewer kept playing during the grace period ({pictures} pictures)"
    );
    let told = viewer
        .expect(Duration::from_secs(5), |e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify"))
        .await;
    assert!(
        told.is_some(),
        "the viewer is told when the grace period ends"
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "not before the grace period"
    );
    assert!(viewer.closed_by_server(Duration::from_secs(5)).await);
    let status = edge
        .wait_exit(Duration::from_secs(10))
        .expect("the edge exits");
    assert!(status.success(), "clean exit: {status}");
}

/// Makes a CA and a certificate for `liverelay-ingest` (and 127.0.0.1) signed by it.
fn make_certificates(dir: &TempDir) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path(""))
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.path("san.ext"),
        "subjectAltName=DNS:liverelay-ingest,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=liverelay test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ingest.key",
        "-out",
        "ingest.csr",
        "-subj",
        "/CN=liverelay-ingest",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "ingest.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "ingest.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
}

/// With certificates configured the relay runs over TLS: an edge that trusts the CA plays the
/// stream; a plaintext client gets nowhere.
#[tokio::test]
async fn relay_over_tls() {
    let dir = TempDir::new("cluster-tls");
    make_certificates(&dir);
    let (cert, key, ca) = (
        dir.path("ingest.pem"),
        dir.path("ingest.key"),
        dir.path("ca.pem"),
    );
    let redis = RedisServer::start();
    let url = redis.url();
    let ingest = Server::start_role(
        "ingest",
        &["--redis-url", &url],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_CLUSTER__TLS_CERT", cert.to_str().unwrap()),
            ("LIVERELAY_CLUSTER__TLS_KEY", key.to_str().unwrap()),
        ],
    );
    let edge = Server::start_role(
        "edge",
        &["--redis-url", &url],
        &[
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
            ("LIVERELAY_CLUSTER__TLS_CA", ca.to_str().unwrap()),
            ("LIVERELAY_CLUSTER__TLS_DOMAIN", "liverelay-ingest"),
        ],
    );
    let _publisher = looping_publisher(&ingest.url("live/tls"), &dir.path("pub.log"));
    let mut viewer = TestClient::connect(edge.rtmp, "live").await;
    viewer.play("tls").await;
    assert!(
        viewer
            .expect(Duration::from_secs(10), is_picture)
            .await
            .is_some(),
        "pictures through the TLS relay"
    );

    let mut plain = liverelay_proto::relay::v1::relay_client::RelayClient::connect(format!(
        "http://{}",
        ingest.grpc
    ))
    .await
    .unwrap();
    let mut request = tonic::Request::new(liverelay_proto::relay::v1::SubscribeRequest {
        app: "live".into(),
        name: "tls".into(),
        subscriber: "plain".into(),
        max_payload: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert!(
        plain.subscribe(request).await.is_err(),
        "plaintext HTTP/2 is not served"
    );
}

/// The relay refuses calls without the cluster token, or with a wrong one.
#[tokio::test]
async fn relay_requires_the_cluster_token() {
    use liverelay_proto::relay::v1::SubscribeRequest;
    use liverelay_proto::relay::v1::relay_client::RelayClient;

    let cluster = Cluster::new();
    let ingest = cluster.node("ingest", "ingest-a");
    let dir = TempDir::new("cluster-token");
    let _publisher = looping_publisher(&ingest.url("live/secret"), &dir.path("pub.log"));
    cluster.wait_owner("secret", "ingest-a", Duration::from_secs(10));
    let mut client = RelayClient::connect(format!("http://{}", ingest.grpc))
        .await
        .unwrap();
    let request = || SubscribeRequest {
        app: "live".into(),
        name: "secret".into(),
        subscriber: "test".into(),
        max_payload: 0,
    };
    let err = client.subscribe(request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(request());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        client.subscribe(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut right = tonic::Request::new(request());
    right
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let mut stream = client
        .subscribe(right)
        .await
        .expect("the token opens the relay")
        .into_inner();
    assert!(
        stream.message().await.unwrap().is_some(),
        "a header arrives"
    );
}

/// The next `n` pictures of a [`MarkedSource`] a viewer receives: (index, timestamp).
async fn marked_pictures(viewer: &mut TestClient, n: usize) -> Vec<(u32, u64)> {
    let mut pictures = Vec::new();
    while pictures.len() < n {
        let event = viewer
            .next_event(Duration::from_secs(10))
            .await
            .expect("pictures keep coming");
        pictures.extend(MarkedSource::picture(&event));
    }
    pictures
}

/// Every stream an edge pulls from one ingest shares one relay connection (counted in the
/// kernel's socket table), and two edges give the same frame the same timestamp even when one
/// joined after a republish, when the ingest's timeline no longer starts at 0: both keep it.
/// (A player on the ingest keeps the stream there across the republish, so its timeline goes
/// on; an ingest that forgot a stream starts a new timeline, see ARCHITECTURE.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_one_relay_connection_and_edges_agree_on_timestamps() {
    let cluster = Cluster::new();
    let ingest = cluster.node_with(
        "ingest",
        "ingest-a",
        &[("LIVERELAY_CLUSTER__INGEST_ALLOW_PLAY", "true")],
    );
    let (edge_x, edge_y) = (
        cluster.node("edge", "edge-x"),
        cluster.node("edge", "edge-y"),
    );
    let names = ["one", "two", "three"];
    let mut sources: Vec<_> = names
        .iter()
        .map(|name| MarkedSource::with_gop(ingest.rtmp, name, 10))
        .collect();
    let mut viewers = Vec::new();
    for name in names {
        cluster.wait_owner(name, "ingest-a", Duration::from_secs(10));
        let mut viewer = TestClient::connect(edge_x.rtmp, "live").await;
        viewer.play(name).await;
        marked_pictures(&mut viewer, 1).await;
        viewers.push(viewer);
    }
    assert_eq!(
        established_connections_to(ingest.grpc.port()),
        1,
        "three streams from one ingest, one relay connection"
    );

    // `one` is republished; edge X's viewer stays on, edge Y starts pulling from a keyframe of
    // the new publish, which the ingest's timeline puts after the old one.
    let wait_count = |source: &MarkedSource, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while source.count() < n {
            assert!(Instant::now() < deadline, "the source sends pictures");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut on_ingest = TestClient::connect(ingest.rtmp, "live").await;
    on_ingest.play("one").await;
    marked_pictures(&mut on_ingest, 1).await;
    wait_count(&sources[0], 25);
    sources[0] = MarkedSource::with_gop(ingest.rtmp, "one", 10);
    wait_count(&sources[0], 25);
    let mut late = TestClient::connect(edge_y.rtmp, "live").await;
    late.play("one").await;
    let on_y = marked_pictures(&mut late, 10).await;
    assert!(on_y[0].0 >= 10, "edge Y joined mid-stream: {on_y:?}");
    assert!(on_y[0].1 > 1000, "after the first publish's time: {on_y:?}");

    let on_x = marked_pictures(&mut viewers[0], 120).await;
    // Edge X's pictures of the new publish: those after its index went back to 0.
    let restart = on_x
        .windows(2)
        .rposition(|w| w[1].0 < w[0].0)
        .expect("edge X saw the republish");
    let x_times: std::collections::HashMap<u32, u64> =
        on_x[restart + 1..].iter().copied().collect();
    let mut compared = 0;
    for (index, ts) in &on_y {
        if let Some(x_ts) = x_times.get(index) {
            assert_eq!(ts, x_ts, "picture {index}: edge Y's timestamp vs edge X's");
            compared += 1;
        }
    }
    assert!(
        compared >= 5,
        "both edges delivered the same pictures: {on_y:?} {x_times:?}"
    );
    assert_eq!(
        established_connections_to(ingest.grpc.port()),
        2,
        "one per edge"
    );
}

/// Frames over tonic's 4 MiB default message limit, in GOPs over 8 MiB, reach viewers of two
/// edges at once whole and in order. The stream is real x264 (lossless, of noise: every picture
/// about 4.3 MB), published in a loop; each edge's recording must be a run of the source's
/// pictures, bit for bit, starting at a keyframe.
#[test]
fn frames_over_four_mib_cross_two_edges_frame_exact() {
    let cluster = Cluster::new();
    // Two seconds of this stream is 43 MB: a default viewer queue (16 MiB) holds under a
    // second, and on a loaded machine a recorder may fall that far behind and skip to a
    // keyframe, as it should. This test is about frames crossing whole, so the queues are big.
    let queue = [("LIVERELAY_HUB__VIEWER_QUEUE_BYTES", "134217728")];
    let ingest = cluster.node_with("ingest", "ingest-a", &queue);
    let edges = [
        cluster.node_with("edge", "edge-x", &queue),
        cluster.node_with("edge", "edge-y", &queue),
    ];
    let dir = TempDir::new("cluster-big-frames");
    let source = dir.path("noise.flv");
    noise_flv(&source, "1280x720", 5, 8, 4, &dir.path("encode.log"));
    let pictures = packet_hashes(&source);
    assert_eq!(pictures.len(), 8);
    assert!(
        pictures.iter().all(|(_, size, _)| *size > 4 << 20),
        "every picture is over 4 MiB: {pictures:?}"
    );

    let _publisher =
        looping_publisher_of(&source, &ingest.url("live/noise"), &dir.path("publish.log"));
    cluster.wait_owner("noise", "ingest-a", Duration::from_secs(20));
    let mut recorders: Vec<_> = edges
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            let out = dir.path(&format!("edge-{i}.flv"));
            let log = dir.path(&format!("edge-{i}.log"));
            let rec = ffmpeg_record_with(&edge.url("live/noise"), &out, &["-frames:v", "10"], &log);
            (rec, out, log)
        })
        .collect();
    for (rec, out, log) in &mut recorders {
        wait_success(rec, Duration::from_secs(90), log);
        let got = packet_hashes(out);
        assert_eq!(got.len(), 10, "{}", out.display());
        assert_follows_source(&got, &pictures);
    }
}

/// A draining ingest asks the publishers that can reconnect (their `connect` announced
/// Enhanced RTMP v2 `capsEx` Reconnect) to do so at once, so they move to another ingest before
/// the grace period ends; the others hear nothing of it and are closed at its end.
#[tokio::test]
async fn a_draining_ingest_asks_enhanced_rtmp_publishers_to_reconnect() {
    use liverelay_rtmp::command::{caps_ex, code};
    let cluster = Cluster::new();
    let ingest = cluster.node_with(
        "ingest",
        "ingest-d",
        &[("LIVERELAY_RTMP__DRAIN_GRACE_SECS", "10")],
    );
    let mut modern = TestClient::connect_with_caps(ingest.rtmp, "live", caps_ex::RECONNECT).await;
    assert_eq!(modern.publish("modern").await.2, code::PUBLISH_START);
    let mut legacy = TestClient::connect(ingest.rtmp, "live").await;
    assert_eq!(legacy.publish("legacy").await.2, code::PUBLISH_START);
    ingest.terminate();
    let reconnect = |e: &ClientEvent| matches!(e, ClientEvent::Status { stream_id: 0, code, .. } if code == code::CONNECT_RECONNECT_REQUEST);
    assert!(
        modern
            .expect(Duration::from_secs(5), reconnect)
            .await
            .is_some(),
        "the capable publisher is asked to reconnect"
    );
    assert!(ingest.wait_log("asked the client to reconnect", Duration::from_secs(2)));
    assert!(
        legacy
            .expect(Duration::from_secs(1), reconnect)
            .await
            .is_none(),
        "a client that did not announce it is not asked"
    );
    assert!(!legacy.is_closed(), "and stays until the grace period ends");
}

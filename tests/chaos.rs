//! The cluster under real network faults: Redis, control, ingests and an edge each in a network
//! namespace of its own ([`support::netns::Lab`]), with partitions and packet loss made by
//! nftables rules between them and latency added on the relay link. Players and publishers are
//! the test's own RTMP clients, in this host's namespace. On a machine that cannot make
//! namespaces (not root, no `ip` or `nft`) each of these tests says so and passes.
//!
//! Also here, needing no namespaces: two processes configured with the same pod id.

mod support;

use std::net::SocketAddr;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liverelay_rtmp::{Media, MediaKind};
use support::netns::{DelayLink, Lab};
use support::redis::RedisServer;
use support::rtmp::{Arrival, MediaLog, TestClient};
use support::*;

const TOKEN: &str = "test-chaos-token";
const ADMIN: &str = "test-chaos-admin";

/// The cluster's pods in `lab`, all on the Redis of its host `redis`.
struct Pods<'a> {
    lab: &'a Lab,
    redis: RedisServer,
    env: Vec<(&'static str, String)>,
}

impl<'a> Pods<'a> {
    /// Redis (with `redis_args`) on host `redis`; pods get `env` besides the cluster's.
    fn start(lab: &'a Lab, redis_args: &[&str], env: &[(&'static str, &str)]) -> Self {
        let redis = RedisServer::start_at(lab.host("redis").place(), redis_args);
        let mut all = vec![
            ("LIVERELAY_CLUSTER_TOKEN", TOKEN.to_owned()),
            ("LIVERELAY_ADMIN_TOKEN", ADMIN.to_owned()),
            ("LIVERELAY_CLUSTER__REPORT_INTERVAL_SECS", "1".to_owned()),
        ];
        all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        Self {
            lab,
            redis,
            env: all,
        }
    }

    /// `liverelay ROLE` on host `pod` (also its pod id), with more arguments and environment.
    fn node(&self, role: &str, pod: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let url = self.redis.url();
        let mut all: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("POD_NAME", pod));
        all.extend_from_slice(env);
        let mut all_args = vec!["--redis-url", url.as_str()];
        all_args.extend_from_slice(args);
        Server::start_at(&self.lab.host(pod).place(), role, &all_args, &all)
    }

    fn wait_owner(&self, name: &str, owner: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self
            .redis
            .record("live", name)
            .is_some_and(|r| r["owner"] == owner)
        {
            assert!(
                Instant::now() < deadline,
                "live/{name} not owned by {owner}: {:?}",
                self.redis.record("live", name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// After the FLV AVC header of each video message of a [`Source`]: this, the source's tag and
/// (pictures only) the picture's index.
const MARK: &[u8] = b"chaos";

/// A live source of the test's own: publishes `live/NAME` (trying again every `retry` while
/// refused, as encoders do), then a sequence header and 25 pictures a second, a keyframe each
/// second, each marked with its source's `tag` and its index, timestamps from 0. Records when
/// each picture was written; stops at the first failed write (the server ended the publish).
struct Source {
    sent: Arc<Mutex<Vec<Instant>>>,
    live: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    fn start(addr: SocketAddr, name: &str, tag: u8, retry: Duration) -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (live, ended): (Arc<AtomicBool>, Arc<AtomicBool>) = Default::default();
        let name = name.to_owned();
        let task = tokio::spawn({
            let (sent, live, ended) = (sent.clone(), Arc::clone(&live), Arc::clone(&ended));
            async move {
                let (mut client, id) = loop {
                    let mut client = TestClient::connect(addr, "live").await;
                    let (id, _, code) = client.publish(&name).await;
                    if code == "NetStream.Publish.Start" {
                        break (client, id);
                    }
                    tokio::time::sleep(retry).await;
                };
                live.store(true, Ordering::SeqCst);
                let video = |head: [u8; 5], index: Option<u32>| {
                    let mut payload = [&head[..], MARK, &[tag]].concat();
                    if let Some(index) = index {
                        payload.extend(index.to_be_bytes());
                    }
                    Media {
                        kind: MediaKind::Video,
                        timestamp: u64::from(index.unwrap_or(0)) * 40,
                        payload: payload.into(),
                    }
                };
                let header = video([0x17, 0, 0, 0, 0], None);
                client.deref_mut().send_media(id, &header);
                let mut tick = tokio::time::interval(Duration::from_millis(40));
                for index in 0u32.. {
                    tick.tick().await;
                    let key = if index % 25 == 0 { 0x17 } else { 0x27 };
                    sent.lock().unwrap().push(Instant::now());
                    let picture = video([key, 1, 0, 0, 0], Some(index));
                    client.deref_mut().send_media(id, &picture);
                    if client.flush().await.is_err() {
                        break;
                    }
                }
                ended.store(true, Ordering::SeqCst);
            }
        });
        Self {
            sent,
            live,
            ended,
            task,
        }
    }

    async fn wait_live(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.live.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the publish was not accepted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When picture `index` was written.
    fn sent(&self, index: u32) -> Option<Instant> {
        self.sent.lock().unwrap().get(index as usize).copied()
    }

    /// Whether the server ended the publish (a write failed).
    fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The source tag and index of a picture a viewer got; `None` for anything else.
    fn of(arrival: &Arrival) -> Option<(u8, u32)> {
        let rest = arrival.media.payload.get(5..)?.strip_prefix(MARK)?;
        let (tag, index) = rest.split_first()?;
        Some((*tag, u32::from_be_bytes(index.try_into().ok()?)))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A player of `live/NAME` on `edge`, read all the time by its own task.
async fn viewer(edge: &Server, name: &str) -> MediaLog {
    let mut client = TestClient::connect(edge.rtmp, "live").await;
    client.play(name).await;
    MediaLog::spawn(client)
}

/// Source `A` publishing as `publish` on `ingest` (a stream name, or a key's secret), and a
/// viewer of `live/PLAY` on `edge` that has had its first second of pictures.
async fn playing(ingest: &Server, edge: &Server, publish: &str, play: &str) -> (Source, MediaLog) {
    let source = Source::start(ingest.rtmp, publish, b'A', Duration::from_millis(200));
    source.wait_live(Duration::from_secs(10)).await;
    let log = viewer(edge, play).await;
    assert!(
        wait_pictures_of(&log, b'A', 0, 25, Duration::from_secs(10)).await,
        "the viewer plays; edge log:\n{}",
        edge.log()
    );
    (source, log)
}

/// Waits until the viewer has `n` pictures more than `from` of source `tag`.
async fn wait_pictures_of(log: &MediaLog, tag: u8, from: usize, n: usize, limit: Duration) -> bool {
    let of_tag = |p: &[Arrival]| {
        p.iter()
            .filter(|a| Source::of(a).is_some_and(|(t, _)| t == tag))
            .count()
    };
    log.wait_pictures(limit, |p| of_tag(p) >= from + n).await
}

/// The viewer's pictures have timestamps that never go back.
fn assert_monotonic(pictures: &[Arrival]) {
    for pair in pictures.windows(2) {
        assert!(
            pair[1].media.timestamp >= pair[0].media.timestamp,
            "timestamps go back: {} after {}",
            pair[1].media.timestamp,
            pair[0].media.timestamp
        );
    }
}

/// The viewer is still connected and was never told the stream ended.
fn assert_stayed(log: &MediaLog) {
    assert!(!log.closed(), "the viewer stays connected");
    let statuses = log.statuses();
    assert!(
        !statuses
            .iter()
            .any(|s| s == "NetStream.Play.UnpublishNotify"),
        "the viewer is not told the stream ended: {statuses:?}"
    );
}

/// The longest time without a picture from `since` until now.
fn longest_gap(pictures: &[Arrival], since: Instant) -> Duration {
    let arrivals = pictures.iter().map(|a| a.at).filter(|at| *at >= since);
    let times: Vec<Instant> = std::iter::once(since)
        .chain(arrivals)
        .chain(std::iter::once(Instant::now()))
        .collect();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Edge and ingest cannot reach each other for 3 s (every packet dropped, both ends up). The
/// edge's viewer stays connected, gets pictures again once the link is back, and its timestamps
/// never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_survives_an_edge_ingest_partition() {
    let Some(lab) = Lab::new("part", &["redis", "ingest", "edge"]) else {
        return;
    };
    let pods = Pods::start(&lab, &[], &[]);
    let ingest = pods.node("ingest", "ingest", &[], &[]);
    let edge = pods.node("edge", "edge", &[], &[]);
    let (source, log) = playing(&ingest, &edge, "cut", "cut").await;

    let cut = lab.partition("edge", "ingest");
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = log.pictures().len();
    cut.heal();
    let healed = Instant::now();
    assert!(
        wait_pictures_of(&log, b'A', before, 50, Duration::from_secs(20)).await,
        "no pictures after the partition healed; edge log:\n{}",
        edge.log()
    );
    let pictures = log.pictures();
    let first_after = pictures
        .iter()
        .find(|a| a.at > healed)
        .expect("a picture after the heal");
    eprintln!(
        "edge-ingest partition of 3 s: pictures again {:?} after the heal; the longest gap {:?}",
        first_after.at - healed,
        longest_gap(&pictures, cut_at - Duration::from_secs(1)),
    );
    assert_monotonic(&pictures);
    assert_stayed(&log);
    assert!(!source.ended(), "the publish is not disturbed");
}

/// Ingest A is cut off from Redis for longer than its lease while its publisher keeps sending.
/// The publisher moves to ingest B (a new source, told apart by its tag), which takes the stream
/// over; once A reaches Redis again it ends its publish. The edge's viewer gets B's pictures and,
/// once the first came, never again one of A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_cut_off_from_redis_loses_its_stream_without_mixing() {
    const LEASE: Duration = Duration::from_secs(2);
    let Some(lab) = Lab::new("fenc", &["redis", "ingest-a", "ingest-b", "edge"]) else {
        return;
    };
    let lease = LEASE.as_millis().to_string();
    let pods = Pods::start(&lab, &[], &[("LIVERELAY_REDIS__LEASE_TTL_MS", &lease)]);
    let ingest_a = pods.node("ingest", "ingest-a", &[], &[]);
    let ingest_b = pods.node("ingest", "ingest-b", &[], &[]);
    let edge = pods.node("edge", "edge", &[], &[]);
    let (old, log) = playing(&ingest_a, &edge, "fenced", "fenced").await;
    pods.wait_owner("fenced", "ingest-a", Duration::from_secs(10));

    let cut = lab.partition("ingest-a", "redis");
    let cut_at = Instant::now();
    let new = Source::start(ingest_b.rtmp, "fenced", b'B', Duration::from_millis(250));
    assert!(
        wait_pictures_of(&log, b'B', 0, 10, Duration::from_secs(20)).await,
        "the edge never played ingest B's source; edge log:\n{}\ningest B log:\n{}",
        edge.log(),
        ingest_b.log()
    );
    eprintln!(
        "ingest cut off from Redis: the new source's pictures at the edge {:?} after the cut",
        cut_at.elapsed()
    );
    assert!(!old.ended(), "the cut-off ingest could not have known yet");
    // Past the lease, and A's publisher still sending.
    tokio::time::sleep((LEASE + Duration::from_secs(1)).saturating_sub(cut_at.elapsed())).await;
    let mark = ingest_a.log_mark();
    cut.heal();
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(10);
    while !old.ended() {
        assert!(
            Instant::now() < deadline,
            "ingest A kept the publish after reaching Redis again; its log:\n{}",
            ingest_a.log_since(mark)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "ingest cut off from Redis: its publish ended {:?} after the partition healed",
        healed.elapsed()
    );
    assert!(
        ingest_a.wait_log_since(mark, "publish revoked", Duration::from_secs(5)),
        "{}",
        ingest_a.log_since(mark)
    );
    let count = log.pictures().len();
    assert!(wait_pictures_of(&log, b'B', count, 25, Duration::from_secs(10)).await);

    let tags: Vec<u8> = log
        .pictures()
        .iter()
        .filter_map(|a| Source::of(a).map(|(tag, _)| tag))
        .collect();
    let first_b = tags.iter().position(|t| *t == b'B').unwrap();
    assert!(
        tags[first_b..].iter().all(|t| *t == b'B'),
        "the edge played ingest A's pictures after ingest B's: {}",
        String::from_utf8_lossy(&tags)
    );
    assert_stayed(&log);
    pods.wait_owner("fenced", "ingest-b", Duration::from_secs(1));
    drop(new);
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    samples[samples.len() / 2]
}

/// How long after it was written each picture of `source` reached the viewer, for pictures
/// that arrived between `from` and `to`.
fn latencies(log: &MediaLog, source: &Source, from: Instant, to: Instant) -> Vec<Duration> {
    log.pictures()
        .iter()
        .filter(|a| a.at >= from && a.at < to)
        .filter_map(|a| {
            let (_, index) = Source::of(a)?;
            Some(a.at.saturating_duration_since(source.sent(index)?))
        })
        .collect()
}

/// The relay link between ingest and edge gets 100 ms of delay each way and loses 2 % of its
/// packets (nftables drops them at random in the edge's namespace). The edge's viewer keeps
/// playing: pictures keep coming at the source's rate, none more than 2 s apart. Prints the
/// relay's added latency (median picture latency with the impairment less that without).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_keep_playing_over_a_slow_lossy_relay_link() {
    let Some(lab) = Lab::new("slow", &["redis", "ingest", "edge"]) else {
        return;
    };
    // The edge reaches the ingest's relay endpoint only through the delaying link.
    let link = DelayLink::start(lab.gateway);
    let advertise = link.addr.to_string();
    let pods = Pods::start(&lab, &[], &[]);
    let ingest = pods.node(
        "ingest",
        "ingest",
        &[],
        &[("LIVERELAY_CLUSTER__ADVERTISE_ADDR", &advertise)],
    );
    link.forward_to(ingest.grpc);
    let edge = pods.node("edge", "edge", &[], &[]);
    let (source, log) = playing(&ingest, &edge, "slow", "slow").await;

    let clean = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = median(latencies(&log, &source, clean, Instant::now()));

    link.set_delay(Duration::from_millis(100));
    let _loss = lab.lossy("edge", link.addr, 2);
    let impaired = Instant::now();
    let before = log.pictures().len();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pictures = log.pictures();
    let got = pictures.len() - before;
    // Judged from the second second on: what was in flight when the delay began is late once.
    let settled = impaired + Duration::from_secs(1);
    let gap = longest_gap(&pictures, settled);
    assert!(
        got >= 150 && gap < Duration::from_secs(2),
        "the viewer kept playing: {got} pictures in 8 s (200 sent), the longest gap {gap:?}"
    );
    let slow = median(latencies(&log, &source, settled, Instant::now()));
    eprintln!(
        "relay link with 100 ms delay each way and 2 % loss: {got} pictures in 8 s, median \
         latency {slow:?} against {baseline:?} before: the relay added {:?}; longest gap {gap:?}",
        slow.saturating_sub(baseline),
    );
    // Not against the baseline: on a loaded machine that may have been the slower phase.
    assert!(
        slow >= Duration::from_millis(100),
        "the delay is on the relay path ({slow:?} against {baseline:?})"
    );
    assert_monotonic(&pictures);
    assert_stayed(&log);
}

/// `POST`/`GET` on control's admin API: (status, JSON body).
fn api(control: &Server, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = http_request(control.http, method, path, Some(ADMIN), body);
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Redis with append-only persistence restarts under a live stream. The stream key made through
/// control's API, its restream target and the relay that target declares are still there
/// afterwards; the edge's viewer keeps playing throughout and the stream stays registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_persistence_keeps_keys_targets_relays_and_streams() {
    let Some(lab) = Lab::new("aof", &["redis", "control", "ingest", "edge"]) else {
        return;
    };
    let mut pods = Pods::start(&lab, &["--appendonly", "yes"], &[]);
    let control = pods.node("control", "control", &[], &[]);
    let control_url = format!("http://{}", control.grpc);
    let with_control = ["--control-url", control_url.as_str()];
    let ingest = pods.node("ingest", "ingest", &with_control, &[]);
    let edge = pods.node("edge", "edge", &with_control, &[]);

    let (status, key) = api(
        &control,
        "POST",
        "/v1/keys",
        r#"{"app":"live","stream":"kept"}"#,
    );
    assert_eq!(status, 201, "{key}");
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    let targets = format!("/v1/keys/{id}/targets");
    // Nothing listens there: the push fails and retries, but it is declared.
    let target_url = format!("rtmp://{}:{}/live/out", lab.gateway, free_port());
    let (status, target) = api(
        &control,
        "POST",
        &targets,
        &format!(r#"{{"url":"{target_url}"}}"#),
    );
    assert_eq!(status, 201, "{target}");
    let relay_id = target["relay_id"].clone();
    let relay_listed = || {
        let (_, rows) = api(&control, "GET", "/v1/relays", "");
        rows["relays"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["id"] == relay_id))
    };
    assert!(relay_listed(), "the target's relay is declared");

    let (source, log) = playing(&ingest, &edge, secret, "kept").await;
    pods.wait_owner("kept", "ingest", Duration::from_secs(10));

    pods.redis.stop();
    let stopped = Instant::now();
    pods.redis.restart();
    eprintln!("redis restart took {:?}", stopped.elapsed());
    let count = log.pictures().len();
    assert!(
        wait_pictures_of(&log, b'A', count, 75, Duration::from_secs(10)).await,
        "{}",
        edge.log()
    );
    let pictures = log.pictures();
    let gap = longest_gap(&pictures, stopped - Duration::from_secs(1));
    assert!(
        gap < Duration::from_secs(2),
        "the viewer stalled {gap:?} across the restart"
    );
    assert!(!source.ended(), "the publish survived the restart");
    assert_monotonic(&pictures);
    assert_stayed(&log);

    // Control's connection broke with the restart: its first calls may fail until it is back.
    let (asked, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(10));
    let mut failed = 0;
    let listed = loop {
        let (status, listed) = api(&control, "GET", "/v1/keys", "");
        if status == 200 {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "control's API is back: {status} {listed}"
        );
        failed += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "after the restart, control's API failed {failed} calls and answered {:?} after the first",
        asked.elapsed()
    );
    assert!(
        listed.to_string().contains(id),
        "the stream key is still there: {listed}"
    );
    let (_, listed) = api(&control, "GET", &targets, "");
    assert_eq!(
        listed["targets"].as_array().map(Vec::len),
        Some(1),
        "the restream target is still there: {listed}"
    );
    assert!(relay_listed(), "the declared relay is still there");
    pods.wait_owner("kept", "ingest", Duration::from_secs(5));
}

/// Two ingests configured with the same pod id: the second refuses to start and says why, and
/// the first keeps its stream (same owner, same process run). Once the first is gone (kill -9),
/// an ingest under its name starts, as a restarted pod does.
#[tokio::test]
async fn a_second_ingest_with_a_running_pods_id_refuses_to_start() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [
        ("LIVERELAY_CLUSTER_TOKEN", TOKEN),
        ("POD_NAME", "ingest-same"),
    ];
    let mut first = Server::start_role("ingest", &["--redis-url", &url], &env);
    let source = Source::start(first.rtmp, "mine", b'A', Duration::from_millis(200));
    source.wait_live(Duration::from_secs(10)).await;
    let owned = redis.record("live", "mine").expect("registered");

    let dir = TempDir::new("duplicate-pod");
    let log = dir.path("second.log");
    let any = "127.0.0.1:0";
    let mut second = spawn_logged(
        std::process::Command::new(env!("CARGO_BIN_EXE_liverelay"))
            .args(["ingest", "--redis-url", &url, "--rtmp-listen", any])
            .args(["--http-listen", any, "--grpc-listen", any])
            .envs(env),
        &log,
    );
    let status = second.wait_timeout(Duration::from_secs(20));
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the second process refuses to start ({status:?}); its log:\n{said}"
    );
    assert!(said.contains("pod ids must be unique"), "{said}");
    let now = redis.record("live", "mine").expect("still registered");
    assert_eq!(
        (&now["owner"], &now["instance"], &now["generation"]),
        (&owned["owner"], &owned["instance"], &owned["generation"]),
        "the first process keeps its stream"
    );
    assert!(!source.ended(), "the first process's publish goes on");

    first.kill();
    let restarted = Server::start_role("ingest", &["--redis-url", &url], &env);
    assert!(restarted.log().contains("liverelay ready"));
}

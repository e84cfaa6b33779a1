//! The RTMP listener's limits and timers in a real `liverelay standalone`: the connection limit,
//! handshake and idle timeouts, pings, write coalescing, and a slow player skipping ahead while
//! others keep every frame. Settings come through `LIVERELAY_RTMP__*` / `LIVERELAY_HUB__*`.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use liverelay_rtmp::session::ClientEvent;
use liverelay_rtmp::{Media, MediaKind};
use support::rtmp::{MediaLog, TestClient};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Milliseconds between synthetic pictures' timestamps.
const FRAME_MS: u64 = 40;

/// A synthetic H.264 picture carrying its index `seq`, `len` bytes long, a keyframe every
/// `gop` pictures. The rest of the payload is derived from `seq`, so a viewer can check that
/// every byte arrived.
fn picture(seq: u64, gop: u64, len: usize) -> Media {
    let mut payload = vec![
        if seq.is_multiple_of(gop) { 0x17 } else { 0x27 },
        1,
        0,
        0,
        0,
    ];
    payload.extend(seq.to_be_bytes());
    payload.extend((payload.len()..len).map(|i| (i as u64 ^ seq) as u8));
    Media {
        kind: MediaKind::Video,
        timestamp: seq * FRAME_MS,
        payload: Bytes::from(payload),
    }
}

/// The index a [`picture`] carries.
fn seq_of(media: &Media) -> u64 {
    u64::from_be_bytes(media.payload[5..13].try_into().unwrap())
}

/// Waits for `count` [`picture`]s (`gop`, `len`) at `player` and checks that they are every one,
/// in order and whole; returns them. `who` names the player in failures.
async fn every_picture(
    player: &MediaLog,
    (count, gop, len): (u64, u64, usize),
    who: &str,
) -> Vec<support::rtmp::Arrival> {
    assert!(
        player
            .wait_pictures(Duration::from_secs(10), |p| p.len() >= count as usize)
            .await,
        "{who} got {} of {count} pictures",
        player.pictures().len()
    );
    let got = player.pictures();
    let seqs: Vec<u64> = got.iter().map(|a| seq_of(&a.media)).collect();
    assert_eq!(
        seqs,
        (0..count).collect::<Vec<_>>(),
        "{who}: every picture, in order"
    );
    for a in &got {
        assert_eq!(
            a.media.payload,
            picture(seq_of(&a.media), gop, len).payload,
            "{who}: picture {} whole",
            seq_of(&a.media)
        );
    }
    got
}

/// An AVC sequence header, so the stream looks like H.264 to the hub.
fn avc_header() -> Media {
    Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F]),
    }
}

/// Publishes `live/NAME` with our client; returns it and its stream id once publishing.
async fn publisher(server: &Server, name: &str) -> (TestClient, u32) {
    let mut client = TestClient::connect(server.rtmp, "live").await;
    let (id, _, code) = client.publish(name).await;
    assert_eq!(code, "NetStream.Publish.Start");
    client.send_media(id, &avc_header()).await;
    (client, id)
}

/// Reads a raw socket until the server closes it; how long that took, or `None` if it was still
/// open at `limit`. Also returns how many bytes the server sent.
async fn time_to_close(
    socket: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (Option<Duration>, usize) {
    let mut buf = [0u8; 4096];
    let mut got = 0;
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return (None, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(since.elapsed()), got),
            Ok(Ok(n)) => got += n,
        }
    }
}

/// Waits until `text` is in the server's log `n` times.
fn wait_log_count(server: &Server, text: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches(text).count() < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// With `rtmp.max_connections` = 3 and three connections open, a fourth is closed at accept,
/// before any handshake byte, logged and counted; the three go on, and a freed slot is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused_at_accept() {
    let server = Server::start_with(&[("LIVERELAY_RTMP__MAX_CONNECTIONS", "3")]);
    let dir = TempDir::new("maxconn");
    let _publisher = looping_publisher(&server.url("live/full"), &dir.path("pub.log"));
    server.wait_live("live", "full", Duration::from_secs(10));
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("full").await;
    let viewer = MediaLog::spawn(viewer);
    let mut idle = TestClient::connect(server.rtmp, "live").await;
    assert_eq!(server.metric("liverelay_connections_open"), Some(3.0));

    // The fourth sends C0+C1 and gets no S0: the server closed it without a handshake.
    let mut fourth = TcpStream::connect(server.rtmp).await.unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.resize(1537, 0);
    let _ = fourth.write_all(&c0c1).await;
    let (closed, got) = time_to_close(&mut fourth, Instant::now(), Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the connection over the limit was left open"
    );
    assert_eq!(got, 0, "the connection over the limit got handshake bytes");
    assert!(
        server.wait_log("connection refused: limit reached", Duration::from_secs(5)),
        "the refusal is logged"
    );
    assert_eq!(
        server.metric("liverelay_connections_total{kind=\"refused\"}"),
        Some(1.0)
    );

    // The viewer is read all along: pictures newer than its latest at the refusal were sent
    // after it.
    let edge = viewer.pictures().last().map_or(0, |a| a.media.timestamp);
    assert!(
        viewer
            .wait_pictures(Duration::from_secs(10), |p| {
                p.iter().filter(|a| a.media.timestamp > edge).count() >= SAMPLE_FPS as usize
            })
            .await,
        "the viewer kept receiving after the refusal"
    );
    idle.create_stream().await;

    // A slot comes back when a connection ends.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("liverelay_connections_open") != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "the idle connection's slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = TestClient::connect(server.rtmp, "live").await;
    again.create_stream().await;
    assert_eq!(
        server.metric("liverelay_connections_total{kind=\"refused\"}"),
        Some(1.0)
    );
}

/// With `rtmp.handshake_timeout_secs` = 1, a peer that sends nothing, one that stops in the
/// middle of C1, and one that never sends C2 are each closed about a second after connecting
/// (not at the 10 s default), logged and counted.
#[tokio::test]
async fn handshakes_that_stall_are_closed_after_the_handshake_timeout() {
    let server = Server::start_with(&[("LIVERELAY_RTMP__HANDSHAKE_TIMEOUT_SECS", "1")]);
    let stall = |sent: usize, read_s0s1s2: bool| {
        let addr = server.rtmp;
        async move {
            let started = Instant::now();
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let mut c0c1 = vec![3u8];
            c0c1.resize(1537, 7);
            socket.write_all(&c0c1[..sent]).await.unwrap();
            if read_s0s1s2 {
                let mut s0s1s2 = vec![0u8; 3073];
                socket.read_exact(&mut s0s1s2).await.unwrap();
            }
            time_to_close(&mut socket, started, Duration::from_secs(6))
                .await
                .0
        }
    };
    let (silent, half_c1, no_c2) =
        tokio::join!(stall(0, false), stall(700, false), stall(1537, true));
    for (what, closed) in [("silent", silent), ("half a C1", half_c1), ("no C2", no_c2)] {
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after 6 s"));
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(4)).contains(&closed),
            "{what}: closed after {closed:?}, the timeout is 1 s"
        );
    }
    assert!(
        wait_log_count(&server, "handshake timed out", 3),
        "each timeout is logged:\n{}",
        server.log()
    );
    assert_eq!(
        server.metric("liverelay_handshake_failures_total{reason=\"timeout\"}"),
        Some(3.0)
    );
}

/// With `rtmp.ping_interval_secs` = 1 and `idle_timeout_secs` = 3: a connected player that
/// sends nothing is pinged (user control 6) once it was quiet for the interval; one that answers
/// stays connected well past the idle timeout, one that never answers is closed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_peers_are_pinged_and_closed_if_they_never_answer() {
    let server = Server::start_with(&[
        ("LIVERELAY_RTMP__PING_INTERVAL_SECS", "1"),
        ("LIVERELAY_RTMP__IDLE_TIMEOUT_SECS", "3"),
    ]);
    let answers = async {
        let mut client = TestClient::connect(server.rtmp, "live").await;
        let connected = Instant::now();
        // Reading answers each ping (the session does); nothing else is sent.
        while connected.elapsed() < Duration::from_millis(6500) && !client.is_closed() {
            client.next_event(Duration::from_millis(200)).await;
        }
        assert!(!client.is_closed(), "a peer that answers pings was closed");
        client.create_stream().await;
        let pings: Vec<Duration> = client.pings().iter().map(|p| *p - connected).collect();
        pings
    };
    let never_answers = async {
        let mut client = TestClient::connect(server.rtmp, "live").await;
        client.stop_writing();
        let connected = Instant::now();
        while connected.elapsed() < Duration::from_secs(10) && !client.is_closed() {
            client.next_event(Duration::from_millis(200)).await;
        }
        let closed = client.is_closed().then(|| connected.elapsed());
        (client.pings().len(), closed)
    };
    let (pings, (silent_pings, closed)) = tokio::join!(answers, never_answers);

    // The session pings a peer one ping interval (1 s here) after the last bytes it sent, so an
    // answering peer is pinged about every second; the bounds leave room for a loaded machine.
    assert!(pings.len() >= 2, "pings at {pings:?}");
    assert!(
        pings[0] >= Duration::from_millis(900) && pings[0] < Duration::from_millis(3000),
        "first ping at {:?}",
        pings[0]
    );
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(3000),
            "pings at {pings:?}"
        );
    }
    assert!(silent_pings >= 1, "the silent peer was never pinged");
    let closed = closed.expect("a peer that never answers is closed");
    assert!(
        (Duration::from_millis(2900)..Duration::from_secs(6)).contains(&closed),
        "closed {closed:?} after its last message; the idle timeout is 3 s"
    );
    assert!(
        wait_log_count(&server, "nothing received within the idle timeout", 1),
        "the idle close is logged"
    );
    assert_eq!(
        server
            .log()
            .matches("nothing received within the idle timeout")
            .count(),
        1,
        "only the silent peer was closed"
    );
}

/// With `rtmp.write_coalesce_ms` = 250, pictures published every 10 ms reach a player in bursts
/// about a quarter second apart (one write per window), every one of them complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_coalescing_batches_a_players_writes_and_keeps_every_frame() {
    const PICTURES: u64 = 300;
    let server = Server::start_with(&[
        ("LIVERELAY_RTMP__WRITE_COALESCE_MS", "250"),
        // Nagle would batch small writes by itself; without it, batches are coalescing's.
        ("LIVERELAY_RTMP__TCP_NODELAY", "true"),
    ]);
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("co").await;
    let viewer = MediaLog::spawn(viewer);
    let (mut publisher, id) = publisher(&server, "co").await;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for seq in 0..PICTURES {
        tick.tick().await;
        publisher.send_media(id, &picture(seq, 25, 2000)).await;
    }
    let got = every_picture(&viewer, (PICTURES, 25, 2000), "the player").await;

    // Bursts: pictures that arrived less than 100 ms after the previous one. Written at once,
    // the 3 s would be one long trickle; coalesced, about 12 bursts.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    let bursts = 1 + gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(100))
        .count();
    // Generous above: a loaded machine adds pauses of its own; ignoring the window gives 1.
    assert!(
        (6..=40).contains(&bursts),
        "{bursts} bursts of pictures for 3 s at a 250 ms window; gaps over 100 ms: {:?}",
        gaps.iter()
            .filter(|g| **g >= Duration::from_millis(100))
            .collect::<Vec<_>>()
    );
    let long = gaps
        .iter()
        .filter(|g| **g >= Duration::from_millis(200))
        .count();
    assert!(long >= 6, "{long} gaps of 200 ms or more between bursts");
}

/// A player that keeps up is written to by the publisher itself (`rtmp.direct_writes`, counted
/// in `liverelay_rtmp_direct_players`) and gets every picture in order; with direct writes off
/// its own task writes them, the same pictures.
#[tokio::test]
async fn a_player_that_keeps_up_is_written_by_the_publisher() {
    const PICTURES: u64 = 300;
    for direct in [true, false] {
        let server = Server::start_with(&[(
            "LIVERELAY_RTMP__DIRECT_WRITES",
            if direct { "true" } else { "false" },
        )]);
        let mut player = TestClient::connect(server.rtmp, "live").await;
        player.play("keepup").await;
        let player = MediaLog::spawn(player);
        let (mut publisher, id) = publisher(&server, "keepup").await;
        let mut most_direct = 0.0f64;
        for seq in 0..PICTURES {
            publisher.send_media(id, &picture(seq, 50, 2000)).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            let now = server.metric("liverelay_rtmp_direct_players").unwrap();
            most_direct = most_direct.max(now);
        }
        assert_eq!(
            most_direct,
            f64::from(u8::from(direct)),
            "direct writes {direct}"
        );
        every_picture(&player, (PICTURES, 50, 2000), "the player").await;
        drop(publisher);
        // The publisher leaving hands the player back to its task.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.metric("liverelay_rtmp_direct_players") != Some(0.0) {
            assert!(Instant::now() < deadline, "still counted as direct");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A player that stops reading falls behind, skips to a keyframe (with the sequence header sent
/// again) and carries on, the skip counted in the stream's `frames_dropped`; a player reading
/// alongside gets every picture, and the publisher is never held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_player_skips_to_a_keyframe_while_another_gets_every_frame() {
    // For a player that does not read, the server's socket holds a few MB (its send buffer
    // grows up to 4 MB) and its write a batch of up to 256 frames (1 MB here); with the ring's
    // 500 frames, a player more than 9.6 MB behind must have skipped. The player that reads
    // may be half a second late (500 pictures at 1000/s) before it would skip too.
    const PICTURES: u64 = 3000;
    const GOP: u64 = 25;
    const LEN: usize = 4000;
    let server = Server::start_with(&[
        ("LIVERELAY_HUB__VIEWER_QUEUE_FRAMES", "500"),
        ("LIVERELAY_RTMP__TCP_NODELAY", "true"),
    ]);
    let mut good = TestClient::connect(server.rtmp, "live").await;
    good.play("slow").await;
    let good = MediaLog::spawn(good);
    // A small receive buffer: the kernel holds little of what this player does not read.
    let mut slow = TestClient::connect_with_receive_buffer(server.rtmp, "live", 4096).await;
    slow.play("slow").await;
    server.wait_viewers("live", "slow", 2, Duration::from_secs(5));

    let (mut publisher, id) = publisher(&server, "slow").await;
    let (sent_tx, mut sent) = tokio::sync::watch::channel(0u64);
    let publishing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for seq in 0..PICTURES {
            tick.tick().await;
            publisher.send_media(id, &picture(seq, GOP, LEN)).await;
            sent_tx.send_replace(seq + 1);
        }
        publisher
    });
    // The slow player reads nothing until 9.6 MB went out; a publisher held back by it would
    // never get there.
    tokio::time::timeout(
        Duration::from_secs(20),
        sent.wait_for(|n| *n >= PICTURES * 4 / 5),
    )
    .await
    .expect("the publisher was held back by a player that does not read")
    .unwrap();

    let is_header = |m: &Media| m.payload[1] == 0;
    let mut video: Vec<Media> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !video
        .last()
        .is_some_and(|m| !is_header(m) && seq_of(m) == PICTURES - 1)
    {
        assert!(
            Instant::now() < deadline && !slow.is_closed(),
            "the slow player never got the last picture"
        );
        if let Some(ClientEvent::Media { media, .. }) =
            slow.next_event(Duration::from_secs(1)).await
            && media.kind == MediaKind::Video
        {
            video.push(media);
        }
    }
    let _publisher = publishing.await.unwrap();

    // The good player: every picture, in order.
    every_picture(&good, (PICTURES, GOP, LEN), "the reading player").await;

    // The slow player: a run from the start, then after each gap a sequence header and a
    // keyframe.
    let mut last = None;
    let mut skips = 0;
    for (i, m) in video.iter().enumerate() {
        if is_header(m) {
            continue;
        }
        let seq = seq_of(m);
        let expected = last.map_or(0, |l| l + 1);
        assert!(seq >= expected, "picture {seq} after {last:?}");
        if seq > expected {
            skips += 1;
            assert_eq!(
                seq % GOP,
                0,
                "the skip from {last:?} lands on picture {seq}, not a keyframe"
            );
            assert!(
                i > 0 && is_header(&video[i - 1]),
                "the sequence header comes again before {seq}"
            );
        }
        last = Some(seq);
    }
    assert!(
        skips >= 1,
        "the slow player never skipped ({} messages)",
        video.len()
    );
    let pictures = video.iter().filter(|m| !is_header(m)).count() as u64;
    let dropped = server.stream_info("live", "slow").unwrap()["frames_dropped"]
        .as_u64()
        .unwrap();
    assert_eq!(
        dropped,
        PICTURES - pictures,
        "frames_dropped counts what the slow player missed"
    );
}

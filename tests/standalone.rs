//! `liverelay standalone` with real clients: ffmpeg publishes, ffmpeg/ffprobe play, and a small
//! client built on our protocol core checks what ffmpeg does not show.

mod support;

use std::time::{Duration, Instant};

use liverelay_rtmp::MediaKind;
use liverelay_rtmp::media::parse_video;
use liverelay_rtmp::session::ClientEvent;
use support::rtmp::{Arrival, MediaLog, TestClient};
use support::*;

fn counts(packets: &[Packet]) -> (usize, usize) {
    let video = packets.iter().filter(|p| p.video).count();
    (video, packets.len() - video)
}

/// Viewers that arrive before the publisher wait for it, then receive every frame it sends,
/// starting on a keyframe, decodable, with the codecs and size that were published.
#[test]
fn viewers_waiting_before_publish_receive_the_whole_stream() {
    let server = Server::start();
    let dir = TempDir::new("waiting");
    let url = server.url("live/test");
    let mut viewers: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.path(&format!("view{i}.flv"));
            let guard = ffmpeg_record(&url, &out, &dir.path(&format!("view{i}.log")));
            (guard, out)
        })
        .collect();
    // Each viewer is connected and waiting before anyone publishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .stream_info("live", "test")
        .map(|s| s["viewers"].as_u64())
        != Some(Some(3))
    {
        assert!(
            Instant::now() < deadline,
            "viewers did not all connect; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let sent = probe_packets(sample_flv().to_str().unwrap());
    let mut publisher = ffmpeg_publish(sample_flv(), &url, &dir.path("pub.log"));
    let status = publisher
        .wait_timeout(Duration::from_secs(30))
        .expect("publisher finishes");
    assert!(
        status.success(),
        "publisher failed: {}",
        std::fs::read_to_string(dir.path("pub.log")).unwrap()
    );

    for (i, (guard, out)) in viewers.iter_mut().enumerate() {
        // UnpublishNotify ends ffmpeg's play, so each recording completes by itself.
        let status = guard
            .wait_timeout(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("viewer {i} did not stop after unpublish"));
        assert!(
            status.success(),
            "viewer {i}: {}",
            std::fs::read_to_string(dir.path(&format!("view{i}.log"))).unwrap()
        );
        let got = probe_packets(out.to_str().unwrap());
        assert_eq!(
            counts(&got),
            counts(&sent),
            "viewer {i} received every audio and video frame"
        );
        let first_video = got.iter().find(|p| p.video).unwrap();
        assert!(first_video.keyframe, "viewer {i} starts on a keyframe");
        let streams = probe_streams(out.to_str().unwrap());
        assert_eq!(streams, ["aac", "h264,320,240"], "viewer {i}");
        assert_eq!(decode_errors(out), "", "viewer {i} decodes cleanly");
    }
    // ffmpeg sends a digest C1 and verifies our S1 digest and S2 signature.
    let log = server.log();
    assert!(
        log.contains("handshake=Some(Digest { scheme: 0 })"),
        "ffmpeg used the digest handshake:\n{log}"
    );
}

/// A player joining a running stream starts from the GOP cache: metadata and sequence headers,
/// then a keyframe, well within 300 ms.
#[tokio::test]
async fn late_joiner_starts_from_gop_cache_within_300ms() {
    let server = Server::start();
    let dir = TempDir::new("late");
    let _publisher = ffmpeg_publish(sample_flv(), &server.url("live/late"), &dir.path("pub.log"));
    server.wait_live("live", "late", Duration::from_secs(10));
    // Join mid-GOP (keyframes every 2 s).
    tokio::time::sleep(Duration::from_millis(2900)).await;

    let mut client = TestClient::connect(server.rtmp, "live").await;
    let started = Instant::now();
    client.play("late").await;
    let mut seen = Vec::new();
    let first_picture = loop {
        let event = client
            .next_event(Duration::from_secs(3))
            .await
            .expect("media arrives");
        if let ClientEvent::Media { media, .. } = event {
            let video =
                (media.kind == MediaKind::Video).then(|| parse_video(&media.payload).unwrap());
            seen.push((media.kind, video.is_some_and(|v| v.sequence_header)));
            if video.is_some_and(|v| !v.sequence_header) {
                break video.unwrap();
            }
        }
    };
    let elapsed = started.elapsed();
    assert!(first_picture.keyframe, "first picture is a keyframe");
    assert!(
        elapsed < Duration::from_millis(300),
        "first keyframe after {elapsed:?}"
    );
    assert_eq!(
        seen[0],
        (MediaKind::Metadata, false),
        "metadata first: {seen:?}"
    );
    assert_eq!(
        seen[1],
        (MediaKind::Video, true),
        "then the AVC sequence header: {seen:?}"
    );
}

/// ffprobe sees the published codecs and resolution on a running stream, and several players at
/// once decode it.
#[test]
fn several_players_decode_a_running_stream() {
    let server = Server::start();
    let dir = TempDir::new("several");
    let url = server.url("live/many");
    let _publisher = ffmpeg_publish(sample_flv(), &url, &dir.path("pub.log"));
    server.wait_live("live", "many", Duration::from_secs(10));
    assert_eq!(probe_streams(&url), ["aac", "h264,320,240"]);
    let mut players: Vec<ChildGuard> = (0..4)
        .map(|i| {
            let log = std::fs::File::create(dir.path(&format!("play{i}.log"))).unwrap();
            ChildGuard::spawn(
                std::process::Command::new("ffmpeg")
                    .args([
                        "-hide_banner",
                        "-v",
                        "error",
                        "-i",
                        &url,
                        "-frames:v",
                        "40",
                        "-f",
                        "null",
                        "-",
                    ])
                    .stdin(std::process::Stdio::null())
                    .stderr(log),
            )
        })
        .collect();
    for (i, p) in players.iter_mut().enumerate() {
        let status = p
            .wait_timeout(Duration::from_secs(20))
            .expect("player finishes");
        let log = std::fs::read_to_string(dir.path(&format!("play{i}.log"))).unwrap();
        assert!(status.success() && log.is_empty(), "player {i}: {log}");
    }
}

/// A second publisher of a live name is refused with NetStream.Publish.BadName and
/// disconnected; the first publisher's viewers keep receiving what it publishes after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_and_first_keeps_flowing() {
    let server = Server::start();
    let dir = TempDir::new("second");
    let _first = looping_publisher(&server.url("live/dup"), &dir.path("pub.log"));
    server.wait_live("live", "dup", Duration::from_secs(10));
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("dup").await;
    let viewer = MediaLog::spawn(viewer);

    let mut second = TestClient::connect(server.rtmp, "live").await;
    let (_, level, code) = second.publish("dup").await;
    assert_eq!(
        (level.as_str(), code.as_str()),
        ("error", "NetStream.Publish.BadName")
    );
    assert!(
        second.closed_by_server(Duration::from_secs(5)).await,
        "refused publisher is disconnected"
    );

    // ffmpeg as the second publisher gives up too.
    let mut ff = ffmpeg_publish(sample_flv(), &server.url("live/dup"), &dir.path("pub2.log"));
    let status = tokio::task::spawn_blocking(move || ff.wait_timeout(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("second ffmpeg exits");
    assert!(!status.success(), "second ffmpeg publisher must fail");

    // The viewer is read all along, so the newest picture it has is the live edge at the
    // refusal; frames buffered anywhere by then are older. Two seconds of pictures newer than
    // that (the publisher sends in real time) were published after the refusal.
    let edge = viewer.pictures().last().map_or(0, |a| a.media.timestamp);
    let newer = |p: &[Arrival]| p.iter().filter(|a| a.media.timestamp > edge).count();
    let want = 2 * SAMPLE_FPS as usize;
    assert!(
        viewer
            .wait_pictures(Duration::from_secs(10), |p| newer(p) >= want)
            .await,
        "the first publisher's stream goes on after the refusal: {} of {want} pictures newer \
         than {edge} ms",
        newer(&viewer.pictures())
    );
}

/// Garbage, a bad handshake and an oversized message each close only their own connection, with
/// a log line saying why; a live stream and its viewer are not disturbed.
#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    let server = Server::start_with(&[("LIVERELAY_RTMP__MAX_MESSAGE_SIZE", "1000000")]);
    let dir = TempDir::new("malformed");
    let _publisher = ffmpeg_publish(
        sample_flv(),
        &server.url("live/steady"),
        &dir.path("pub.log"),
    );
    server.wait_live("live", "steady", Duration::from_secs(10));
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("steady").await;

    // Not RTMP at all.
    let mut http = tokio::net::TcpStream::connect(server.rtmp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut http, &mut buf),
    )
    .await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "server closes a non-RTMP client: {n:?}"
    );

    // A continuation chunk on a chunk stream that never had a header.
    let mut bad_chunk = TestClient::connect(server.rtmp, "live").await;
    bad_chunk.send_raw(&[0xC9, 1, 2, 3, 4, 5, 6, 7]).await;
    assert!(bad_chunk.closed_by_server(Duration::from_secs(5)).await);

    // A message header announcing more than rtmp.max_message_size.
    let mut oversized = TestClient::connect(server.rtmp, "live").await;
    oversized
        .send_raw(&[0x08, 0, 0, 0, 0x0F, 0xFF, 0xFF, 0x09, 1, 0, 0, 0, 0x17])
        .await;
    assert!(oversized.closed_by_server(Duration::from_secs(5)).await);

    // Broken AMF inside a command.
    let mut bad_amf = TestClient::connect(server.rtmp, "live").await;
    bad_amf
        .send_raw(&[
            0x03, 0, 0, 0, 0, 0, 4, 0x14, 0, 0, 0, 0, 0x02, 0x00, 0x40, b'x',
        ])
        .await;
    assert!(bad_amf.closed_by_server(Duration::from_secs(5)).await);

    let before = Instant::now();
    let mut frames = 0;
    while before.elapsed() < Duration::from_secs(1) {
        if let Some(ClientEvent::Media { .. }) = viewer.next_event(Duration::from_secs(1)).await {
            frames += 1;
        }
    }
    assert!(
        frames > 20,
        "viewer kept receiving ({frames} messages in 1 s)"
    );
    for (text, what) in [
        ("handshake failed", "the bad handshake"),
        ("before any full header", "the bad chunk"),
        ("exceeds the limit", "the oversized message"),
        ("bad command", "the broken AMF"),
    ] {
        assert!(
            server.wait_log(text, Duration::from_secs(5)),
            "log names {what}:\n{}",
            server.log()
        );
    }
    assert_eq!(server.http_get("/healthz").0, 200);
}

/// When the publisher stops, a viewer hears UnpublishNotify and StreamEOF and stays connected;
/// a republish reaches it with PublishNotify and timestamps that go on increasing.
#[tokio::test]
async fn viewer_survives_republish_with_monotonic_timestamps() {
    let server = Server::start();
    let dir = TempDir::new("republish");
    let mut viewer = TestClient::connect(server.rtmp, "live").await;
    viewer.play("again").await;

    let mut last_ts = 0u64;
    for round in 0..2 {
        let mut publisher = ffmpeg_publish(
            sample_flv(),
            &server.url("live/again"),
            &dir.path(&format!("pub{round}.log")),
        );
        let notify = viewer
            .expect(Duration::from_secs(10), |e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.PublishNotify"))
            .await;
        assert!(notify.is_some(), "round {round}: PublishNotify");
        let (mut pictures, mut headers) = (0, 0);
        loop {
            match viewer
                .next_event(Duration::from_secs(10))
                .await
                .expect("stream continues")
            {
                ClientEvent::Media { media, .. } if media.kind == MediaKind::Video => {
                    assert!(
                        media.timestamp >= last_ts,
                        "round {round}: {} after {last_ts}",
                        media.timestamp
                    );
                    last_ts = media.timestamp;
                    let tag = parse_video(&media.payload).unwrap();
                    if tag.sequence_header {
                        headers += 1;
                    } else if !tag.info_only {
                        pictures += 1;
                    }
                }
                ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify" => {
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(
            pictures,
            (SAMPLE_SECONDS * SAMPLE_FPS) as usize,
            "round {round}: every picture"
        );
        assert_eq!(headers, 1, "round {round}: one AVC sequence header");
        assert!(
            viewer
                .expect(Duration::from_secs(2), |e| matches!(
                    e,
                    ClientEvent::StreamEof(_)
                ))
                .await
                .is_some()
        );
        tokio::task::spawn_blocking(move || publisher.wait_timeout(Duration::from_secs(5)))
            .await
            .unwrap();
    }
    assert!(
        last_ts >= u64::from(2 * SAMPLE_SECONDS - 1) * 1000,
        "second publish continued the timeline: {last_ts}"
    );
}

/// `/healthz` and `/readyz` answer; control without its admin token refuses to start and says
/// why.
#[test]
fn health_endpoints_and_a_control_without_admin_token() {
    let server = Server::start();
    assert_eq!(server.http_get("/healthz").0, 200);
    assert_eq!(server.http_get("/readyz").0, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liverelay"))
        .args(["control", "--http-listen", "127.0.0.1:0"])
        .env_remove("LIVERELAY_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("control.admin_token is required"),
        "{out:?}"
    );
}

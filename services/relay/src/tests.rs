//! The relay server's forwarding, driven in-process against a real hub: what a subscriber is
//! sent, in which order, and what it is refused. No sleeps: every wait is on a message, under a
//! timeout.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use liverelay_hub::{Hub, HubConfig, Publisher};
use liverelay_rtmp::{Media, MediaKind};
use liverelay_types::{ClusterToken, StreamId};
use tonic::{Code, Request, Status};

use crate::pb::relay_message::Kind;
use crate::pb::relay_server::Relay;
use crate::pb::{FrameKind, MediaFrame, RelayMessage, SubscribeRequest};
use crate::{RelayClientConfig, RelayError, RelayMetrics, RelayService};

const TOKEN: &str = "cluster-secret";
/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(5);

type Messages = <RelayService as Relay>::SubscribeStream;

fn key() -> StreamId {
    StreamId::new("live", "cam")
}

/// Every message wakes subscribers at once (no audio hold), so what a test pushed is what a
/// subscriber is woken for.
fn hub(viewer_queue_frames: usize) -> Hub {
    Hub::new(HubConfig {
        audio_hold: Duration::ZERO,
        viewer_queue_frames,
        ..HubConfig::default()
    })
}

fn service(hub: &Hub) -> RelayService {
    RelayService::new(
        hub.clone(),
        ClusterToken::new(TOKEN),
        RelayMetrics::default(),
    )
}

fn request(token: Option<&str>) -> Request<SubscribeRequest> {
    let mut request = Request::new(SubscribeRequest {
        app: "live".into(),
        name: "cam".into(),
        subscriber: "edge-test".into(),
    });
    if let Some(token) = token {
        liverelay_proto::token::attach(&ClusterToken::new(token), &mut request).unwrap();
    }
    request
}

fn metadata() -> Media {
    Media {
        kind: MediaKind::Metadata,
        timestamp: 0,
        payload: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
    }
}

/// An AVC sequence header; `version` tells two publishes' headers apart.
fn video_header(version: u8) -> Media {
    Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from(vec![0x17, 0, 0, 0, 0, 1, 0x64, version]),
    }
}

fn audio_header() -> Media {
    Media {
        kind: MediaKind::Audio,
        timestamp: 0,
        payload: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
    }
}

/// A video frame whose payload ends with `mark` (big-endian), so it can be recognised.
fn video(ts: u64, keyframe: bool, mark: u32) -> Media {
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend_from_slice(&mark.to_be_bytes());
    Media {
        kind: MediaKind::Video,
        timestamp: ts,
        payload: Bytes::from(payload),
    }
}

fn audio(ts: u64, mark: u32) -> Media {
    let mut payload = vec![0xAF, 1];
    payload.extend_from_slice(&mark.to_be_bytes());
    Media {
        kind: MediaKind::Audio,
        timestamp: ts,
        payload: Bytes::from(payload),
    }
}

/// The mark of a frame made by [`video`] or [`audio`].
fn mark(frame: &MediaFrame) -> Option<u32> {
    let tail = frame.payload.len().checked_sub(4)?;
    let coded = matches!(
        (frame.kind(), frame.payload.get(1)),
        (FrameKind::Video, Some(1)) | (FrameKind::Audio, Some(1))
    );
    coded.then(|| u32::from_be_bytes(frame.payload[tail..].try_into().unwrap()))
}

fn is_keyframe(frame: &MediaFrame) -> bool {
    frame.kind() == FrameKind::Video && frame.payload[0] >> 4 == 1
}

/// A publisher of [`key`] that has sent metadata, sequence headers and two GOPs:
/// marks 0 (keyframe), 1, 2 (keyframe), audio 3, 4.
fn publish_two_gops(hub: &Hub) -> Publisher {
    let mut publisher = hub.publish(key()).unwrap();
    publisher.push(metadata());
    publisher.push(video_header(1));
    publisher.push(audio_header());
    publisher.push(video(0, true, 0));
    publisher.push(video(33, false, 1));
    publisher.push(video(66, true, 2));
    publisher.push(audio(70, 3));
    publisher.push(video(100, false, 4));
    publisher
}

async fn next(messages: &mut Messages) -> Kind {
    tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription is still open")
        .expect("a message, not an error")
        .kind
        .expect("a message with a kind")
}

async fn subscribe(service: &RelayService) -> Messages {
    service
        .subscribe(request(Some(TOKEN)))
        .await
        .expect("subscription accepted")
        .into_inner()
}

async fn header(messages: &mut Messages) -> Vec<MediaFrame> {
    match next(messages).await {
        Kind::Header(header) => header.frames,
        other => panic!("expected the stream header first, got {other:?}"),
    }
}

async fn frame(messages: &mut Messages) -> MediaFrame {
    match next(messages).await {
        Kind::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn refusal(result: Result<tonic::Response<Messages>, Status>) -> Status {
    match result {
        Ok(_) => panic!("the subscription was accepted"),
        Err(status) => status,
    }
}

#[tokio::test]
async fn subscriber_gets_the_header_then_live_frames_in_order() {
    let hub = hub(256);
    let mut publisher = publish_two_gops(&hub);
    let service = service(&hub);
    let mut messages = subscribe(&service).await;

    let header = header(&mut messages).await;
    let payloads: Vec<&Bytes> = header.iter().map(|f| &f.payload).collect();
    assert_eq!(
        payloads,
        [
            &metadata().payload,
            &video_header(1).payload,
            &audio_header().payload,
            &video(66, true, 2).payload,
            &audio(70, 3).payload,
            &video(100, false, 4).payload,
        ],
        "metadata and sequence headers, then the GOP cache from the latest keyframe"
    );
    let kinds: Vec<FrameKind> = header.iter().map(MediaFrame::kind).collect();
    assert_eq!(
        kinds,
        [
            FrameKind::Metadata,
            FrameKind::Video,
            FrameKind::Audio,
            FrameKind::Video,
            FrameKind::Audio,
            FrameKind::Video,
        ]
    );
    assert_eq!(
        header.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
        [0, 0, 0, 66, 70, 100]
    );

    for (i, ts) in [(5u32, 133u64), (6, 166), (7, 200)] {
        publisher.push(video(ts, false, i));
    }
    publisher.push(audio(205, 8));
    publisher.push(video(233, true, 9));
    let mut live = Vec::new();
    for _ in 0..5 {
        let f = frame(&mut messages).await;
        live.push((mark(&f), f.timestamp, f.kind()));
    }
    assert_eq!(
        live,
        [
            (Some(5), 133, FrameKind::Video),
            (Some(6), 166, FrameKind::Video),
            (Some(7), 200, FrameKind::Video),
            (Some(8), 205, FrameKind::Audio),
            (Some(9), 233, FrameKind::Video),
        ],
        "live frames follow the header in the order they were published"
    );
}

#[tokio::test]
async fn a_publisher_restart_is_announced_before_the_new_publish() {
    let hub = hub(256);
    let publisher = publish_two_gops(&hub);
    let service = service(&hub);
    let mut messages = subscribe(&service).await;
    header(&mut messages).await;

    // The publisher reconnects before the relay task looks again: it sees the old publish end
    // and a new one begin together.
    drop(publisher);
    let mut publisher = hub.publish(key()).unwrap();
    publisher.push(video_header(2));
    publisher.push(video(0, true, 100));

    assert!(
        matches!(next(&mut messages).await, Kind::Restarted(_)),
        "a restart, not the end of the stream"
    );
    let header = frame(&mut messages).await;
    assert_eq!(
        header.payload,
        video_header(2).payload,
        "the new publish's header"
    );
    let key_frame = frame(&mut messages).await;
    assert_eq!(mark(&key_frame), Some(100));
    assert!(
        key_frame.timestamp > 100,
        "the stream's time goes on across the restart"
    );
}

#[tokio::test]
async fn unpublish_ends_the_subscription() {
    let hub = hub(256);
    let mut publisher = publish_two_gops(&hub);
    let service = service(&hub);
    let mut messages = subscribe(&service).await;
    header(&mut messages).await;
    publisher.push(video(133, false, 5));
    drop(publisher);

    assert_eq!(
        mark(&frame(&mut messages).await),
        Some(5),
        "frames sent before the unpublish are delivered first"
    );
    assert!(matches!(next(&mut messages).await, Kind::End(_)));
    let after = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("the stream closes after its end");
    assert!(after.is_none(), "nothing follows the end: {after:?}");
    assert!(
        !hub.is_live(&key()) && hub.viewer_count(&key()) == 0,
        "the relay's hub viewer is gone"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_cluster_token_is_refused() {
    let hub = hub(256);
    let _publisher = publish_two_gops(&hub);
    let service = service(&hub);
    for (token, why) in [(Some("not-the-secret"), "wrong"), (None, "missing")] {
        let status = refusal(service.subscribe(request(token)).await);
        assert_eq!(status.code(), Code::Unauthenticated, "{why} token");
        assert_eq!(hub.viewer_count(&key()), 0, "{why} token: no hub viewer");
    }
}

#[tokio::test]
async fn a_stream_that_is_not_live_is_refused_as_not_found() {
    let hub = hub(256);
    let service = service(&hub);
    let status = refusal(service.subscribe(request(Some(TOKEN))).await);
    assert_eq!(status.code(), Code::NotFound, "never published: {status:?}");

    // A stream that has viewers but no publisher (an RTMP player waiting) is not live either.
    let _waiting = hub.play(key()).unwrap();
    let status = refusal(service.subscribe(request(Some(TOKEN))).await);
    assert_eq!(
        status.code(),
        Code::NotFound,
        "only waiting viewers: {status:?}"
    );
    assert_eq!(hub.viewer_count(&key()), 1, "no subscriber joined");
}

/// The same answers through tonic on loopback, as the edge's `subscribe` sees them: the edge
/// waits for the next publish on `NotFound` (services/edge/src/upstream.rs), and retries as a
/// failure on anything else.
#[tokio::test]
async fn over_grpc_the_edge_client_sees_unauthenticated_not_found_and_the_stream() {
    let hub = hub(256);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service(&hub).into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let config = |token: &str| RelayClientConfig {
        token: ClusterToken::new(token),
        tls: None,
        subscriber: "edge-test".into(),
        connect_timeout: WAIT,
    };
    let refused = |result: Result<tonic::Streaming<RelayMessage>, RelayError>| match result {
        Err(RelayError::Refused(status)) => status.code(),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the subscription was accepted"),
    };

    let not_live = crate::subscribe(&addr, &key(), &config(TOKEN)).await;
    assert_eq!(refused(not_live), Code::NotFound);

    let mut publisher = publish_two_gops(&hub);
    let wrong = crate::subscribe(&addr, &key(), &config("guess")).await;
    assert_eq!(refused(wrong), Code::Unauthenticated);

    let mut messages = crate::subscribe(&addr, &key(), &config(TOKEN))
        .await
        .expect("subscribed");
    let first = tokio::time::timeout(WAIT, messages.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Kind::Header(header)) = first.kind else {
        panic!("expected the header, got {first:?}");
    };
    assert_eq!(
        header.frames.iter().filter_map(mark).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    publisher.push(video(133, false, 5));
    let second = tokio::time::timeout(WAIT, messages.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Kind::Frame(f)) = second.kind else {
        panic!("expected a frame, got {second:?}");
    };
    assert_eq!(mark(&f), Some(5));
    drop(messages);
    server.abort();
}

/// An edge that reads nothing fills its bounded queue; the relay task then waits, the hub keeps
/// taking the publisher's frames, and the subscriber resumes at a keyframe (with the sequence
/// headers again) instead of receiving the whole backlog.
#[tokio::test]
async fn a_slow_subscriber_skips_to_a_keyframe_and_never_holds_the_publisher() {
    const FRAMES: u32 = 600;
    const GOP: u32 = 50;
    let hub = hub(32);
    let mut publisher = hub.publish(key()).unwrap();
    publisher.push(video_header(1));
    publisher.push(video(0, true, 0));
    let service = service(&hub);
    let mut messages = subscribe(&service).await;
    header(&mut messages).await;

    // The subscriber reads nothing while the publisher sends; the relay task runs between
    // pushes (this is a single-threaded runtime) and takes what it can.
    for i in 1..FRAMES {
        publisher.push(video(u64::from(i) * 33, i % GOP == 0, i));
        tokio::task::yield_now().await;
    }
    assert_eq!(
        publisher
            .stats()
            .frames_in
            .load(std::sync::atomic::Ordering::Relaxed),
        u64::from(FRAMES) + 1,
        "every push was taken"
    );

    let mut received = Vec::new();
    let mut headers_after_start = 0;
    while received.last().map(|(m, _)| *m) != Some(FRAMES - 1) {
        let f = frame(&mut messages).await;
        match mark(&f) {
            Some(m) => received.push((m, is_keyframe(&f))),
            None => {
                assert_eq!(f.payload, video_header(1).payload);
                headers_after_start += 1;
            }
        }
    }
    assert!(
        received.len() < (FRAMES - 1) as usize,
        "a subscriber that read nothing was sent the whole backlog ({} frames): nothing was skipped",
        received.len()
    );
    assert!(
        received.len() <= 64 + 2 * 256,
        "more frames than the queue and the hub's backlog hold: {}",
        received.len()
    );
    for pair in received.windows(2) {
        let ((a, _), (b, b_key)) = (pair[0], pair[1]);
        assert!(b > a, "frames out of order: {a} then {b}");
        if b != a + 1 {
            assert!(
                b_key,
                "after skipping {a}..{b} it resumed on a non-keyframe"
            );
        }
    }
    assert!(
        headers_after_start >= 1,
        "the sequence header is sent again after a skip"
    );
    assert!(
        hub.streams()[0].frames_dropped > 0,
        "the hub counted the skip"
    );
}

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

use crate::convert::{FRAMING, decode, encode, frame_event, message_limit};
use crate::pb::relay_server::Relay;
use crate::pb::{RelayMessage, SubscribeRequest};
use crate::{
    RelayClient, RelayClientConfig, RelayError, RelayEvent, RelayMetrics, RelayService,
    RelayedFrame, Subscription,
};

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
    service_with(hub, RelayMetrics::default())
}

fn service_with(hub: &Hub, metrics: RelayMetrics) -> RelayService {
    RelayService::new(hub.clone(), ClusterToken::new(TOKEN), metrics)
}

fn request(token: Option<&str>) -> Request<SubscribeRequest> {
    let mut request = Request::new(SubscribeRequest {
        app: "live".into(),
        name: "cam".into(),
        subscriber: "edge-test".into(),
        max_payload: 0,
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
fn mark(frame: &RelayedFrame) -> Option<u32> {
    let payload = &frame.media.payload;
    let tail = payload.len().checked_sub(4)?;
    let coded = matches!(
        (frame.media.kind, payload.get(1)),
        (MediaKind::Video, Some(1)) | (MediaKind::Audio, Some(1))
    );
    coded.then(|| u32::from_be_bytes(payload[tail..].try_into().unwrap()))
}

fn is_keyframe(frame: &RelayedFrame) -> bool {
    frame.media.kind == MediaKind::Video && frame.media.payload[0] >> 4 == 1
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

async fn next(messages: &mut Messages) -> RelayEvent {
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("a message within the wait")
        .expect("the subscription is still open")
        .expect("a message, not an error");
    decode(message).expect("a message this build understands")
}

async fn subscribe(service: &RelayService) -> Messages {
    service
        .subscribe(request(Some(TOKEN)))
        .await
        .expect("subscription accepted")
        .into_inner()
}

/// The header, then `cached` frames from the ingest's cache.
async fn header(messages: &mut Messages, cached: usize) -> Vec<RelayedFrame> {
    match next(messages).await {
        RelayEvent::Header { generation } => assert_eq!(generation, 1, "the first publish"),
        other => panic!("expected the stream header first, got {other:?}"),
    }
    let mut frames = Vec::new();
    for _ in 0..cached {
        let f = frame(messages).await;
        assert!(
            f.cached,
            "frame {} of the cache is marked cached",
            frames.len()
        );
        frames.push(f);
    }
    frames
}

async fn frame(messages: &mut Messages) -> RelayedFrame {
    match next(messages).await {
        RelayEvent::Frame(frame) => frame,
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

    let header = header(&mut messages, 6).await;
    let payloads: Vec<&Bytes> = header.iter().map(|f| &f.media.payload).collect();
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
    let kinds: Vec<MediaKind> = header.iter().map(|f| f.media.kind).collect();
    assert_eq!(
        kinds,
        [
            MediaKind::Metadata,
            MediaKind::Video,
            MediaKind::Audio,
            MediaKind::Video,
            MediaKind::Audio,
            MediaKind::Video,
        ]
    );
    assert_eq!(
        header.iter().map(|f| f.media.timestamp).collect::<Vec<_>>(),
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
        assert!(!f.cached, "live frames are not marked cached");
        live.push((mark(&f), f.media.timestamp, f.media.kind));
    }
    assert_eq!(
        live,
        [
            (Some(5), 133, MediaKind::Video),
            (Some(6), 166, MediaKind::Video),
            (Some(7), 200, MediaKind::Video),
            (Some(8), 205, MediaKind::Audio),
            (Some(9), 233, MediaKind::Video),
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
    header(&mut messages, 6).await;

    // The publisher reconnects before the relay task looks again: it sees the old publish end
    // and a new one begin together.
    drop(publisher);
    let mut publisher = hub.publish(key()).unwrap();
    publisher.push(video_header(2));
    publisher.push(video(0, true, 100));

    assert_eq!(
        next(&mut messages).await,
        RelayEvent::Restarted { generation: 2 },
        "a restart with the new generation, not the end of the stream"
    );
    let header = frame(&mut messages).await;
    assert_eq!(
        header.media.payload,
        video_header(2).payload,
        "the new publish's header"
    );
    let key_frame = frame(&mut messages).await;
    assert_eq!(mark(&key_frame), Some(100));
    assert!(
        key_frame.media.timestamp > 100,
        "the stream's time goes on across the restart"
    );
}

#[tokio::test]
async fn unpublish_ends_the_subscription() {
    let hub = hub(256);
    let mut publisher = publish_two_gops(&hub);
    let service = service(&hub);
    let mut messages = subscribe(&service).await;
    header(&mut messages, 6).await;
    publisher.push(video(133, false, 5));
    drop(publisher);

    assert_eq!(
        mark(&frame(&mut messages).await),
        Some(5),
        "frames sent before the unpublish are delivered first"
    );
    assert_eq!(next(&mut messages).await, RelayEvent::End);
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

/// Serves `service` over tonic on loopback; the server counts the TCP connections it accepted.
struct Server {
    addr: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(service: RelayService) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let incoming =
            tokio_stream::wrappers::TcpListenerStream::new(listener).inspect(move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming(incoming)
                .await;
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn client(token: &str, max_payload: u32) -> RelayClient {
    RelayClient::new(RelayClientConfig {
        token: ClusterToken::new(token),
        tls: None,
        subscriber: "edge-test".into(),
        connect_timeout: WAIT,
        max_payload,
    })
}

async fn event(subscription: &mut Subscription) -> RelayEvent {
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("an event within the wait")
        .expect("not an error")
        .expect("the subscription is still open")
}

async fn relayed_frame(subscription: &mut Subscription) -> RelayedFrame {
    match event(subscription).await {
        RelayEvent::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// The same answers through tonic on loopback, as the edge's client sees them: the edge
/// waits for the next publish on `NotFound` (services/edge/src/upstream), and retries as a
/// failure on anything else.
#[tokio::test]
async fn over_grpc_the_edge_client_sees_unauthenticated_not_found_and_the_stream() {
    let hub = hub(256);
    let server = Server::start(service(&hub)).await;
    let refused = |result: Result<Subscription, RelayError>| match result {
        Err(RelayError::Refused(status)) => status.code(),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the subscription was accepted"),
    };

    let edge = client(TOKEN, 1 << 20);
    let not_live = edge.subscribe(&server.addr, &key()).await;
    assert_eq!(refused(not_live), Code::NotFound);

    let mut publisher = publish_two_gops(&hub);
    let wrong = client("guess", 1 << 20)
        .subscribe(&server.addr, &key())
        .await;
    assert_eq!(refused(wrong), Code::Unauthenticated);

    let mut subscription = edge
        .subscribe(&server.addr, &key())
        .await
        .expect("subscribed");
    assert_eq!(
        event(&mut subscription).await,
        RelayEvent::Header { generation: 1 }
    );
    let mut cached = Vec::new();
    for _ in 0..6 {
        let f = relayed_frame(&mut subscription).await;
        assert!(f.cached);
        cached.extend(mark(&f));
    }
    assert_eq!(cached, [2, 3, 4], "the GOP cache from the latest keyframe");
    publisher.push(video(133, false, 5));
    let live = relayed_frame(&mut subscription).await;
    assert_eq!((mark(&live), live.cached), (Some(5), false));
    assert!(live.ingest_received_unix_us > 0, "for the hop latency");
}

/// A payload of `len` bytes, a keyframe or not, that [`mark`] recognises.
fn big_video(ts: u64, keyframe: bool, len: usize, mark: u32) -> Media {
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.resize(len - 4, 0xAB);
    payload.extend_from_slice(&mark.to_be_bytes());
    Media {
        kind: MediaKind::Video,
        timestamp: ts,
        payload: Bytes::from(payload),
    }
}

/// A frame of exactly the announced limit crosses the relay, in a GOP cache far over tonic's
/// 4 MiB default message limit (each cached frame is its own message); one byte more is not
/// sent, counted and logged, and the frames after it still flow.
#[tokio::test]
async fn frames_up_to_the_limit_cross_and_larger_ones_are_skipped() {
    const LIMIT: usize = 5 << 20;
    let hub = hub(256);
    let metrics = RelayMetrics::default();
    let server = Server::start(service_with(&hub, metrics.clone())).await;
    let mut publisher = hub.publish(key()).unwrap();
    publisher.push(video_header(1));
    publisher.push(big_video(0, true, LIMIT, 0));
    for i in 1..4 {
        publisher.push(big_video(u64::from(i) * 33, false, 3 << 20, i));
    }

    let edge = client(TOKEN, LIMIT as u32);
    let mut subscription = edge
        .subscribe(&server.addr, &key())
        .await
        .expect("subscribed");
    assert!(matches!(
        event(&mut subscription).await,
        RelayEvent::Header { .. }
    ));
    let mut marks = Vec::new();
    for _ in 0..5 {
        let f = relayed_frame(&mut subscription).await;
        assert!(f.cached);
        marks.extend(mark(&f).map(|m| (m, f.media.payload.len())));
    }
    assert_eq!(
        marks,
        [(0, LIMIT), (1, 3 << 20), (2, 3 << 20), (3, 3 << 20)],
        "a 14 MiB GOP with a keyframe at the limit, whole"
    );

    publisher.push(big_video(133, false, LIMIT + 1, 4));
    publisher.push(video(166, false, 5));
    let next = relayed_frame(&mut subscription).await;
    assert_eq!(
        mark(&next),
        Some(5),
        "the frame over the limit is skipped, not fatal"
    );
    assert_eq!(metrics.frames_over_limit.get(), 1);
}

#[test]
fn the_message_limit_covers_every_field_of_a_frame_at_the_limit() {
    let payload = vec![0x17; 1 << 20];
    let media = Media {
        kind: MediaKind::Video,
        timestamp: u64::MAX,
        payload: Bytes::from(payload),
    };
    let frame = liverelay_hub::Frame::new(media, u64::MAX, u64::MAX, Default::default());
    let message = encode(frame_event(&frame, true));
    let len = prost::Message::encoded_len(&message);
    assert!(len <= message_limit(1 << 20), "{len} bytes");
    assert!(
        len + FRAMING > message_limit(1 << 20),
        "the framing allowance is not excessive"
    );
}

#[test]
fn decoding_slices_the_received_buffer_and_skips_what_it_does_not_know() {
    let media = video(33, true, 7);
    let frame = liverelay_hub::Frame::new(media.clone(), 33, 1, Default::default());
    let mut wire = bytes::BytesMut::new();
    prost::Message::encode(&encode(frame_event(&frame, false)), &mut wire).unwrap();
    let received = wire.freeze();
    let message: RelayMessage = prost::Message::decode(received.clone()).unwrap();
    let Some(RelayEvent::Frame(decoded)) = decode(message) else {
        panic!("a frame");
    };
    assert_eq!(decoded.media, media);
    let inside = received.as_ptr_range();
    assert!(
        inside.contains(&decoded.media.payload.as_ptr()),
        "the payload is a slice of what was received, not a copy"
    );

    let unknown_kind = crate::pb::MediaFrame {
        kind: 99,
        ..Default::default()
    };
    let message = RelayMessage {
        kind: Some(crate::pb::relay_message::Kind::Frame(unknown_kind)),
    };
    assert_eq!(
        decode(message),
        None,
        "a newer ingest's frame kind is skipped"
    );
    assert_eq!(decode(RelayMessage { kind: None }), None);
}

/// Every stream an edge pulls from one ingest shares one HTTP/2 connection, which closes when
/// the last subscription ends.
#[tokio::test]
async fn subscriptions_to_one_ingest_share_one_connection() {
    let hub = hub(256);
    let server = Server::start(service(&hub)).await;
    let names = ["a", "b", "c", "d"];
    let _publishers: Vec<Publisher> = names
        .iter()
        .map(|name| {
            let mut p = hub.publish(StreamId::new("live", *name)).unwrap();
            p.push(video(0, true, 0));
            p
        })
        .collect();
    let edge = client(TOKEN, 1 << 20);
    let mut subscriptions = Vec::new();
    for name in names {
        let mut s = edge
            .subscribe(&server.addr, &StreamId::new("live", name))
            .await
            .expect("subscribed");
        assert!(matches!(event(&mut s).await, RelayEvent::Header { .. }));
        subscriptions.push(s);
    }
    assert_eq!(server.connections(), 1, "four streams, one TCP connection");
    assert_eq!(edge.connections(), 1);
    subscriptions.clear();
    assert_eq!(edge.connections(), 0, "closed with its last subscription");
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
    header(&mut messages, 2).await;

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
                assert_eq!(f.media.payload, video_header(1).payload);
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

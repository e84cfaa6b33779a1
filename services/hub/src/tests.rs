use bytes::Bytes;
use liverelay_rtmp::{Media, MediaKind};

use crate::*;
use liverelay_types::StreamId;

fn key() -> StreamId {
    StreamId::new("live", "test")
}

fn video(ts: u64, keyframe: bool) -> Media {
    let b0 = if keyframe { 0x17 } else { 0x27 };
    Media {
        kind: MediaKind::Video,
        timestamp: ts,
        payload: Bytes::from(vec![b0, 1, 0, 0, 0, ts as u8]),
    }
}

fn video_header() -> Media {
    Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64]),
    }
}

fn audio_header() -> Media {
    Media {
        kind: MediaKind::Audio,
        timestamp: 0,
        payload: Bytes::from_static(&[0xAF, 0, 0x12, 0x10]),
    }
}

fn audio(ts: u64) -> Media {
    Media {
        kind: MediaKind::Audio,
        timestamp: ts,
        payload: Bytes::from_static(&[0xAF, 1, 0x21]),
    }
}

fn metadata() -> Media {
    Media {
        kind: MediaKind::Metadata,
        timestamp: 0,
        payload: Bytes::from_static(&[
            2, 0, 10, b'o', b'n', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a',
        ]),
    }
}

fn frames(items: &[ViewerItem]) -> Vec<&Frame> {
    items
        .iter()
        .filter_map(|i| match i {
            ViewerItem::Frame(f) => Some(&**f),
            _ => None,
        })
        .collect()
}

fn poll_all(v: &mut Viewer) -> Vec<ViewerItem> {
    let mut out = Vec::new();
    while v.poll(&mut out, 64) > 0 {}
    out
}

#[test]
fn late_joiner_starts_from_cached_gop_with_headers() {
    let hub = Hub::new(HubConfig::default());
    let mut p = hub.publish(key()).unwrap();
    p.push(metadata());
    p.push(video_header());
    p.push(audio_header());
    for i in 0..10u64 {
        p.push(video(i * 33, i % 5 == 0));
        p.push(audio(i * 33 + 5));
    }
    let mut v = hub.play(key()).unwrap();
    let items = poll_all(&mut v);
    let f = frames(&items);
    assert_eq!(f[0].kind, MediaKind::Metadata);
    assert!(f[1].sequence_header && f[1].kind == MediaKind::Video);
    assert!(f[2].sequence_header && f[2].kind == MediaKind::Audio);
    assert!(f[3].keyframe, "first picture is the last keyframe");
    assert_eq!(f[3].timestamp, 5 * 33);
    assert_eq!(f.len(), 3 + 10, "GOP of 5 video + 5 audio");
    assert!(
        !items.iter().any(|i| matches!(i, ViewerItem::Published)),
        "Play.Start already says live"
    );
}

#[test]
fn viewers_share_one_encoding() {
    let hub = Hub::new(HubConfig::default());
    let mut p = hub.publish(key()).unwrap();
    let mut a = hub.play(key()).unwrap();
    let mut b = hub.play(key()).unwrap();
    p.push(video(0, true));
    let fa = poll_all(&mut a);
    let fb = poll_all(&mut b);
    let (wa, wb) = (frames(&fa)[0].rtmp(4096, 1), frames(&fb)[0].rtmp(4096, 1));
    assert_eq!(
        wa.as_ptr(),
        wb.as_ptr(),
        "same bytes, not a copy per viewer"
    );
    assert_ne!(frames(&fa)[0].rtmp(128, 1).as_ptr(), wa.as_ptr());
}

#[test]
fn viewer_before_publisher_waits_then_starts_on_keyframe() {
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    assert!(poll_all(&mut v).is_empty());
    let mut p = hub.publish(key()).unwrap();
    let items = poll_all(&mut v);
    assert!(matches!(items.as_slice(), [ViewerItem::Published]));
    p.push(video_header());
    p.push(video(0, false)); // not decodable without a keyframe: skipped
    p.push(video(33, true));
    let items = poll_all(&mut v);
    let f = frames(&items);
    assert_eq!(f.len(), 2);
    assert!(f[0].sequence_header && f[1].keyframe);
    assert_eq!(v.dropped(), 1);
}

#[test]
fn second_publisher_refused_first_keeps_going() {
    let hub = Hub::new(HubConfig::default());
    let mut p = hub.publish(key()).unwrap();
    assert_eq!(
        hub.publish(key()).err(),
        Some(HubError::AlreadyPublishing(key()))
    );
    let mut v = hub.play(key()).unwrap();
    p.push(video(0, true));
    assert_eq!(frames(&poll_all(&mut v)).len(), 1);
}

#[test]
fn unpublish_then_republish_keeps_time_monotonic() {
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(video(1000, true));
    p.push(video(2000, false));
    drop(p);
    let mut p = hub.publish(key()).unwrap();
    p.push(video(0, true));
    let items = poll_all(&mut v);
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| match i {
            ViewerItem::Published => "pub",
            ViewerItem::Unpublished => "unpub",
            ViewerItem::Frame(_) => "frame",
        })
        .collect();
    assert_eq!(kinds, ["pub", "frame", "frame", "unpub", "pub", "frame"]);
    let ts: Vec<u64> = frames(&items).iter().map(|f| f.timestamp).collect();
    assert_eq!(ts, [0, 1000, 1001]);
    drop(p);
    assert!(matches!(
        poll_all(&mut v).as_slice(),
        [ViewerItem::Unpublished]
    ));
}

/// Video frames of `len` payload bytes (keyframe when `key`), tagged with their index.
fn big_video(i: u64, key: bool, len: usize) -> Media {
    let mut payload = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend(i.to_be_bytes());
    payload.resize(len, 0);
    Media {
        kind: MediaKind::Video,
        timestamp: i * 33,
        payload: Bytes::from(payload),
    }
}

/// The most frames, and bytes ([`Frame::heap_cost`]), the hub held at once while `total` frames (a keyframe
/// every `gop` frames) flooded a stream with one viewer that never reads and one that keeps up.
/// A viewer is only a cursor into the ring, so every frame still alive once the keeping-up
/// viewer dropped its copies is held by the stream (ring, GOP cache, sequence headers): this
/// measures what the stream holds without trusting its own bookkeeping. The publisher is
/// returned still live.
fn flood(config: HubConfig, total: u64, gop: u64, len: usize) -> (usize, usize, Viewer, Publisher) {
    let hub = Hub::new(config);
    let mut p = hub.publish(key()).unwrap();
    p.push(video_header());
    let slow = hub.play(key()).unwrap();
    let mut fast = hub.play(key()).unwrap();
    let mut seen: Vec<std::sync::Weak<Frame>> = Vec::new();
    let (mut most_frames, mut most_bytes) = (0, 0);
    for i in 0..total {
        p.push(big_video(i, i % gop == 0, len));
        let mut out = Vec::new();
        fast.poll(&mut out, 1000);
        for item in &out {
            if let ViewerItem::Frame(f) = item {
                seen.push(std::sync::Arc::downgrade(f));
            }
        }
        drop(out);
        let held: Vec<_> = seen.iter().filter_map(std::sync::Weak::upgrade).collect();
        most_frames = most_frames.max(held.len());
        most_bytes = most_bytes.max(held.iter().map(|f| f.heap_cost()).sum::<usize>());
    }
    assert_eq!(fast.dropped(), 0, "a viewer that keeps up loses nothing");
    assert_eq!(
        seen.len() as u64,
        total + 1,
        "the viewer that keeps up got every frame and the header"
    );
    (most_frames, most_bytes, slow, p)
}

#[test]
fn slow_viewer_skips_to_keyframe_and_memory_stays_bounded() {
    let config = HubConfig {
        viewer_queue_frames: 50,
        ..Default::default()
    };
    // 1000 frames of 1000 bytes, a keyframe every 30: without eviction all of them would stay.
    let (frames_held, bytes_held, mut slow, _live) = flood(config, 1000, 30, 1000);
    let wire = Frame::new(big_video(1, false, 1000), 0, 1, FanoutEncoding::default()).heap_cost();
    // The README's bound: hub.viewer_queue_frames plus one GOP, and the sequence header.
    assert!(
        frames_held <= 50 + 30 + 1,
        "held {frames_held} frames at once"
    );
    assert!(
        bytes_held <= (50 + 30 + 1) * wire,
        "held {bytes_held} bytes at once"
    );
    let items = poll_all(&mut slow);
    let f = frames(&items);
    assert!(f[0].sequence_header, "headers are re-sent after a skip");
    assert!(f[1].keyframe, "the skip lands on a keyframe");
    assert_eq!(f[1].timestamp, 990 * 33);
    assert_eq!(f.len(), 1 + 10, "the header, then the last GOP so far");
    assert_eq!(slow.dropped(), 990, "every frame before the last keyframe");
}

/// The byte limit bounds the ring as the frame limit does, a GOP longer than the queue is held
/// whole (new viewers start from it) but no more, and a GOP over `gop_max_bytes` is not held.
#[test]
fn memory_stays_within_the_byte_limit_and_one_gop() {
    let wire = Frame::new(big_video(1, false, 1000), 0, 1, FanoutEncoding::default()).heap_cost();
    let by_bytes = HubConfig {
        viewer_queue_bytes: 20 * wire,
        ..Default::default()
    };
    let (frames_held, bytes_held, ..) = flood(by_bytes, 1000, 10, 1000);
    assert!(
        bytes_held <= 20 * wire + 10 * wire + 1000,
        "held {bytes_held} bytes ({frames_held} frames) with a 20-frame byte limit"
    );

    let long_gop = HubConfig {
        viewer_queue_frames: 50,
        ..Default::default()
    };
    let (frames_held, ..) = flood(long_gop, 1000, 200, 1000);
    assert!(
        (200..=50 + 200 + 1).contains(&frames_held),
        "held {frames_held} frames with 200-frame GOPs"
    );

    let gop_over_limit = HubConfig {
        viewer_queue_frames: 50,
        gop_max_bytes: 100 * wire,
        ..Default::default()
    };
    let (frames_held, ..) = flood(gop_over_limit, 1000, 1000, 1000);
    assert!(
        frames_held <= 50 + 100 + 1,
        "held {frames_held} frames of a GOP over gop_max_bytes"
    );
}

#[test]
fn gop_larger_than_cache_limit_is_not_cached() {
    // The ring has room for the whole GOP: only the cache limit keeps a new viewer from it.
    let config = HubConfig {
        gop_max_bytes: 100,
        viewer_queue_frames: 100,
        ..Default::default()
    };
    let hub = Hub::new(config);
    let mut p = hub.publish(key()).unwrap();
    for i in 0..40u64 {
        p.push(video(i * 33, i == 0));
    }
    assert_eq!(hub.streams()[0].gop_cache_bytes, 0, "no GOP is cached");
    let mut v = hub.play(key()).unwrap();
    assert!(
        frames(&poll_all(&mut v)).is_empty(),
        "waits for the next keyframe instead"
    );
    p.push(video(40 * 33, true));
    assert!(frames(&poll_all(&mut v))[0].keyframe);
}

#[test]
fn audio_only_stream_plays_without_keyframes() {
    let hub = Hub::new(HubConfig::default());
    let mut p = hub.publish(key()).unwrap();
    p.push(audio_header());
    p.push(audio(0));
    let mut v = hub.play(key()).unwrap();
    p.push(audio(23));
    p.push(audio(46));
    let f = poll_all(&mut v);
    assert_eq!(frames(&f).len(), 3, "header, then both frames");
}

#[test]
fn empty_streams_are_forgotten() {
    let hub = Hub::new(HubConfig {
        max_waiting_streams: 1,
        ..Default::default()
    });
    let v = hub.play(key()).unwrap();
    assert_eq!(hub.streams().len(), 1);
    assert_eq!(
        hub.play(StreamId::new("live", "other")).err(),
        Some(HubError::TooManyWaiting(1))
    );
    drop(v);
    assert!(hub.streams().is_empty());
    let p = hub.publish(StreamId::new("live", "other")).unwrap();
    drop(p);
    assert!(hub.streams().is_empty());
}

#[test]
fn waiting_viewers_never_take_the_publishers_slots() {
    let hub = Hub::new(HubConfig {
        max_streams: 2,
        max_waiting_streams: 3,
        ..Default::default()
    });
    let waiting: Vec<_> = (0..3)
        .map(|i| hub.play(StreamId::new("live", format!("idle{i}"))).unwrap())
        .collect();
    assert_eq!(
        hub.play(StreamId::new("live", "idle3")).err(),
        Some(HubError::TooManyWaiting(3))
    );
    // Every waiting slot is taken, yet publishers get theirs, up to the live limit, also
    // on a name viewers wait for (which then leaves the waiting count).
    let a = hub.publish(StreamId::new("live", "a")).unwrap();
    let idle0 = hub.publish(StreamId::new("live", "idle0")).unwrap();
    assert_eq!(
        hub.publish(StreamId::new("live", "c")).err(),
        Some(HubError::TooManyStreams(2))
    );
    assert!(hub.play(StreamId::new("live", "idle3")).is_ok());
    drop(a);
    let _c = hub.publish(StreamId::new("live", "c")).unwrap();
    // An ended publish whose viewers stay counts as waiting again.
    drop(idle0);
    assert_eq!(
        hub.play(StreamId::new("live", "idle4")).err(),
        Some(HubError::TooManyWaiting(3))
    );
    drop(waiting);
}

#[test]
fn empty_media_messages_are_dropped_and_a_gop_is_bounded_in_frames() {
    let hub = Hub::new(HubConfig {
        gop_max_frames: 10,
        ..Default::default()
    });
    let mut p = hub.publish(key()).unwrap();
    p.push(video(0, true));
    for _ in 0..1000 {
        p.push(Media {
            kind: MediaKind::Audio,
            timestamp: 1,
            payload: Bytes::new(),
        });
    }
    let s = &hub.streams()[0];
    assert_eq!(s.frames_in, 1, "empty messages never become frames");
    assert!(s.gop_cache_bytes > 0, "one keyframe is cached");
    for i in 1..10 {
        p.push(audio(i));
    }
    assert!(hub.streams()[0].gop_cache_bytes > 0, "10 frames fit");
    p.push(audio(11));
    assert_eq!(
        hub.streams()[0].gop_cache_bytes,
        0,
        "the 11th frame ends the cached GOP"
    );
    let mut late = hub.play(key()).unwrap();
    assert!(
        frames(&poll_all(&mut late))
            .iter()
            .all(|f| f.sequence_header),
        "a late viewer gets no frames of an uncached GOP"
    );
}

#[tokio::test]
async fn viewer_wakes_on_push() {
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    let mut out = Vec::new();
    v.poll(&mut out, 10);
    let waiter = tokio::spawn(async move {
        v.changed().await;
        let mut out = Vec::new();
        v.poll(&mut out, 10);
        out.len()
    });
    tokio::task::yield_now().await;
    p.push(video(0, true));
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn audio_rides_with_the_next_video_frame_unless_held_too_long() {
    use futures::FutureExt;
    let hold = std::time::Duration::from_millis(40);
    let hub = Hub::new(HubConfig {
        audio_hold: hold,
        ..HubConfig::default()
    });
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    let woken = |v: &mut Viewer| v.changed().now_or_never().is_some();
    let mut out = Vec::new();
    v.poll(&mut out, 10);
    p.push(video(0, true));
    assert!(woken(&mut v), "video wakes at once");
    p.push(audio(10));
    assert!(!woken(&mut v), "audio right after a wakeup waits");
    p.push(video(33, false));
    assert!(woken(&mut v), "and goes out with the next video frame");
    out.clear();
    v.poll(&mut out, 10);
    assert_eq!(frames(&out).len(), 3, "nothing was lost");
    std::thread::sleep(hold);
    p.push(audio(80));
    assert!(woken(&mut v), "audio after the hold wakes by itself");
}

/// `(timestamp, sequence, discontinuity)` of the segment starts a viewer received.
fn segment_starts(items: &[ViewerItem]) -> Vec<(u64, u64, bool)> {
    frames(items)
        .iter()
        .filter_map(|f| {
            f.segment
                .map(|s| (f.timestamp, s.sequence, s.discontinuity))
        })
        .collect()
}

#[test]
fn segments_start_at_the_first_keyframe_a_target_after_the_last_start() {
    let hub = Hub::new(HubConfig::default()); // 2 s segments
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(video_header());
    p.push(audio_header());
    // Keyframes every 0.9 s: a segment can only start at 0, 2.7 and 5.4 s.
    for i in 0..70u64 {
        p.push(video(i * 100, i % 9 == 0));
        p.push(audio(i * 100 + 10));
    }
    let items = poll_all(&mut v);
    let starts = segment_starts(&items);
    // Numbers start at the wall clock in segment durations.
    let base = starts[0].1;
    let now = liverelay_types::unix_ms() / 2000;
    assert!(base <= now && base + 2 >= now, "{base} vs {now}");
    assert_eq!(
        starts,
        [
            (0, base, false),
            (2700, base + 1, false),
            (5400, base + 2, false)
        ]
    );
    // A republish goes on numbering, and says the stream was cut.
    drop(p);
    let mut p = hub.publish(key()).unwrap();
    p.push(video_header());
    p.push(video(0, false));
    p.push(video(40, true));
    let items = poll_all(&mut v);
    assert_eq!(segment_starts(&items), [(6951, base + 3, true)]);
}

#[test]
fn audio_only_streams_start_segments_at_audio_frames() {
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(audio_header());
    for i in 0..100u64 {
        p.push(audio(i * 23));
    }
    let starts = segment_starts(&poll_all(&mut v));
    let times: Vec<u64> = starts.iter().map(|s| s.0).collect();
    assert_eq!(times, [0, 2001]);
    assert_eq!(starts[1].1, starts[0].1 + 1);
}

#[test]
fn a_follower_keeps_the_sources_segments_and_numbers_go_on_after_a_new_source() {
    let mark = |sequence| SegmentStart {
        sequence,
        wall_clock_ms: 1_000 + sequence,
        discontinuity: false,
    };
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.follow_timeline();
    p.push(video_header());
    // Joined inside segment 40: nothing starts a segment before the source's next mark, not
    // even a keyframe.
    p.push_marked(video(80_000, true), None);
    p.push_marked(video(81_000, true), Some(mark(41)));
    p.push_marked(video(83_000, true), Some(mark(42)));
    let items = poll_all(&mut v);
    assert_eq!(
        segment_starts(&items),
        [(81_000, 41, false), (83_000, 42, false)]
    );
    let wall: Vec<u64> = frames(&items)
        .iter()
        .filter_map(|f| f.segment.map(|s| s.wall_clock_ms))
        .collect();
    assert_eq!(wall, [1_041, 1_042], "the source's wall clock, not ours");
    // Failover to a source that numbers from 0 and whose first keyframe has no mark.
    p.restart_source();
    p.push_marked(video_header(), None);
    p.push_marked(video(0, true), None);
    p.push_marked(video(2_000, true), Some(mark(1)));
    p.push_marked(video(4_000, true), Some(mark(2)));
    let starts = segment_starts(&poll_all(&mut v));
    let numbers: Vec<(u64, bool)> = starts.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(numbers, [(43, true), (44, false), (45, false)]);
}

#[test]
fn a_stream_without_keyframes_is_still_cut_in_bounded_segments() {
    let hub = Hub::new(HubConfig::default()); // 2 s segments: cut after 10 s at the latest
    let mut v = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(video_header());
    p.push(video(0, true));
    for i in 1..=250u64 {
        p.push(video(i * 100, false));
    }
    let times: Vec<u64> = segment_starts(&poll_all(&mut v))
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(times, [0, 10_000, 20_000]);
}

#[test]
fn a_viewer_that_stops_counting_keeps_the_stream_but_is_no_viewer() {
    let hub = Hub::new(HubConfig::default());
    let mut own = hub.play(key()).unwrap();
    own.stop_counting();
    own.stop_counting();
    assert_eq!(hub.viewer_count(&key()), 0);
    let counted = hub.play(key()).unwrap();
    assert_eq!(hub.viewer_count(&key()), 1);
    drop(counted);
    assert_eq!(hub.viewer_count(&key()), 0);
    assert_eq!(
        hub.streams().len(),
        1,
        "the uncounted viewer keeps the stream"
    );
    drop(own);
    assert!(hub.streams().is_empty());
}

/// A direct sink that records the frames it is offered and takes `room` of them.
struct Recorder {
    next: std::sync::Mutex<(u64, Vec<u64>, usize)>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Recorder {
    fn new(next: u64, room: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            next: std::sync::Mutex::new((next, Vec::new(), room)),
            stopped: Default::default(),
        })
    }

    /// (the next frame it did not take, the timestamps of the frames it took)
    fn taken(&self) -> (u64, Vec<u64>) {
        let n = self.next.lock().unwrap();
        (n.0, n.1.clone())
    }
}

impl DirectSink for Recorder {
    fn offer(&self, seq: u64, frame: &std::sync::Arc<Frame>) -> Offer {
        let mut n = self.next.lock().unwrap();
        let (next, taken, room) = &mut *n;
        let closed = Offer {
            sent: 0,
            keep: false,
        };
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) || seq > *next {
            return closed;
        }
        if seq < *next {
            return Offer {
                sent: 0,
                keep: true,
            };
        }
        if *room == 0 {
            self.stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return closed;
        }
        *room -= 1;
        *next += 1;
        taken.push(frame.timestamp);
        Offer {
            sent: 10,
            keep: true,
        }
    }

    fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Makes `v` direct to a new recorder with `room`.
fn go_direct(v: &mut Viewer, room: usize) -> std::sync::Arc<Recorder> {
    let mut made = None;
    assert!(v.go_direct(|next| {
        let sink = Recorder::new(next, room);
        made = Some(sink.clone());
        sink
    }));
    made.unwrap()
}

/// A viewer of `hub`'s stream that was sent everything there is.
fn caught_up(hub: &Hub) -> Viewer {
    let mut v = hub.play(key()).unwrap();
    let _ = poll_all(&mut v);
    v
}

fn live_stream(hub: &Hub) -> Publisher {
    let mut p = hub.publish(key()).unwrap();
    p.push(video_header());
    p.push(audio_header());
    p.push(video(0, true));
    p
}

#[test]
fn a_viewer_goes_direct_only_when_nothing_but_the_next_frame_is_due() {
    let hub = Hub::new(HubConfig::default());
    let mut v = hub.play(key()).unwrap();
    let none = |_| -> std::sync::Arc<dyn DirectSink> { unreachable!("not due") };
    assert!(!v.go_direct(none), "nothing is live");
    let mut p = live_stream(&hub);
    assert!(!v.go_direct(none), "not told of the publish yet");
    let items = poll_all(&mut v);
    assert!(!frames(&items).is_empty());
    let sink = Recorder::new(3, usize::MAX);
    let as_sink: std::sync::Arc<dyn DirectSink> = sink.clone();
    assert!(v.go_direct(|next| {
        assert_eq!(next, 3, "the frame after the ones polled");
        as_sink
    }));
    p.push(audio(10));
    p.push(video(33, false));
    assert_eq!(sink.taken(), (5, vec![10, 33]));
    assert_eq!(
        p.stats()
            .bytes_out
            .load(std::sync::atomic::Ordering::Relaxed),
        20,
        "what the sink took counts as the stream's egress"
    );

    assert!(v.go_direct(none), "already direct");
    // A viewer that joins a stream without a cached GOP waits for a keyframe: not direct.
    let no_gop = Hub::new(HubConfig {
        gop_cache: false,
        ..HubConfig::default()
    });
    let mut p2 = live_stream(&no_gop);
    p2.push(video(33, false));
    let mut w = caught_up(&no_gop);
    assert!(!w.go_direct(none), "waiting for a keyframe");
}

#[test]
fn a_direct_viewer_taken_back_goes_on_from_the_first_frame_its_sink_did_not_take() {
    let hub = Hub::new(HubConfig::default());
    let mut p = live_stream(&hub);
    let mut v = caught_up(&hub);
    // The sink takes two frames, then is full.
    let sink = go_direct(&mut v, 2);
    for i in 1..=4 {
        p.push(video(i * 33, false));
    }
    let (next, taken) = sink.taken();
    assert_eq!(taken, vec![33, 66]);
    v.take_back(next);
    let items = poll_all(&mut v);
    let rest: Vec<u64> = frames(&items).iter().map(|f| f.timestamp).collect();
    assert_eq!(rest, vec![99, 132], "every frame once, in order");
    // Direct again; the publisher leaving hands the viewer back, and it hears of it.
    let sink = go_direct(&mut v, usize::MAX);
    drop(p);
    assert!(sink.stopped.load(std::sync::atomic::Ordering::Relaxed));
    v.take_back(sink.taken().0);
    let items = poll_all(&mut v);
    assert!(matches!(items.last(), Some(ViewerItem::Unpublished)));
}

/// On a runtime with two workers, direct viewers are shared between the publisher's task and
/// a helper; every one of them gets every frame, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_viewers_spread_over_helpers_and_get_every_frame() {
    let hub = Hub::new(HubConfig::default());
    let mut p = live_stream(&hub);
    let mut viewers = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..6 {
        let mut v = caught_up(&hub);
        let sink = go_direct(&mut v, usize::MAX);
        viewers.push(v);
        sinks.push(sink);
    }
    let want: Vec<u64> = (1..=50).map(|i| i * 33).collect();
    for &ts in &want {
        p.push(video(ts, false));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sinks.iter().any(|s| s.taken().1.len() < want.len()) {
        assert!(
            std::time::Instant::now() < deadline,
            "helpers did not deliver"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for s in &sinks {
        assert_eq!(s.taken().1, want);
    }
    assert_eq!(
        p.stats()
            .bytes_out
            .load(std::sync::atomic::Ordering::Relaxed),
        6 * 50 * 10
    );
}

/// Past 65 % of a core busy, the viewers' own tasks write (they batch and skip per viewer): no
/// viewer goes direct, and direct ones are handed back at the next frame.
#[test]
fn a_busy_process_writes_no_viewer_directly() {
    let hub = Hub::new(HubConfig::default());
    let mut p = live_stream(&hub);
    let mut v = caught_up(&hub);
    let sink = go_direct(&mut v, usize::MAX);
    hub.batching().observe(0.9);
    p.push(video(33, false));
    assert!(sink.stopped.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(sink.taken().1, Vec::<u64>::new());
    v.take_back(sink.taken().0);
    let _ = poll_all(&mut v);
    assert!(!v.go_direct(|_| unreachable!("busy")));
    hub.batching().observe(0.1);
    go_direct(&mut v, usize::MAX);
}

/// A shard writes each frame to all of its viewers before the publisher reads on: past 2,000
/// of them, further viewers stay with their tasks.
#[test]
fn a_shard_takes_at_most_2000_direct_viewers() {
    let hub = Hub::new(HubConfig::default());
    let mut p = live_stream(&hub);
    let mut viewers: Vec<Viewer> = (0..2000).map(|_| caught_up(&hub)).collect();
    let sinks: Vec<_> = viewers
        .iter_mut()
        .map(|v| go_direct(v, usize::MAX))
        .collect();
    let mut last = caught_up(&hub);
    assert!(!last.go_direct(|_| unreachable!("full")));
    p.push(video(33, false));
    assert!(sinks.iter().all(|s| s.taken().1 == vec![33]));
    let items = poll_all(&mut last);
    assert_eq!(frames(&items).len(), 1, "the task path still serves it");
}

//! The packaging of frames as a hub delivers them: cuts, numbers, bytes, playlists.

use bytes::Bytes;
use liverelay_hub::{Hub, HubConfig, Viewer, ViewerItem};
use liverelay_rtmp::{Media, MediaKind};
use liverelay_types::StreamId;

use crate::playlist::render;
use crate::*;

fn key() -> StreamId {
    StreamId::new("live", "hls")
}

/// A legacy FLV AVC sequence header: an avcC around x264's 1280x720 high-profile SPS.
fn avc_header() -> Media {
    let sps = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut p = vec![0x17, 0x00, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
    p.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    p.extend_from_slice(&sps);
    p.push(1);
    p.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    p.extend_from_slice(&pps);
    media(MediaKind::Video, 0, p)
}

fn aac_header() -> Media {
    // AAC LC, 44.1 kHz, stereo.
    media(MediaKind::Audio, 0, vec![0xAF, 0, 0x12, 0x10])
}

fn media(kind: MediaKind, timestamp: u64, payload: Vec<u8>) -> Media {
    Media {
        kind,
        timestamp,
        payload: Bytes::from(payload),
    }
}

/// A picture: one length-prefixed NAL unit tagged with its timestamp.
fn picture(ts: u64, keyframe: bool) -> Media {
    let nal_type = if keyframe { 0x65 } else { 0x41 };
    let mut p = vec![
        if keyframe { 0x17 } else { 0x27 },
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        5,
        nal_type,
    ];
    p.extend_from_slice(&(ts as u32).to_be_bytes());
    media(MediaKind::Video, ts, p)
}

fn sound(ts: u64) -> Media {
    media(MediaKind::Audio, ts, vec![0xAF, 1, 0x21, ts as u8])
}

/// `seconds` of 30 fps video with a keyframe every `gop_ms` and AAC audio, pushed into `hub`.
fn publish(hub: &Hub, from_ms: u64, to_ms: u64, gop_ms: u64) -> liverelay_hub::Publisher {
    let mut p = hub.publish(key()).unwrap();
    p.push(avc_header());
    p.push(aac_header());
    push_span(&mut p, from_ms, to_ms, gop_ms);
    p
}

fn push_span(p: &mut liverelay_hub::Publisher, from_ms: u64, to_ms: u64, gop_ms: u64) {
    // Audio every 1024 samples at 44.1 kHz (23.2 ms), video every 33.3 ms, in time order.
    let (mut v, mut a) = (0u64, 0u64);
    loop {
        let vt = v * 1000 / 30;
        let at = a * 1024 * 1000 / 44_100;
        if vt.min(at) >= to_ms {
            break;
        }
        if vt <= at {
            if vt >= from_ms {
                p.push(picture(vt, vt % gop_ms < 33));
            }
            v += 1;
        } else {
            if at >= from_ms {
                p.push(sound(at));
            }
            a += 1;
        }
    }
}

/// Viewers that read only after the publisher pushed everything must not be skipped ahead.
fn hub_config() -> HubConfig {
    HubConfig {
        viewer_queue_frames: 100_000,
        ..HubConfig::default()
    }
}

fn config() -> PackagerConfig {
    PackagerConfig {
        segment_ms: 2000,
        part_ms: 200,
        window_segments: 10,
    }
}

fn drain(viewer: &mut Viewer, packager: &mut Packager) {
    let mut items = Vec::new();
    loop {
        let pending = viewer.poll(&mut items, 64);
        for item in items.drain(..) {
            match item {
                ViewerItem::Frame(f) => packager.push(&f),
                ViewerItem::Unpublished => packager.end(),
                ViewerItem::Published => {}
            }
        }
        if pending == 0 {
            break;
        }
    }
}

/// The first segment's number (publishes number from the wall clock).
fn base(p: &Packager) -> u64 {
    p.segments().front().unwrap().sequence
}

fn bytes_of(part: &Part) -> Vec<u8> {
    part.fragment.to_bytes().to_vec()
}

#[test]
fn segments_start_at_the_marks_and_parts_stay_within_the_target() {
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let _p = publish(&hub, 0, 6_100, 1000);
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    let segments: Vec<&Segment> = packager.segments().iter().collect();
    let b = base(&packager);
    let numbers: Vec<(u64, bool)> = segments
        .iter()
        .map(|s| (s.sequence - b, s.complete))
        .collect();
    assert_eq!(numbers, [(0, true), (1, true), (2, true), (3, false)]);
    for s in segments.iter().filter(|s| s.complete) {
        assert_eq!(s.duration_ms(), 2000, "segment {}", s.sequence);
        assert!(s.parts[0].independent, "segments start at keyframes");
        for p in &s.parts {
            assert!(p.duration_ms <= 200, "part of {} ms", p.duration_ms);
            assert!(
                p.duration_ms >= 170,
                "part of {} ms (85 % of the target)",
                p.duration_ms
            );
        }
        // One keyframe a second: the part that starts with the second one is independent.
        assert_eq!(s.parts.iter().filter(|p| p.independent).count(), 2);
    }
}

#[test]
fn a_server_that_joined_later_makes_the_same_segments_and_bytes() {
    let hub = Hub::new(hub_config());
    let mut early = hub.play(key()).unwrap();
    let mut p = publish(&hub, 0, 3_500, 1000);
    let mut a = Packager::new(config());
    drain(&mut early, &mut a);
    // Joins at the 3 s keyframe, inside segment 1: its packaging starts with segment 2.
    let mut late = hub.play(key()).unwrap();
    let mut b = Packager::new(config());
    push_span(&mut p, 3_500, 9_000, 1000);
    drain(&mut early, &mut a);
    drain(&mut late, &mut b);
    assert_eq!(base(&b), base(&a) + 2);
    let mut compared = 0;
    for sb in b.segments() {
        let sa = a.segment(sb.sequence).unwrap();
        assert_eq!(sa.parts.len(), sb.parts.len());
        for (pa, pb) in sa.parts.iter().zip(&sb.parts) {
            assert_eq!(pa.duration_ms, pb.duration_ms);
            assert_eq!(
                bytes_of(pa),
                bytes_of(pb),
                "segment {} differs",
                sb.sequence
            );
            compared += 1;
        }
        assert_eq!(sa.wall_clock_ms, sb.wall_clock_ms);
    }
    assert!(compared > 20);
    let (ia, ib) = (a.segments()[2].init, b.segments()[0].init);
    assert_eq!(ia, ib, "the same init section under the same name");
    assert!(a.init(ia).is_some_and(|x| Some(x) == b.init(ib)));
    // The playlists list the same segments from where both have them.
    let tail = |p: &Packager| {
        let text = render(p, false, "");
        text[text.find("#EXTINF").unwrap()..].to_owned()
    };
    let (ta, tb) = (tail(&a), tail(&b));
    assert!(ta.ends_with(&tb) || tb.ends_with(&ta), "{ta}\n---\n{tb}");
}

#[test]
fn the_playlist_has_the_low_latency_tags_and_a_delta_skips_old_segments() {
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let _p = publish(&hub, 0, 20_300, 1000);
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    let full = render(&packager, false, "?token=t");
    let b = base(&packager);
    for tag in [
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:2\n",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=0.600",
        "#EXT-X-PART-INF:PART-TARGET=0.200",
        &format!("#EXT-X-MEDIA-SEQUENCE:{b}\n"),
        &format!(
            "#EXT-X-MAP:URI=\"init-{:016x}.mp4?token=t\"",
            packager.segments()[0].init
        ),
        "#EXT-X-PROGRAM-DATE-TIME:",
        &format!("#EXTINF:2.000,\n{b}.m4s?token=t\n"),
        &format!(
            "#EXT-X-PART:DURATION=0.200,URI=\"{}.0.m4s?token=t\",INDEPENDENT=YES",
            b + 10
        ),
        &format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}.", b + 10),
    ] {
        assert!(full.contains(tag), "missing {tag:?} in\n{full}");
    }
    assert!(
        !full.contains("\"0.0.m4s"),
        "old segments are listed without parts"
    );
    let delta = render(&packager, true, "");
    assert!(
        delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=5\n"),
        "{delta}"
    );
    // What the delta lists is the end of the full playlist.
    let listed = |t: &str| {
        t.lines()
            .filter(|l| l.ends_with(".m4s"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (f, d) = (listed(&render(&packager, false, "")), listed(&delta));
    assert_eq!(f[f.len() - d.len()..], d[..]);
    assert_eq!(
        f.len() - d.len(),
        5,
        "segments 0 to 4 start over 12 s from the end"
    );
}

#[test]
fn blocking_requests_wait_for_the_next_part_and_far_ones_are_refused() {
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let mut p = publish(&hub, 0, 2_500, 1000);
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    let (msn, part) = packager.last_part().unwrap();
    let b = base(&packager);
    assert_eq!(msn, b + 1);
    assert_eq!(playlist_ready(&packager, msn, Some(part)), Readiness::Ready);
    assert_eq!(
        playlist_ready(&packager, msn, Some(part + 1)),
        Readiness::Wait
    );
    assert_eq!(
        playlist_ready(&packager, msn, Some(part + 9)),
        Readiness::Refused
    );
    assert_eq!(playlist_ready(&packager, msn + 1, None), Readiness::Wait);
    assert_eq!(playlist_ready(&packager, msn + 3, None), Readiness::Refused);
    assert_eq!(part_ready(&packager, msn, part), Readiness::Ready);
    assert_eq!(part_ready(&packager, msn, part + 1), Readiness::Wait);
    assert_eq!(part_ready(&packager, msn, part + 7), Readiness::Refused);
    assert_eq!(segment_ready(&packager, b), Readiness::Ready);
    assert_eq!(segment_ready(&packager, b + 1), Readiness::Wait);
    assert_eq!(segment_ready(&packager, b + 5), Readiness::Refused);
    // The part that was waited for comes.
    push_span(&mut p, 2_500, 2_800, 1000);
    drain(&mut viewer, &mut packager);
    assert_eq!(part_ready(&packager, msn, part + 1), Readiness::Ready);
    assert_eq!(
        playlist_ready(&packager, msn, Some(part + 1)),
        Readiness::Ready
    );
}

#[test]
fn a_republish_is_a_discontinuity_and_numbers_go_on() {
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let p = publish(&hub, 0, 4_100, 1000);
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    drop(p);
    let _p = publish(&hub, 0, 4_100, 1000);
    drain(&mut viewer, &mut packager);
    let b = base(&packager);
    let s: Vec<(u64, bool, bool)> = packager
        .segments()
        .iter()
        .map(|s| (s.sequence - b, s.discontinuity, s.complete))
        .collect();
    assert_eq!(
        s,
        [
            (0, false, true),
            (1, false, true),
            (2, false, true),
            (3, true, true),
            (4, false, true),
            (5, false, false)
        ]
    );
    let text = render(&packager, false, "");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
}

#[test]
fn malformed_query_values_are_refused() {
    for bad in [
        "_HLS_msn=-1",
        "_HLS_msn=1e3",
        "_HLS_msn=",
        "_HLS_msn=99999999999999999999",
        "_HLS_part=2",
        "_HLS_msn=3&_HLS_part=x",
        "_HLS_skip=maybe",
    ] {
        assert!(PlaylistQuery::parse(Some(bad)).is_err(), "{bad}");
    }
    assert_eq!(
        PlaylistQuery::parse(Some("token=abc&_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")).unwrap(),
        PlaylistQuery {
            block: Some((12, Some(3))),
            skip: true
        }
    );
    assert_eq!(
        PlaylistQuery::parse(None).unwrap(),
        PlaylistQuery::default()
    );
}

#[test]
fn program_date_time_is_utc_iso8601() {
    assert_eq!(playlist::iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        playlist::iso8601(1_796_089_467_123),
        "2026-12-01T01:44:27.123Z"
    );
    assert_eq!(
        playlist::iso8601(951_782_400_000),
        "2000-02-29T00:00:00.000Z"
    );
}

#[test]
fn thirty_frames_a_second_in_milliseconds_make_full_parts() {
    // 30 fps on a millisecond timeline steps 33, 33, 34: parts are six frames, 200 ± 1 ms.
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(avc_header());
    for i in 0..200u64 {
        let ts = (i * 1000).div_ceil(30);
        p.push(picture(ts, i % 30 == 0));
    }
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    for s in packager.segments().iter().filter(|s| s.complete) {
        let durations: Vec<u64> = s.parts.iter().map(|p| p.duration_ms).collect();
        assert!(
            durations.iter().all(|d| (199..=201).contains(d)),
            "{durations:?}"
        );
    }
}

#[test]
fn parts_go_on_with_audio_while_the_video_stalls() {
    let hub = Hub::new(hub_config());
    let mut viewer = hub.play(key()).unwrap();
    let mut p = hub.publish(key()).unwrap();
    p.push(avc_header());
    p.push(aac_header());
    p.push(picture(0, true));
    p.push(picture(40, false));
    // Then 1.5 s of audio alone.
    for i in 0..65u64 {
        p.push(sound(50 + i * 23));
    }
    let mut packager = Packager::new(config());
    drain(&mut viewer, &mut packager);
    let parts = &packager.segments()[0].parts;
    assert!(parts.len() >= 2, "{} parts", parts.len());
    assert!(
        parts.iter().all(|x| x.duration_ms <= 3 * 200 + 23),
        "{:?}",
        parts.iter().map(|x| x.duration_ms).collect::<Vec<_>>()
    );
}

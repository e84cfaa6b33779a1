//! HEVC end to end. ffmpeg 5 has no FLV muxer for HEVC, so the test takes a libx265 stream
//! with B-frames from an MP4 file (ffprobe dumps its hvcC and its length-prefixed packets with
//! their times) and makes the tags an Enhanced RTMP or legacy (codec id 12) publisher sends.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;

use super::{
    Tag, TempDir, assert_clean_decode, assert_track_matches, encode_testsrc, field, have_ffmpeg,
    mux, packet_pts, probe_stream, run,
};

/// How the tags are written; all must give the same bytes.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// Codec id 12, AVC-style packet type and composition time.
    Legacy,
    /// `hvc1` CodedFrames (with composition time) everywhere.
    CodedFrames,
    /// `hvc1` CodedFramesX (no composition time field) where the offset is zero.
    CodedFramesXWhenZero,
}

/// An HEVC video tag body: the hvcC (`cts` None) or coded frames.
fn tag_body(style: Style, key: bool, cts: Option<i32>, data: &[u8]) -> Bytes {
    let frame_type: u8 = if key { 1 } else { 2 };
    let cts_bytes = |c: i32| c.to_be_bytes()[1..].to_vec();
    let mut body = match (style, cts) {
        (Style::Legacy, None) => vec![frame_type << 4 | 12, 0, 0, 0, 0],
        (Style::Legacy, Some(c)) => [vec![frame_type << 4 | 12, 1], cts_bytes(c)].concat(),
        (_, None) => vec![0x80 | frame_type << 4, b'h', b'v', b'c', b'1'],
        (Style::CodedFramesXWhenZero, Some(0)) => {
            vec![0x80 | frame_type << 4 | 3, b'h', b'v', b'c', b'1']
        }
        (_, Some(c)) => {
            let header = vec![0x80 | frame_type << 4 | 1, b'h', b'v', b'c', b'1'];
            [header, cts_bytes(c)].concat()
        }
    };
    body.extend_from_slice(data);
    Bytes::from(body)
}

/// Bytes of an ffprobe `-show_data` hex dump (`00000000: 0101 6000 ...  ascii`, lines
/// separated by real or escaped newlines).
fn hex_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.split("\\n").flat_map(str::lines) {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        // Hex groups end at the double space before the ASCII column.
        let hex: String = rest.split("  ").next().unwrap().split(' ').collect();
        for i in (0..hex.len()).step_by(2) {
            out.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    out
}

/// Decode time (ms), composition offset (ms), keyframe, sample data.
type Packet = (u64, i32, bool, Vec<u8>);

/// The hvcC and the packets of the first video stream of `mp4`, decode times shifted to start
/// at zero.
fn read_mp4(mp4: &Path) -> (Vec<u8>, Vec<Packet>) {
    let streams = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_streams",
            "-show_data",
        ])
        .arg(mp4));
    let dump = streams
        .split_once("extradata=\n")
        .unwrap()
        .1
        .split_once("extradata_size")
        .unwrap()
        .0;
    let hvcc = hex_dump(dump);
    let packets = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_packets",
            "-show_data",
        ])
        .args(["-of", "compact"])
        .arg(mp4));
    let ms = |v: &str| (v.parse::<f64>().unwrap() * 1000.0).round() as i64;
    let mut out = Vec::new();
    for record in packets.lines() {
        let (fields, data) = record.split_once("|data=").unwrap();
        let get = |key: &str| {
            fields
                .split('|')
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap()
        };
        let (pts, dts) = (ms(get("pts_time")), ms(get("dts_time")));
        out.push((
            dts,
            (pts - dts) as i32,
            get("flags").starts_with('K'),
            hex_dump(data),
        ));
    }
    let first = out.iter().map(|p| p.0).min().unwrap();
    let packets = out
        .into_iter()
        .map(|(dts, cts, key, data)| ((dts - first) as u64, cts, key, data))
        .collect();
    (hvcc, packets)
}

#[test]
fn hevc_with_b_frames_plays_as_fmp4() {
    if !have_ffmpeg() {
        return;
    }
    let encoders = run(Command::new("ffmpeg").args(["-hide_banner", "-encoders"]));
    if !encoders.contains("libx265") {
        eprintln!("SKIPPED: this ffmpeg has no libx265");
        return;
    }
    let dir = TempDir::new("hevc");
    let src = dir.0.join("src.mp4");
    #[rustfmt::skip]
    encode_testsrc("320x180", &[
        "-t", "2", "-c:v", "libx265", "-preset", "ultrafast", "-g", "30", "-bf", "2",
        "-x265-params", "log-level=error",
    ], &src);
    let (hvcc, packets) = read_mp4(&src);
    assert_eq!(packets.len(), 60);
    assert!(packets.iter().any(|p| p.1 != 0) && packets.iter().any(|p| p.1 == 0));

    let tags = |style| {
        let header = Tag {
            kind: 9,
            timestamp_ms: 0,
            body: tag_body(style, true, None, &hvcc),
        };
        let frames = packets.iter().map(|(dts, cts, key, data)| Tag {
            kind: 9,
            timestamp_ms: *dts,
            body: tag_body(style, *key, Some(*cts), data),
        });
        std::iter::once(header).chain(frames).collect::<Vec<_>>()
    };
    let files: Vec<Vec<u8>> = [
        Style::Legacy,
        Style::CodedFrames,
        Style::CodedFramesXWhenZero,
    ]
    .into_iter()
    .map(|style| {
        let path = dir.0.join(format!("{style:?}.mp4"));
        mux(&tags(style), true, false, &path);
        std::fs::read(path).unwrap()
    })
    .collect();
    assert!(
        files[0] == files[1] && files[1] == files[2],
        "tag styles differ"
    );

    let mp4 = dir.0.join("out.mp4");
    let video = mux(&tags(Style::CodedFramesXWhenZero), true, false, &mp4)
        .0
        .unwrap();
    assert!(video.codec_string().starts_with("hvc1.1.6.L"), "{video:?}");
    assert_eq!((video.width, video.height), (320, 180));
    let out = probe_stream(&mp4, "v:0");
    assert_eq!(field(&out, "codec_name"), "hevc");
    assert_track_matches(&out, &video);
    assert_eq!(field(&out, "nb_read_frames"), "60");
    // Presentation times as the tags said (decode + composition, in ms), in decode order.
    let expected: Vec<String> = packets
        .iter()
        .map(|(dts, cts, ..)| format!("{:.6}", (*dts as i64 + i64::from(*cts)) as f64 / 1000.0))
        .collect();
    assert_eq!(packet_pts(&mp4, "v:0"), expected);
    assert_clean_decode(&mp4);
}

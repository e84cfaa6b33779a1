//! End to end: real streams made by ffmpeg go through the muxer, and ffprobe/ffmpeg read the
//! result — codec, size, frame-exact counts, presentation times and a clean decode.
//! Skipped (with a message) only when ffmpeg/ffprobe are not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use super::*;

mod hevc;

/// A temp dir of this test, removed even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("liverelay-fmp4-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have_ffmpeg() -> bool {
    let ok = |bin: &str| {
        Command::new(bin)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        return true;
    }
    eprintln!("SKIPPED: ffmpeg/ffprobe not installed (make test-deps installs them)");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One tag of an FLV file: type 8 audio, 9 video.
struct Tag {
    kind: u8,
    timestamp_ms: u64,
    body: Bytes,
}

/// A minimal FLV file reader (header, then tags each followed by PreviousTagSize).
fn read_flv(path: &Path) -> Vec<Tag> {
    let data = Bytes::from(std::fs::read(path).unwrap());
    assert_eq!(&data[..3], b"FLV");
    let mut at = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while at + 11 <= data.len() {
        let h = &data[at..at + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        tags.push(Tag {
            kind: h[0],
            timestamp_ms: u64::from(ts),
            body: data.slice(at + 11..at + 11 + size),
        });
        at += 11 + size + 4;
    }
    tags
}

/// A legacy FLV AVC/AAC tag rewritten as Enhanced RTMP (FourCC headers).
fn to_enhanced_rtmp(tag: &Tag) -> Tag {
    let b = &tag.body;
    let body = match (tag.kind, b[0] & 0x0F, b[0] >> 4) {
        // [FrameType:4][CodecId=7:4][AVCPacketType][CTS:3] -> [1][FrameType:3][PacketType:4]
        (9, 7, frame_type) => {
            let (packet_type, keep) = match (b[1], &b[2..5]) {
                (0, _) => (0, 5),         // SequenceStart: the avcC
                (1, [0, 0, 0]) => (3, 5), // CodedFramesX: no CTS field
                (1, _) => (1, 2),         // CodedFrames: keeps the CTS
                (other, _) => (other, 5), // end of sequence stays one
            };
            let mut out = vec![0x80 | frame_type << 4 | packet_type];
            out.extend_from_slice(b"avc1");
            out.extend_from_slice(&b[keep..]);
            out
        }
        // [SoundFormat=10:4][flags:4][AACPacketType] -> [9:4][PacketType:4] mp4a
        (8, _, 10) => {
            let mut out = vec![0x90 | b[1]];
            out.extend_from_slice(b"mp4a");
            out.extend_from_slice(&b[2..]);
            out
        }
        _ => b.to_vec(),
    };
    Tag {
        kind: tag.kind,
        timestamp_ms: tag.timestamp_ms,
        body: Bytes::from(body),
    }
}

/// Samples with durations to the next sample (the last takes its predecessor's).
fn with_durations(frames: Vec<(u64, i32, bool, Bytes)>) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::with_capacity(frames.len());
    for (i, (decode_ms, cto, keyframe, data)) in frames.iter().cloned().enumerate() {
        let duration_ms = match frames.get(i + 1) {
            Some(next) => (next.0 - decode_ms) as u32,
            None => out.last().map_or(20, |s| s.duration_ms),
        };
        out.push(Sample {
            decode_ms,
            duration_ms,
            composition_offset_ms: cto,
            keyframe,
            data,
        });
    }
    out
}

/// Runs the FLV tag bodies through the muxer the way the segmenter does: tracks from the
/// sequence headers, samples from the frames, a fragment every 200 ms of decode time.
/// Returns the tracks made from the sequence headers.
fn mux(
    tags: &[Tag],
    take_video: bool,
    take_audio: bool,
    out: &Path,
) -> (Option<VideoTrack>, Option<AudioTrack>) {
    let (mut video, mut audio) = (None, None);
    let (mut vframes, mut aframes) = (Vec::new(), Vec::new());
    for t in tags {
        match t.kind {
            9 if take_video => {
                if let Ok(track) = VideoTrack::from_sequence_header(&t.body) {
                    video.get_or_insert(track);
                } else if let Some((data, cto)) = video_sample(&t.body) {
                    let key = liverelay_rtmp::media::parse_video(&t.body)
                        .unwrap()
                        .keyframe;
                    vframes.push((t.timestamp_ms, cto, key, data));
                }
            }
            8 if take_audio => {
                if let Ok(track) = AudioTrack::from_sequence_header(&t.body) {
                    audio.get_or_insert(track);
                } else if let Some(data) = audio_sample(&t.body) {
                    aframes.push((t.timestamp_ms, 0, true, data));
                }
            }
            _ => {}
        }
    }
    let rate = audio.as_ref().map_or(0, |a: &AudioTrack| a.sample_rate);
    let mut file = init_segment(video.as_ref(), audio.as_ref()).to_vec();
    let (vs, aus) = (with_durations(vframes), with_durations(aframes));
    let end = vs.iter().chain(&aus).map(|s| s.decode_ms).max().unwrap();
    let in_window = |s: &&Sample, from: u64| s.decode_ms >= from && s.decode_ms < from + 200;
    let mut sequence = 1;
    for from in (0..=end).step_by(200) {
        let v: Vec<Sample> = vs.iter().filter(|s| in_window(s, from)).cloned().collect();
        let a: Vec<Sample> = aus.iter().filter(|s| in_window(s, from)).cloned().collect();
        if v.is_empty() && a.is_empty() {
            continue;
        }
        let f = fragment(sequence, &v, &a, rate);
        let before = file.len();
        for c in &f.chunks {
            file.extend_from_slice(c);
        }
        assert_eq!(file.len() - before, f.len);
        sequence += 1;
    }
    std::fs::write(out, file).unwrap();
    (video, audio)
}

/// What ffprobe (the real decoder, reading the stream's own SPS) says matches what the muxer
/// parsed from the sequence header and wrote into tkhd and the sample entry.
fn assert_track_matches(probe: &str, video: &VideoTrack) {
    let size = (video.width.to_string(), video.height.to_string());
    assert_eq!(
        (field(probe, "width"), field(probe, "height")),
        (&*size.0, &*size.1)
    );
}

/// Encodes ffmpeg's `testsrc2` pattern at 30 fps and `size`, with more inputs and the
/// encoding options in `args`, into `out`.
fn encode_testsrc(size: &str, args: &[&str], out: &Path) {
    let source = format!("testsrc2=size={size}:rate=30");
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &source])
        .args(args)
        .arg(out));
}

/// `key=value` lines of ffprobe for one stream of `file`.
fn probe_stream(file: &Path, stream: &str) -> String {
    run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,sample_rate,channels,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(file))
}

fn field<'a>(probe: &'a str, key: &str) -> &'a str {
    probe
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {probe}"))
}

/// Presentation times of a stream's packets, in decode order.
fn packet_pts(file: &Path, stream: &str) -> Vec<String> {
    run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(file))
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Decoding the whole file prints no error at all.
fn assert_clean_decode(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "decode errors: {stderr}"
    );
}

#[test]
fn avc_aac_flv_with_b_frames_plays_as_fmp4() {
    if !have_ffmpeg() {
        return;
    }
    let dir = TempDir::new("avc");
    let flv = dir.0.join("src.flv");
    // 44.1 kHz: 1024-sample frames are not a whole number of milliseconds.
    #[rustfmt::skip]
    encode_testsrc("640x360", &[
        "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "3",
        "-c:v", "libx264", "-g", "30", "-bf", "2", "-c:a", "aac", "-f", "flv",
    ], &flv);
    let tags = read_flv(&flv);

    let mp4 = dir.0.join("out.mp4");
    let (video, audio) = mux(&tags, true, true, &mp4);
    let (video, audio) = (video.unwrap(), audio.unwrap());
    // x264 High profile; the level depends on the x264 version.
    assert!(video.codec_string().starts_with("avc1.6400"), "{video:?}");
    assert_eq!(audio.codec_string(), "mp4a.40.2");
    let (src_v, out_v) = (probe_stream(&flv, "v:0"), probe_stream(&mp4, "v:0"));
    assert_eq!(field(&out_v, "codec_name"), "h264");
    assert_eq!((video.width, video.height), (640, 360));
    assert_track_matches(&out_v, &video);
    assert_eq!(field(&src_v, "nb_read_frames"), "90");
    assert_eq!(
        field(&out_v, "nb_read_frames"),
        field(&src_v, "nb_read_frames")
    );
    let (src_a, out_a) = (probe_stream(&flv, "a:0"), probe_stream(&mp4, "a:0"));
    assert_eq!(field(&out_a, "codec_name"), "aac");
    assert_eq!(field(&out_a, "sample_rate"), audio.sample_rate.to_string());
    assert_eq!(field(&out_a, "channels"), audio.channels.to_string());
    assert_eq!(
        field(&out_a, "nb_read_frames"),
        field(&src_a, "nb_read_frames")
    );
    // B-frames: presentation times differ from decode times, and must survive exactly.
    let pts = packet_pts(&mp4, "v:0");
    assert_eq!(pts, packet_pts(&flv, "v:0"));
    assert!(
        pts.windows(2).any(|w| w[0] > w[1]),
        "no reordering in {pts:?}"
    );
    assert_clean_decode(&mp4);

    // The same stream as an Enhanced RTMP publisher sends it (avc1 CodedFrames, or
    // CodedFramesX where the composition offset is zero; mp4a): the same bytes.
    let enhanced: Vec<Tag> = tags.iter().map(to_enhanced_rtmp).collect();
    let enhanced_mp4 = dir.0.join("enhanced.mp4");
    mux(&enhanced, true, true, &enhanced_mp4);
    assert!(
        std::fs::read(&enhanced_mp4).unwrap() == std::fs::read(&mp4).unwrap(),
        "Enhanced RTMP tags give other bytes than legacy FLV tags"
    );

    // Audio only and video only from the same stream.
    let audio_only = dir.0.join("audio.mp4");
    mux(&tags, false, true, &audio_only);
    let probe = probe_stream(&audio_only, "a:0");
    assert_eq!(
        field(&probe, "nb_read_frames"),
        field(&src_a, "nb_read_frames")
    );
    assert_clean_decode(&audio_only);
    let video_only = dir.0.join("video.mp4");
    mux(&tags, true, false, &video_only);
    let probe = probe_stream(&video_only, "v:0");
    assert_eq!(field(&probe, "nb_read_frames"), "90");
    assert_clean_decode(&video_only);
}

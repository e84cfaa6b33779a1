//! `liverelay standalone` with RTMP implementations independent of libavformat's and ours:
//! GStreamer's `rtmp2sink`/`rtmp2src` (its own RTMP stack), librtmp as `rtmpdump` and as
//! GStreamer's `rtmpsink` (the library OBS used for years and many hardware encoders embed).
//! What they received is checked with ffprobe/ffmpeg. A missing tool fails the test; `make test`
//! installs them all.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Video frames between keyframes, in the sample and in what GStreamer encodes.
const GOP: usize = 2 * SAMPLE_FPS as usize;
/// Video frames GStreamer publishes: three GOPs, 6 s.
const GST_FRAMES: usize = 3 * GOP;
/// 1024-sample buffers of 44.1 kHz audio in 6 s.
const GST_AUDIO_BUFFERS: usize = 260;
const WIDTH: usize = 320;
const HEIGHT: usize = 240;

/// Fails with a clear message unless every GStreamer element exists.
fn require_gst(elements: &[&str]) {
    for element in elements {
        let status = Command::new("gst-inspect-1.0")
            .args(["--exists", element])
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run gst-inspect-1.0: {e} (run `make test`, which installs GStreamer)"
                )
            });
        assert!(
            status.success(),
            "GStreamer element `{element}` is missing (run `make test`, which installs the \
             gstreamer1.0-plugins-* packages)"
        );
    }
}

/// `gst-launch-1.0 -e PIPELINE` (paths and URLs in the pipeline contain no spaces).
fn gst_launch(pipeline: &str, log: &Path) -> ChildGuard {
    spawn_logged(
        Command::new("gst-launch-1.0")
            .arg("-e")
            .args(pipeline.split_whitespace()),
        log,
    )
}

/// `gst-launch-1.0 -e -v PIPELINE`: also prints each buffer a `silent=false` fakesink receives.
fn gst_launch_verbose(pipeline: &str, log: &Path) -> ChildGuard {
    spawn_logged(
        Command::new("gst-launch-1.0")
            .args(["-e", "-v"])
            .args(pipeline.split_whitespace()),
        log,
    )
}

/// `rtmpdump --live -r URL -o OUT` with extra arguments: a librtmp player recording to FLV.
fn rtmpdump(url: &str, out: &Path, extra: &[&str], log: &Path) -> ChildGuard {
    spawn_logged(
        Command::new("rtmpdump")
            .args(["--live", "-r", url])
            .args(extra)
            .arg("-o")
            .arg(out),
        log,
    )
}

/// What a player recorded: video and audio packet counts and the number of video keyframes,
/// after checking what every recording must satisfy: the published codecs and size, video
/// starting on a keyframe with non-decreasing timestamps, and clean decoding.
struct Recorded {
    video: usize,
    audio: usize,
    keyframes: usize,
    video_span_ms: i64,
}

/// `codec_name,width,height` of each stream but "text" ones: GStreamer's flvmux repeats
/// onMetaData at the current time whenever a tag changes (bitrate updates from the parsers), and
/// libavformat's FLV demuxer turns a script tag with a non-zero timestamp into a "text" stream,
/// in a file flvmux writes directly as much as over RTMP.
fn media_streams(input: &str) -> Vec<String> {
    probe_streams(input)
        .into_iter()
        .filter(|s| s != "text,N/A,N/A")
        .collect()
}

/// Audio packets in a file.
fn audio_packets(file: &Path) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a"])
        .args(["-show_entries", "packet=codec_type", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("audio"))
        .count()
}

fn check_recording(file: &Path, who: &str, (width, height): (usize, usize)) -> Recorded {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "{who}: recorded nothing ({})", file.display());
    let input = file.to_str().unwrap();
    assert_eq!(
        media_streams(input),
        ["aac", &format!("h264,{width},{height}")],
        "{who}: codecs and size"
    );
    let packets = probe_packets(input);
    let video: Vec<&Packet> = packets.iter().filter(|p| p.video).collect();
    assert!(!video.is_empty(), "{who}: no video");
    assert!(video[0].keyframe, "{who}: first video packet is a keyframe");
    assert!(
        video.windows(2).all(|w| w[0].dts_ms <= w[1].dts_ms),
        "{who}: video timestamps never go back"
    );
    assert_eq!(decode_errors(file), "", "{who}: decodes cleanly");
    Recorded {
        video: video.len(),
        audio: audio_packets(file),
        keyframes: video.iter().filter(|p| p.keyframe).count(),
        video_span_ms: video.last().unwrap().dts_ms - video[0].dts_ms,
    }
}

/// Video and audio packets of a file, as ffprobe counts them.
fn counts(file: &Path) -> (usize, usize) {
    let packets = probe_packets(file.to_str().unwrap());
    let video = packets.iter().filter(|p| p.video).count();
    (video, audio_packets(file))
}

/// Buffers a `fakesink name=NAME silent=false` received, from `gst-launch-1.0 -v` output, with
/// their sizes.
fn fakesink_buffers(log: &Path, name: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(log).unwrap();
    let tag = format!("last-message = chain   ******* ({name}:sink)");
    text.lines()
        .filter_map(|l| l.split_once(&tag))
        .map(|(_, rest)| {
            let bytes = rest.trim_start().trim_start_matches('(');
            bytes.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// rtmp2src hands each message to its streaming thread through a one-message slot and empties
/// that slot when StreamEOF stops its loop (gstrtmp2src.c, GStreamer 1.22), so the publish's
/// last message (audio, in every stream these tests send) can be lost on the player's side when
/// it arrives right before StreamEOF. Our server sends it; the other players all record it.
fn assert_rtmp2src_audio(got: usize, sent: usize) {
    assert!(
        got == sent || got + 1 == sent,
        "rtmp2src received every audio message (the last may be lost in rtmp2src): {got} of {sent}"
    );
}

/// A GStreamer publisher (test pictures and a tone, x264 with B-frames and a keyframe every 2 s,
/// AAC, `flvmux streamable=true`, then `sink`) is played by ffmpeg, which is waiting before the
/// publish, and probed by ffprobe while it runs.
fn gst_publish_is_played_by_ffmpeg(sink: &str, name: &str) {
    require_gst(&[
        "videotestsrc",
        "audiotestsrc",
        "x264enc",
        "h264parse",
        "avenc_aac",
        "aacparse",
        "queue",
        "flvmux",
        sink,
    ]);
    let server = Server::start();
    let dir = TempDir::new(name);
    let url = server.url(&format!("live/{name}"));
    let recording = dir.path("view.flv");
    let mut viewer = ffmpeg_record(&url, &recording, &dir.path("view.log"));
    server.wait_viewers("live", name, 1, Duration::from_secs(10));

    let pipeline = format!(
        "flvmux name=mux streamable=true ! {sink} location={url} \
         videotestsrc is-live=true num-buffers={GST_FRAMES} \
         ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={SAMPLE_FPS}/1 \
         ! x264enc speed-preset=superfast bframes=2 key-int-max={GOP} ! h264parse ! queue ! mux. \
         audiotestsrc is-live=true num-buffers={GST_AUDIO_BUFFERS} \
         ! audio/x-raw,rate=44100,channels=2 ! avenc_aac ! aacparse ! queue ! mux."
    );
    let pub_log = dir.path("pub.log");
    let mut publisher = gst_launch(&pipeline, &pub_log);
    server.wait_live("live", name, Duration::from_secs(15));
    assert_eq!(
        media_streams(&url),
        ["aac", &format!("h264,{WIDTH},{HEIGHT}")],
        "ffprobe on the running stream"
    );

    // EOS makes the sink unpublish and gst-launch exit 0; UnpublishNotify ends ffmpeg's play.
    wait_success(&mut publisher, Duration::from_secs(20), &pub_log);
    wait_success(&mut viewer, Duration::from_secs(15), &dir.path("view.log"));
    let got = check_recording(
        &recording,
        &format!("ffmpeg playing {sink}"),
        (WIDTH, HEIGHT),
    );
    assert_eq!(got.video, GST_FRAMES, "every picture arrived");
    assert_eq!(got.keyframes, GST_FRAMES / GOP, "a keyframe every 2 s");
    assert!(
        got.audio >= GST_AUDIO_BUFFERS - 5,
        "audio arrived: {} frames",
        got.audio
    );
    let expected_span = ((GST_FRAMES - 1) * 1000 / SAMPLE_FPS as usize) as i64;
    assert!(
        (got.video_span_ms - expected_span).abs() <= 80,
        "video timestamps span {} ms, expected {expected_span}",
        got.video_span_ms
    );
}

/// GStreamer's own RTMP client (`rtmp2sink`, simple handshake, `releaseStream`/`FCPublish`,
/// FCUnpublish + deleteStream on EOS) as publisher.
#[test]
fn gstreamer_rtmp2sink_publish_plays_in_ffmpeg() {
    gst_publish_is_played_by_ffmpeg("rtmp2sink", "rtmp2");
}

/// librtmp as publisher, through GStreamer's `rtmpsink`: the RTMP stack of older OBS versions
/// and of many hardware encoders (128-byte chunks, no flashVer, its own chunk header choices).
#[test]
fn gstreamer_librtmp_rtmpsink_publish_plays_in_ffmpeg() {
    gst_publish_is_played_by_ffmpeg("rtmpsink", "librtmp");
}

/// GStreamer's `rtmp2src` plays an ffmpeg publish: one player waiting before the publish gets
/// every message and GStreamer decodes every picture; one joining mid-GOP starts from the cached
/// keyframe. Both end by themselves when the publisher stops.
#[test]
fn gstreamer_rtmp2src_plays_an_ffmpeg_publish() {
    require_gst(&[
        "rtmp2src",
        "tee",
        "queue",
        "filesink",
        "fakesink",
        "flvdemux",
        "h264parse",
        "avdec_h264",
    ]);
    let server = Server::start();
    let dir = TempDir::new("rtmp2src");
    let url = server.url("live/gst");
    let (early_flv, late_flv) = (dir.path("early.flv"), dir.path("late.flv"));
    // Sinks do not preroll (async=false): the demuxer's audio and video branches would otherwise
    // block each other before PLAYING.
    let early_log = dir.path("early.log");
    let mut early = gst_launch_verbose(
        &format!(
            "rtmp2src location={url} ! tee name=t \
             t. ! queue ! filesink async=false location={} \
             t. ! queue ! flvdemux name=d \
             d.video ! queue ! h264parse ! avdec_h264 \
             ! fakesink name=pictures silent=false sync=false async=false \
             d.audio ! queue ! fakesink async=false sync=false",
            early_flv.display(),
        ),
        &early_log,
    );
    server.wait_viewers("live", "gst", 1, Duration::from_secs(10));

    let pub_log = dir.path("pub.log");
    let mut publisher = ffmpeg_publish(sample_flv(), &url, &pub_log);
    server.wait_live("live", "gst", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2900)); // into the second GOP
    let late_log = dir.path("late.log");
    let mut late = gst_launch(
        &format!(
            "rtmp2src location={url} ! filesink location={}",
            late_flv.display()
        ),
        &late_log,
    );

    wait_success(&mut publisher, Duration::from_secs(30), &pub_log);
    // rtmp2src turns UnpublishNotify/StreamEOF into EOS, and gst-launch exits 0.
    wait_success(&mut early, Duration::from_secs(15), &early_log);
    wait_success(&mut late, Duration::from_secs(15), &late_log);

    let (sent_video, sent_audio) = counts(sample_flv());
    let got = check_recording(
        &early_flv,
        "rtmp2src waiting before the publish",
        (WIDTH, HEIGHT),
    );
    assert_eq!(got.video, sent_video, "rtmp2src received every picture");
    assert_rtmp2src_audio(got.audio, sent_audio);
    let picture = WIDTH * HEIGHT * 3 / 2;
    assert_eq!(
        fakesink_buffers(&early_log, "pictures"),
        vec![picture; sent_video],
        "GStreamer (avdec_h264) decoded every picture"
    );
    let got = check_recording(&late_flv, "rtmp2src joining mid-GOP", (WIDTH, HEIGHT));
    assert!(
        got.video >= GOP && got.video.is_multiple_of(GOP),
        "a late rtmp2src gets whole GOPs from the cached keyframe on: {} pictures",
        got.video
    );
}

/// librtmp's `rtmpdump` plays an ffmpeg publish, with librtmp's default (simple) handshake,
/// waiting before the publish, and with its Flash Player 9 digest handshake (forced by giving
/// a SWF hash and size), joining mid-GOP: librtmp checks our S1 digest and S2 signature and
/// refuses a server that fails ("Genuine Adobe Flash Media Server" in its log).
#[test]
fn rtmpdump_plays_an_ffmpeg_publish_with_both_handshakes() {
    let server = Server::start();
    let dir = TempDir::new("rtmpdump");
    let url = server.url("live/dump");
    let (early_flv, late_flv) = (dir.path("early.flv"), dir.path("late.flv"));
    let early_log = dir.path("early.log");
    let mut early = rtmpdump(&url, &early_flv, &[], &early_log);
    server.wait_viewers("live", "dump", 1, Duration::from_secs(10));

    let pub_log = dir.path("pub.log");
    let mut publisher = ffmpeg_publish(sample_flv(), &url, &pub_log);
    server.wait_live("live", "dump", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2900)); // into the second GOP
    let late_log = dir.path("late.log");
    let swf_hash = "0123456789abcdef".repeat(4);
    let mut late = rtmpdump(
        &url,
        &late_flv,
        &["--verbose", "--swfhash", &swf_hash, "--swfsize", "12345"],
        &late_log,
    );

    wait_success(&mut publisher, Duration::from_secs(30), &pub_log);
    // UnpublishNotify ends a live rtmpdump with "Download complete" and exit status 0.
    wait_success(&mut early, Duration::from_secs(15), &early_log);
    wait_success(&mut late, Duration::from_secs(15), &late_log);

    let late_output = std::fs::read_to_string(&late_log).unwrap();
    assert!(
        late_output.contains("Genuine Adobe Flash Media Server"),
        "librtmp verified the digest handshake:\n{late_output}"
    );
    let log = server.log();
    for handshake in ["Simple", "Digest { scheme: 0 }"] {
        assert!(
            log.contains(&format!(
                "flash_ver=\"LNX 10,0,32,18\" handshake=Some({handshake})"
            )),
            "rtmpdump connected with the {handshake} handshake:\n{log}"
        );
    }

    let got = check_recording(
        &early_flv,
        "rtmpdump waiting before the publish",
        (WIDTH, HEIGHT),
    );
    assert_eq!(
        (got.video, got.audio),
        counts(sample_flv()),
        "rtmpdump received every video and audio message"
    );
    let got = check_recording(&late_flv, "rtmpdump joining mid-GOP", (WIDTH, HEIGHT));
    assert!(
        got.video >= GOP && got.video.is_multiple_of(GOP),
        "a late rtmpdump gets whole GOPs from the cached keyframe on: {} pictures",
        got.video
    );
}

/// Large messages both ways: librtmp (GStreamer `rtmpsink`, 128-byte chunks) republishes a
/// 640x360 lossless-noise FLV of about 70 Mbit/s without re-encoding (frames of about 350 KB, far
/// past every acknowledgement window), and rtmpdump and rtmp2src, waiting before the publish,
/// receive every frame intact.
#[test]
fn large_frames_from_librtmp_reach_rtmpdump_and_rtmp2src() {
    require_gst(&[
        "filesrc",
        "flvdemux",
        "h264parse",
        "aacparse",
        "queue",
        "flvmux",
        "rtmpsink",
        "rtmp2src",
        "filesink",
    ]);
    let server = Server::start();
    let dir = TempDir::new("large");
    let source = dir.path("noise.flv");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "nullsrc=s=640x360:r=25,geq=random(1)*255:128:128"])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0"])
        .args(["-g", &GOP.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-t", "4"])
        .arg(&source)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success(), "making the high-bitrate sample failed");
    let url = server.url("live/large");
    let (dump_flv, gst_flv) = (dir.path("dump.flv"), dir.path("gst.flv"));
    let (dump_log, gst_log) = (dir.path("dump.log"), dir.path("gst.log"));
    let mut dump = rtmpdump(&url, &dump_flv, &[], &dump_log);
    let mut gst = gst_launch(
        &format!(
            "rtmp2src location={url} ! filesink location={}",
            gst_flv.display()
        ),
        &gst_log,
    );
    server.wait_viewers("live", "large", 2, Duration::from_secs(10));

    // flvmux and the sink keep real time (the sink syncs on the clock): a 4 s live publish.
    let pub_log = dir.path("pub.log");
    let mut publisher = gst_launch(
        &format!(
            "filesrc location={} ! flvdemux name=d \
             d.video ! queue ! h264parse ! flvmux name=m streamable=true ! rtmpsink location={url} \
             d.audio ! queue ! aacparse ! m.",
            source.display()
        ),
        &pub_log,
    );
    wait_success(&mut publisher, Duration::from_secs(20), &pub_log);
    wait_success(&mut dump, Duration::from_secs(15), &dump_log);
    wait_success(&mut gst, Duration::from_secs(15), &gst_log);

    let (sent_video, sent_audio) = counts(&source);
    let got = check_recording(&dump_flv, "rtmpdump", (640, 360));
    assert_eq!(
        (got.video, got.audio),
        (sent_video, sent_audio),
        "rtmpdump received every message"
    );
    let got = check_recording(&gst_flv, "rtmp2src", (640, 360));
    assert_eq!(got.video, sent_video, "rtmp2src received every picture");
    assert_rtmp2src_audio(got.audio, sent_audio);
}

//! Replays every committed corpus file through its fuzz target (the same function libFuzzer
//! runs), so the targets are built and their checks run on each `cargo test`. Also: the
//! server-session seeds reach connect, publish, media and play; a deterministic batch of
//! mutations of each seed passes too; and each target has its libFuzzer binary and dictionary.

use std::path::{Path, PathBuf};

use liverelay_fuzz::{TARGETS, amf, api_bodies, chunk_decoder, server_session};
use liverelay_rtmp::media::{VideoCodec, parse_audio, parse_video};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus files of `target`, sorted; fails when there are none.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

/// Runs `input` through `run`, naming `what` if it panics.
fn replay(what: &str, run: fn(&[u8]), input: &[u8]) {
    if std::panic::catch_unwind(|| run(input)).is_err() {
        panic!("fuzz target failed on {what}");
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    for target in TARGETS {
        for (path, data) in corpus(target.name) {
            replay(&path.display().to_string(), target.run, &data);
        }
    }
}

#[test]
fn every_target_has_a_libfuzzer_binary_and_a_dictionary() {
    let manifest = std::fs::read_to_string(root().join("libfuzzer/Cargo.toml")).unwrap();
    for target in TARGETS {
        let bin = format!("fuzz_targets/{}.rs", target.name);
        assert!(
            root().join("libfuzzer").join(&bin).is_file(),
            "{bin} missing"
        );
        assert!(manifest.contains(&format!("name = \"{}\"", target.name)));
        assert!(
            root()
                .join(format!("corpus/{}.dict", target.name))
                .is_file()
        );
    }
}

#[test]
fn server_session_seeds_reach_connect_publish_and_play() {
    let mut total = server_session::Reached::default();
    for (_, data) in corpus("server_session") {
        total.add(&server_session::run(&data));
    }
    assert!(
        total.handshake_from_input && total.digest_handshake,
        "{total:?}"
    );
    assert!(
        total.connects_accepted > 0 && total.connects_rejected > 0,
        "{total:?}"
    );
    assert!(
        total.publishes_accepted > 0 && total.plays_accepted > 0,
        "{total:?}"
    );
    assert!(
        total.streams_rejected >= 2 && total.streams_closed >= 2,
        "{total:?}"
    );
    assert!(total.media >= 10, "{total:?}");
    assert!(total.acknowledgements > 0, "{total:?}");
}

/// The chunk-decoder seeds decode cleanly, whole messages and all, so mutations start from
/// valid streams (with Set Chunk Size and Abort among them); `reject-*` seeds end in an error.
#[test]
fn chunk_decoder_seeds_decode_every_message() {
    for (path, data) in corpus("chunk_decoder") {
        let (messages, error) = chunk_decoder::decode(&data[1..], 1 + data[0] as usize);
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(
            error.is_some(),
            name.starts_with("reject-"),
            "{name}: {error:?}"
        );
        assert!(!messages.is_empty(), "{name}: {messages:?}");
    }
}

/// The AMF seeds decode whole, so mutations start from valid bodies; `reject-` seeds (inputs
/// the fuzzer found, kept as regressions) decode a value before the one that is refused.
#[test]
fn amf_seeds_decode_whole() {
    for (path, data) in corpus("amf") {
        let (count, error) = if data[0] & 1 == 0 {
            let (values, error) = amf::decode_amf0(&data[1..]);
            (values.len(), error)
        } else {
            let (values, error) = amf::decode_amf3(&data[1..]);
            (values.len(), error)
        };
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("reject-") {
            assert!(
                error.is_some() && count >= 1,
                "{name}: {count} values, {error:?}"
            );
        } else {
            assert_eq!(error, None, "{name}");
            assert!(count >= 2, "{name}: {count} values");
        }
    }
}

/// The API body seeds are accepted, one route or more each, so mutations start from bodies
/// that reach the checks after parsing.
#[test]
fn api_body_seeds_are_accepted_on_every_route() {
    let mut routes = [false; api_bodies::ROUTES.len()];
    for (path, data) in corpus("api_bodies") {
        assert!(api_bodies::run(&data), "{} refused", path.display());
        routes[usize::from(data[0]) % routes.len()] = true;
    }
    assert_eq!(routes, [true; 4]);
}

/// The tag seeds hold keyframes, video and audio sequence headers, info frames and Enhanced
/// RTMP codecs, so each branch of the parsers is a mutation away.
#[test]
fn media_tag_seeds_cover_frame_kinds() {
    let files = corpus("media_tag");
    let videos: Vec<_> = files.iter().filter_map(|(_, d)| parse_video(d)).collect();
    assert!(
        videos
            .iter()
            .any(|t| t.keyframe && t.codec == VideoCodec::Avc)
    );
    assert!(
        videos
            .iter()
            .any(|t| t.keyframe && t.codec == VideoCodec::Av1)
    );
    assert!(
        videos
            .iter()
            .any(|t| t.sequence_header && t.codec == VideoCodec::Hevc)
    );
    assert!(videos.iter().any(|t| t.info_only));
    assert!(
        files
            .iter()
            .any(|(_, d)| parse_audio(d).is_some_and(|t| t.sequence_header))
    );
}

/// The generator still runs against today's client and server (it asserts every step got its
/// reply), and what it makes passes the target.
#[test]
fn seed_generator_works() {
    for (name, input) in liverelay_fuzz::seeds::server_session() {
        replay(
            &format!("generated seed {name}"),
            server_session::fuzz,
            &input,
        );
    }
    for (name, input) in liverelay_fuzz::seeds::chunk_decoder() {
        replay(
            &format!("generated seed {name}"),
            chunk_decoder::fuzz,
            &input,
        );
    }
}

/// A small, fixed-seed stand-in for fuzzing in CI: byte flips, insertions, deletions and
/// changed read sizes of every seed. Deterministic, so it fails the same way every time.
#[test]
fn mutated_seeds_pass_their_target() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |below: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % below.max(1) as u64) as usize
    };
    for target in TARGETS {
        for (path, seed) in corpus(target.name) {
            for round in 0..96 {
                let mut input = seed.clone();
                for _ in 0..1 + next(4) {
                    let at = next(input.len());
                    match next(4) {
                        0 => input[at] ^= 1 << next(8),
                        1 => input[at] = next(256) as u8,
                        2 => input.insert(at, next(256) as u8),
                        _ if input.len() > 2 => {
                            input.remove(at);
                        }
                        _ => {}
                    }
                }
                if round % 4 == 0 && input.len() > 1 {
                    input[1] = next(256) as u8;
                }
                let what = format!("mutation {round} of {}", path.display());
                replay(&what, target.run, &input);
            }
        }
    }
}

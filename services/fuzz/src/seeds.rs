//! Seed inputs and dictionaries, made with the project's own client session and encoders so
//! they are what real clients send. `examples/write_seeds.rs` writes them to `corpus/`.

use bytes::{Bytes, BytesMut};
use liverelay_rtmp::amf::{self, Amf0Value, Amf3Value};
use liverelay_rtmp::chunk::{ChunkEncoder, encode_message};
use liverelay_rtmp::handshake::{ClientKind, HANDSHAKE_SIZE};
use liverelay_rtmp::message::{RawMessage, UserControl, csid, type_id};
use liverelay_rtmp::session::{
    ClientConfig, ClientEvent, ClientSession, Media, MediaKind, PublishKind,
};

use crate::server_session::{
    HANDSHAKE_IN_INPUT, Harness, NOTIFY_PLAYERS, REJECT_CONNECT, REJECT_STREAMS,
};

/// Seeds for `server_session`: (file name, input).
pub fn server_session() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("publish", record(0, ClientKind::Simple, 4096, publish)),
        // A 64-byte acknowledgement window: the server acknowledges as the media comes in.
        (
            "publish-ack-window",
            record(0, ClientKind::Simple, 4096, |rec| {
                rec.inject(&control(
                    type_id::WINDOW_ACK_SIZE,
                    64u32.to_be_bytes().to_vec(),
                ));
                publish(rec);
            }),
        ),
        // Default chunk size: the keyframe spans many chunks.
        (
            "publish-small-chunks",
            record(0, ClientKind::Simple, 128, publish),
        ),
        (
            "publish-digest-handshake",
            record(HANDSHAKE_IN_INPUT, ClientKind::Digest, 4096, publish),
        ),
        ("play", record(0, ClientKind::Simple, 4096, play)),
        (
            "play-simple-handshake-notify",
            record(
                HANDSHAKE_IN_INPUT | NOTIFY_PLAYERS,
                ClientKind::Simple,
                4096,
                play,
            ),
        ),
        (
            "connect-rejected",
            record(REJECT_CONNECT, ClientKind::Simple, 4096, |_| {}),
        ),
        (
            "streams-rejected",
            record(REJECT_STREAMS, ClientKind::Simple, 4096, publish_then_play),
        ),
    ]
}

/// Seeds for `chunk_decoder`: (file name, input). Byte 0 is the read size less one; the rest
/// is what the project's chunk encoder writes (with header compression) for sample media and
/// control messages.
pub fn chunk_decoder() -> Vec<(&'static str, Vec<u8>)> {
    let media: Vec<RawMessage> = sample_media()
        .into_iter()
        .map(|m| RawMessage {
            timestamp: m.timestamp as u32,
            type_id: match m.kind {
                MediaKind::Audio => type_id::AUDIO,
                MediaKind::Video => type_id::VIDEO,
                _ => type_id::DATA_AMF0,
            },
            stream_id: 1,
            payload: m.payload,
        })
        .collect();
    // Media at the default chunk size (the keyframe spans several chunks), read 7 bytes at once.
    let mut small = vec![6];
    let mut encoder = ChunkEncoder::default();
    let mut out = BytesMut::new();
    for (i, msg) in media.iter().enumerate() {
        // Audio and video on chunk streams of their own, as clients send them.
        encoder.write(4 + (i % 2) as u32, msg, &mut out);
    }
    small.extend_from_slice(&out);
    // Set Chunk Size 4096 first, then the same media in large chunks, read whole.
    let mut large = vec![255];
    large.extend(control(
        type_id::SET_CHUNK_SIZE,
        4096u32.to_be_bytes().to_vec(),
    ));
    let mut encoder = ChunkEncoder::default();
    encoder.set_chunk_size(4096);
    let mut out = BytesMut::new();
    for msg in &media {
        encoder.write(6, msg, &mut out);
    }
    large.extend_from_slice(&out);
    // The first chunk of the keyframe, an Abort of its chunk stream, then a whole message.
    let mut abort = vec![0];
    let keyframe = encode_message(4, &media[3], 128);
    abort.extend_from_slice(&keyframe[..140]);
    abort.extend(control(type_id::ABORT, 4u32.to_be_bytes().to_vec()));
    abort.extend_from_slice(&encode_message(5, &media[4], 128));
    // One byte over the message limit, in a single chunk: the decoder must refuse it (files
    // named `reject-*` must end in an error).
    let mut over = vec![255];
    over.extend(control(
        type_id::SET_CHUNK_SIZE,
        65536u32.to_be_bytes().to_vec(),
    ));
    let big = RawMessage {
        payload: Bytes::from(vec![
            0x27;
            crate::chunk_decoder::LIMITS.max_message_size as usize
                + 1
        ]),
        ..media[5].clone()
    };
    over.extend_from_slice(&encode_message(6, &big, 65536));
    vec![
        ("media-small-chunks", small),
        ("media-large-chunks", large),
        ("abort", abort),
        ("reject-message-over-limit", over),
    ]
}

/// Dictionary for `chunk_decoder`: basic headers of each form, an extended timestamp and the
/// control messages the decoder's owner applies.
pub fn chunk_decoder_dictionary() -> Vec<Vec<u8>> {
    let mut entries: Vec<Vec<u8>> = vec![
        b"\x03".to_vec(),
        b"\x43".to_vec(),
        b"\x83".to_vec(),
        b"\xc3".to_vec(),
        b"\x00\x40".to_vec(),
        b"\x01\xff\xff".to_vec(),
        b"\xff\xff\xff".to_vec(),
    ];
    for (kind, value) in [
        (type_id::SET_CHUNK_SIZE, 1u32),
        (type_id::SET_CHUNK_SIZE, 65536),
        (type_id::ABORT, 4),
    ] {
        entries.push(control(kind, value.to_be_bytes().to_vec()));
    }
    entries
}

/// AMF3 values of every kind the encoder writes.
fn amf3_samples() -> Vec<Amf3Value> {
    use Amf3Value as V;
    let s = |t: &str| V::String(t.into());
    vec![
        V::Undefined,
        V::Null,
        V::Boolean(true),
        V::Integer(-5),
        V::Integer(0x0FFF_FFFF),
        V::Double(0.5),
        s("cam"),
        V::XmlDocument("<a/>".into()),
        V::Date(1.7e12),
        V::Array {
            assoc: vec![("k".into(), s("cam"))],
            dense: vec![V::Integer(1), s("cam")],
        },
        V::Object {
            class_name: Some("flash.Point".into()),
            sealed: vec![("x".into(), V::Integer(1)), ("y".into(), V::Double(2.5))],
            dynamic: vec![],
        },
        V::Object {
            class_name: None,
            sealed: vec![],
            dynamic: vec![
                ("app".into(), s("live")),
                ("tcUrl".into(), s("rtmp://h/live")),
            ],
        },
        V::Xml("<b/>".into()),
        V::ByteArray(vec![1, 2, 3]),
        V::VectorInt {
            fixed: false,
            items: vec![-1, 2],
        },
        V::VectorUint {
            fixed: true,
            items: vec![3],
        },
        V::VectorDouble {
            fixed: false,
            items: vec![1.5],
        },
        V::VectorObject {
            fixed: false,
            type_name: "*".into(),
            items: vec![s("cam"), V::Null],
        },
        V::Dictionary {
            weak_keys: false,
            entries: vec![(s("k"), V::Integer(2))],
        },
    ]
}

/// Seeds for `amf`: byte 0 picks AMF0 (0) or AMF3 (1), then a message body the project's
/// encoders wrote.
pub fn amf() -> Vec<(&'static str, Vec<u8>)> {
    let amf0 = |values: &[Amf0Value]| {
        let mut input = vec![0];
        input.extend_from_slice(&amf_body(values));
        input
    };
    let n = Amf0Value::Number;
    let connect = [
        Amf0Value::String("connect".into()),
        n(1.0),
        Amf0Value::object([
            ("app", Amf0Value::String("live".into())),
            ("tcUrl", Amf0Value::String("rtmp://localhost/live".into())),
            ("objectEncoding", n(3.0)),
        ]),
    ];
    let others = [
        Amf0Value::Boolean(false),
        Amf0Value::Null,
        Amf0Value::Undefined,
        Amf0Value::StrictArray(vec![n(1.0), Amf0Value::String("x".into())]),
        Amf0Value::Date {
            millis: 1.7e12,
            timezone: 0,
        },
        Amf0Value::TypedObject {
            class_name: "Point".into(),
            properties: vec![("x".into(), n(1.0))],
        },
        Amf0Value::XmlDocument("<a/>".into()),
    ];
    let avmplus: Vec<Amf0Value> = amf3_samples().into_iter().map(Amf0Value::Avmplus).collect();
    let mut amf3 = vec![1];
    for value in amf3_samples() {
        let mut out = BytesMut::new();
        amf::encode_amf3(&value, &mut out);
        amf3.extend_from_slice(&out);
    }
    vec![
        ("amf0-connect", amf0(&connect)),
        ("amf0-metadata", {
            let mut input = vec![0];
            input.extend_from_slice(&sample_media()[0].payload);
            input
        }),
        ("amf0-other-types", amf0(&others)),
        ("amf0-avmplus", amf0(&avmplus)),
        ("amf3-all-types", amf3),
    ]
}

/// Dictionary for `amf`: markers of both formats, and references (which the encoders never
/// write) to the first string, object and trait.
pub fn amf_dictionary() -> Vec<Vec<u8>> {
    let mut entries: Vec<Vec<u8>> = (0..=0x11u8).map(|m| vec![m]).collect();
    entries.extend([
        b"\x00\x00\x09".to_vec(),
        b"\x07\x00\x00".to_vec(),
        b"\x06\x00".to_vec(),
        b"\x0a\x00".to_vec(),
        b"\x0a\x01".to_vec(),
        b"\x0a\x0b\x01".to_vec(),
        b"\x01".to_vec(),
        b"\xff\xff\xff\xff".to_vec(),
    ]);
    entries
}

/// Seeds for `media_tag`: the sample media's audio and video payloads, and Enhanced RTMP
/// audio and video headers of each codec.
pub fn media_tag() -> Vec<(&'static str, Vec<u8>)> {
    let names = [
        "avc-sequence-header",
        "aac-sequence-header",
        "avc-keyframe",
        "aac-frame",
        "avc-inter-frame",
        "hevc-enhanced-sequence-start",
    ];
    // Each distinct audio and video payload once, in order.
    let mut media: Vec<Vec<u8>> = Vec::new();
    for m in sample_media() {
        let payload = m.payload.to_vec();
        if matches!(m.kind, MediaKind::Audio | MediaKind::Video) && !media.contains(&payload) {
            media.push(payload);
        }
    }
    assert_eq!(media.len(), names.len());
    let mut seeds: Vec<_> = names.into_iter().zip(media).collect();
    seeds.extend([
        ("av1-enhanced-keyframe", b"\x91av01\x0a\x0b".to_vec()),
        ("vp9-enhanced-frames-x", b"\xa3vp09\x01".to_vec()),
        ("opus-enhanced-sequence-start", b"\x90Opus\x01\x02".to_vec()),
        ("video-info-frame", b"\x52\x00".to_vec()),
    ]);
    seeds
}

/// Seeds for `relay_message`: each kind of message an ingest sends.
pub fn relay_message() -> Vec<(&'static str, Vec<u8>)> {
    use liverelay_relay::{RelayEvent, RelayedFrame};
    use liverelay_rtmp::{Media, MediaKind};
    use prost::Message;
    let frame = |kind, payload: &[u8], cached| {
        RelayEvent::Frame(RelayedFrame {
            media: Media {
                kind,
                timestamp: 120_040,
                payload: Bytes::copy_from_slice(payload),
            },
            cached,
            ingest_received_unix_us: 1_764_547_200_000_000,
            segment: None,
        })
    };
    let avc_key = [0x17, 1, 0, 0, 0, 0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x33];
    [
        ("header", RelayEvent::Header { generation: 3 }),
        (
            "video-keyframe-cached",
            frame(MediaKind::Video, &avc_key, true),
        ),
        (
            "audio-frame",
            frame(MediaKind::Audio, &[0xAF, 1, 0x21, 0x10], false),
        ),
        (
            "metadata",
            frame(MediaKind::Metadata, b"\x02\x00\x0aonMetaData", true),
        ),
        ("restarted", RelayEvent::Restarted { generation: 4 }),
        ("end", RelayEvent::End),
    ]
    .into_iter()
    .map(|(name, event)| (name, liverelay_relay::encode(event).encode_to_vec()))
    .collect()
}

/// Dictionary for `relay_message`: protobuf keys of the message's fields (field number and
/// wire type).
pub fn relay_message_dictionary() -> Vec<Vec<u8>> {
    [0x08u8, 0x0a, 0x10, 0x12, 0x18, 0x1a, 0x20, 0x22, 0x28]
        .iter()
        .map(|key| vec![*key])
        .collect()
}

/// Dictionary for `media_tag`: the FourCCs the parsers know.
pub fn media_tag_dictionary() -> Vec<Vec<u8>> {
    [
        "avc1", "hvc1", "av01", "vp09", "mp4a", "Opus", "fLaC", "ac-3", "ec-3", ".mp3",
    ]
    .iter()
    .map(|f| f.as_bytes().to_vec())
    .collect()
}

/// Seeds for `api_bodies`: one accepted body of each route (its index in
/// [`crate::api_bodies::ROUTES`] first), with every field they take.
pub fn api_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let body = |route: u8, json: &str| [&[route][..], json.as_bytes()].concat();
    vec![
        (
            "key",
            body(
                0,
                r#"{"app":"live","stream":"cam","expires_at":"2100-01-01T00:00:00Z","metadata":{"owner":"ana","tags":["a",1,2.5,true,null],"n":{"x":-1e3}}}"#,
            ),
        ),
        (
            "key-unix-expiry",
            body(
                0,
                r#"{"app":"live","stream":"cam-ü","expires_at":4102444800}"#,
            ),
        ),
        (
            "play-token",
            body(1, r#"{"app":"live","stream":"cam","ttl_secs":600}"#),
        ),
        (
            "target",
            body(2, r#"{"url":"rtmp://example.com:1935/app/key?x=1"}"#),
        ),
        (
            "drop",
            body(3, r#"{"target":"viewers","pod":"edge-a","client_id":7}"#),
        ),
        ("drop-empty", body(3, "")),
    ]
}

/// Dictionary for `api_bodies`: field names, values the enums take, JSON's punctuation.
pub fn api_bodies_dictionary() -> Vec<Vec<u8>> {
    [
        "\"app\"",
        "\"stream\"",
        "\"expires_at\"",
        "\"metadata\"",
        "\"ttl_secs\"",
        "\"url\"",
        "\"target\"",
        "\"pod\"",
        "\"client_id\"",
        "\"publisher\"",
        "\"viewers\"",
        "\"all\"",
        "null",
        "true",
        "{}",
        "[]",
        ":",
        ",",
        "\\u0000",
        "\\ud800",
        "T00:00:00Z",
        "18446744073709551616",
        "1e308",
    ]
    .iter()
    .map(|e| e.as_bytes().to_vec())
    .collect()
}

/// Seeds for `callback_form`: a client's tcUrl, a newline, its query string; with secrets,
/// server field names and encoded separators among the arguments.
pub fn callback_form() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("plain", "rtmp://host/live\n"),
        (
            "secrets-everywhere",
            "rtmp://host/live?key=sk_1&x=2&token=t\n?key=sk_1&sign=abc&token=t9",
        ),
        (
            "shadowing",
            "rtmp://host/live\nname=other&addr=1.2.3.4&call=play&app=x&tcurl=t&user=7",
        ),
        (
            "encoded",
            "rtmp://host/li%20ve?a=%26key%3Dx&b=c+d\nk%65y=1&n%61me=2&x=%26name%3Dother",
        ),
    ]
    .into_iter()
    .map(|(name, input)| (name, input.as_bytes().to_vec()))
    .collect()
}

/// Dictionary for `callback_form`: the names the form guards, and the query's syntax.
pub fn callback_form_dictionary() -> Vec<Vec<u8>> {
    let mut entries: Vec<Vec<u8>> = ["key", "token"]
        .iter()
        .chain(liverelay_callback_form::SERVER_FIELDS)
        .map(|name| format!("{name}=").into_bytes())
        .collect();
    for syntax in ["&", "?", "=", "%26", "%3D", "%3F", "+", "%", "rtmp://"] {
        entries.push(syntax.as_bytes().to_vec());
    }
    entries
}

/// A client talking to a recording [`Harness`]: what the client sends becomes the input.
struct Recorder {
    harness: Harness,
    client: ClientSession,
    /// Client bytes not to forward: its own handshake when the harness does one itself.
    skip: usize,
    input: Vec<u8>,
}

impl Recorder {
    /// Moves bytes both ways until both are quiet; returns the client's events.
    fn pump(&mut self) -> Vec<ClientEvent> {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                moved = true;
                let skip = self.skip.min(bytes.len());
                self.skip -= skip;
                let bytes = &bytes[skip..];
                if !bytes.is_empty() {
                    self.input.extend_from_slice(bytes);
                    self.harness
                        .read(bytes)
                        .expect("the server session takes the client's bytes");
                }
            }
            let out = self.harness.take_recorded();
            if !out.is_empty() {
                moved = true;
                self.client
                    .feed(&out)
                    .expect("the client takes the server's bytes");
            }
            if !moved {
                return std::iter::from_fn(|| self.client.poll_event()).collect();
            }
        }
    }

    /// Runs `f`, pumps, and returns the first event `pick` accepts.
    fn until<T>(
        &mut self,
        f: impl FnOnce(&mut ClientSession),
        pick: impl Fn(&ClientEvent) -> Option<T>,
    ) -> T {
        f(&mut self.client);
        let events = self.pump();
        events
            .iter()
            .find_map(pick)
            .unwrap_or_else(|| panic!("no expected event among {events:?}"))
    }

    /// Sends bytes the client session would not, between its messages. Only protocol control
    /// messages with a full (fmt 0) header fit: they leave the client's header compression intact
    /// as long as it sends nothing on that chunk stream afterwards.
    fn inject(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.harness
            .read(bytes)
            .expect("the server session takes the injected bytes");
    }

    fn create_stream(&mut self) -> u32 {
        self.until(ClientSession::create_stream, |e| match e {
            ClientEvent::StreamCreated { stream_id } => Some(*stream_id),
            _ => None,
        })
    }
}

/// Records a session: handshake and connect, then `script`. Each seed is fed one byte per read
/// (byte 1 = 1), so the harness answers every command before the next one starts, as a real
/// client that waits for replies sees it.
fn record(
    flags: u8,
    handshake: ClientKind,
    chunk_size: u32,
    script: impl FnOnce(&mut Recorder),
) -> Vec<u8> {
    let config = ClientConfig {
        handshake,
        chunk_size,
        ..ClientConfig::new("live?tenant=a", "rtmp://localhost/live?tenant=a")
    };
    let random: Vec<u8> = (0..3072u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut rec = Recorder {
        harness: Harness::recording(flags),
        client: ClientSession::new(config, &random, 1000),
        skip: if flags & HANDSHAKE_IN_INPUT == 0 {
            1 + 2 * HANDSHAKE_SIZE
        } else {
            0
        },
        input: vec![flags, 1],
    };
    let events = rec.pump();
    let connected = events
        .iter()
        .any(|e| matches!(e, ClientEvent::Connected { .. }));
    assert_eq!(connected, flags & REJECT_CONNECT == 0, "{events:?}");
    script(&mut rec);
    rec.input
}

fn publish(rec: &mut Recorder) {
    rec.client.prepare_publish("cam");
    let id = rec.create_stream();
    rec.until(
        |c| c.publish(id, "cam?key=k1&x=2", PublishKind::Live),
        |e| matches!(e, ClientEvent::PublishStarted { .. }).then_some(()),
    );
    for media in sample_media() {
        rec.client.send_media(id, &media);
    }
    rec.pump();
    rec.client.fc_unpublish("cam");
    rec.client.delete_stream(id);
    rec.pump();
}

fn play(rec: &mut Recorder) {
    let id = rec.create_stream();
    rec.until(
        |c| c.play(id, "cam?token=t"),
        |e| matches!(e, ClientEvent::PlayStarted { .. }).then_some(()),
    );
    rec.client
        .call("getStreamLength", &[Amf0Value::String("cam".into())]);
    rec.client.delete_stream(id);
    rec.pump();
}

fn publish_then_play(rec: &mut Recorder) {
    let refused = |e: &ClientEvent| match e {
        ClientEvent::Status { level, .. } if level == "error" => Some(()),
        _ => None,
    };
    let id = rec.create_stream();
    rec.until(|c| c.publish(id, "cam", PublishKind::Live), refused);
    // Media on a stream whose publish was refused must go nowhere.
    rec.client.send_media(id, &sample_media()[1]);
    rec.pump();
    let id = rec.create_stream();
    rec.until(|c| c.play(id, "cam"), refused);
}

fn amf_body(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    amf::encode_all(values, &mut out);
    out.freeze()
}

/// Metadata, AVC and AAC sequence headers, a keyframe and frames, an Enhanced RTMP (HEVC)
/// sequence start, a data message, and a timestamp past the 24-bit field (extended timestamp).
fn sample_media() -> Vec<Media> {
    let n = |v: f64| Amf0Value::Number(v);
    let metadata = amf_body(&[
        Amf0Value::String("onMetaData".into()),
        Amf0Value::ecma_array([
            ("width", n(320.0)),
            ("height", n(240.0)),
            ("framerate", n(25.0)),
            ("videocodecid", n(7.0)),
            ("audiocodecid", n(10.0)),
        ]),
    ]);
    let cue = amf_body(&[Amf0Value::String("onCuePoint".into()), n(1.0)]);
    let avc_header = vec![
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00,
        0x1F, 0x01, 0x00, 0x04, 0x68, 0xEE, 0x3C, 0x80,
    ];
    let mut keyframe = vec![0x17, 0x01, 0, 0, 0, 0, 0, 0x02, 0x00, 0x65];
    keyframe.extend((0..0x1FFu32).map(|i| (i * 31) as u8));
    let inter = vec![
        0x27, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 0x41, 0x9A, 0x02, 0x03, 0x04,
    ];
    let hevc_start = b"\x90hvc1\x01\x02\x03\x04".to_vec();
    let aac_header = vec![0xAF, 0x00, 0x12, 0x10];
    let aac = vec![0xAF, 0x01, 0x21, 0x10, 0x04, 0x60, 0x8C, 0x1C];
    let m = |kind, timestamp, payload: Vec<u8>| Media {
        kind,
        timestamp,
        payload: Bytes::from(payload),
    };
    vec![
        m(MediaKind::Metadata, 0, metadata.to_vec()),
        m(MediaKind::Video, 0, avc_header),
        m(MediaKind::Audio, 0, aac_header),
        m(MediaKind::Video, 0, keyframe),
        m(MediaKind::Audio, 23, aac.clone()),
        m(MediaKind::Video, 40, inter.clone()),
        m(MediaKind::Audio, 46, aac.clone()),
        m(MediaKind::Data, 50, cue.to_vec()),
        m(MediaKind::Video, 80, hevc_start),
        m(MediaKind::Video, 0x0100_0000, inter),
        m(MediaKind::Audio, 0x0100_0017, aac),
    ]
}

/// Dictionary entries for `server_session`: command and property names as AMF0 encodes them,
/// AMF0 markers, and whole protocol control messages as the chunk encoder writes them.
pub fn server_session_dictionary() -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    let string = |s: &str| amf_body(&[Amf0Value::String(s.into())]).to_vec();
    for name in [
        "connect",
        "createStream",
        "deleteStream",
        "closeStream",
        "releaseStream",
        "FCPublish",
        "FCUnpublish",
        "FCSubscribe",
        "publish",
        "play",
        "play2",
        "pause",
        "pauseRaw",
        "seek",
        "receiveAudio",
        "receiveVideo",
        "getStreamLength",
        "_checkbw",
        "close",
        "_result",
        "_error",
        "onStatus",
        "@setDataFrame",
        "@clearDataFrame",
        "onMetaData",
        "live",
        "record",
        "append",
    ] {
        entries.push(string(name));
    }
    // Object keys: a 16-bit length and the name, no marker.
    for key in [
        "app",
        "tcUrl",
        "flashVer",
        "swfUrl",
        "pageUrl",
        "objectEncoding",
        "streamName",
        "start",
        "len",
    ] {
        let mut e = (key.len() as u16).to_be_bytes().to_vec();
        e.extend_from_slice(key.as_bytes());
        entries.push(e);
    }
    for value in [
        Amf0Value::Null,
        Amf0Value::Undefined,
        Amf0Value::Boolean(true),
        Amf0Value::Number(0.0),
        Amf0Value::Number(1.0),
        Amf0Value::Number(3.0),
        Amf0Value::Object(vec![]),
        Amf0Value::EcmaArray(vec![]),
        Amf0Value::StrictArray(vec![Amf0Value::Null]),
    ] {
        entries.push(amf_body(&[value]).to_vec());
    }
    // Markers with no encoder of their own: reference 0, AVM+ (AMF3 follows), long string.
    entries.extend([
        b"\x07\x00\x00".to_vec(),
        b"\x11".to_vec(),
        b"\x0c\x00\x00\x00\x04".to_vec(),
    ]);
    entries.push(b"?key=".to_vec());
    entries.push(control(
        type_id::SET_CHUNK_SIZE,
        4096u32.to_be_bytes().to_vec(),
    ));
    entries.push(control(type_id::ABORT, 3u32.to_be_bytes().to_vec()));
    entries.push(control(
        type_id::WINDOW_ACK_SIZE,
        64u32.to_be_bytes().to_vec(),
    ));
    for event in [
        UserControl::PingRequest(1),
        UserControl::SetBufferLength {
            stream_id: 1,
            millis: 3000,
        },
    ] {
        entries.push(control(type_id::USER_CONTROL, event.encode().to_vec()));
    }
    // An extended timestamp field.
    entries.push(b"\xff\xff\xff".to_vec());
    entries
}

/// A protocol control message as one fmt 0 chunk.
fn control(type_id: u8, payload: Vec<u8>) -> Vec<u8> {
    let msg = RawMessage {
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload: Bytes::from(payload),
    };
    encode_message(csid::PROTOCOL_CONTROL, &msg, 128).to_vec()
}

/// One libFuzzer dictionary line: the entry as a quoted string, non-printables escaped.
pub fn dictionary_line(entry: &[u8]) -> String {
    let mut line = String::from("\"");
    for &b in entry {
        match b {
            b'"' | b'\\' => line.push_str(&format!("\\{}", b as char)),
            0x20..=0x7E => line.push(b as char),
            _ => line.push_str(&format!("\\x{b:02x}")),
        }
    }
    line.push('"');
    line
}

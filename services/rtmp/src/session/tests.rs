//! A [`ServerSession`] and a [`ClientSession`] driven against each other in memory: a pump
//! moves each side's output into the other's input until both are quiet, and the test answers
//! the server's decisions with `accept_*`/`reject_*`. Taps decode both directions of the wire so
//! tests can check exactly what was sent.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::amf::{self, Amf0Value};
use crate::chunk::{ChunkDecoder, ChunkLimits, encode_message};
use crate::command::{Command, CommandError, StatusLevel, code, encode_command};
use crate::handshake::{ClientKind, HANDSHAKE_SIZE, HandshakeKind};
use crate::message::{self, RawMessage, UserControl, type_id};

const TWO_32: u64 = 1 << 32;

fn random(seed: u32) -> Vec<u8> {
    (0..3072u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// The only element of `v`.
fn one<T: std::fmt::Debug>(v: Vec<T>) -> T {
    assert_eq!(v.len(), 1, "expected exactly one: {v:?}");
    v.into_iter().next().unwrap()
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::String(v.into())
}

fn amf_body(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    amf::encode_all(values, &mut out);
    out.freeze()
}

fn status_event(stream_id: u32, level: &str, code: &str, description: &str) -> ClientEvent {
    ClientEvent::Status {
        stream_id,
        level: level.into(),
        code: code.into(),
        description: description.into(),
    }
}

/// Decodes one direction of the connection after the handshake, following its Set Chunk Size.
struct Tap {
    skip: usize,
    buf: BytesMut,
    decoder: ChunkDecoder,
    msgs: Vec<RawMessage>,
    /// Bytes seen after the handshake.
    bytes: usize,
}

impl Tap {
    fn new() -> Self {
        Self {
            skip: 1 + 2 * HANDSHAKE_SIZE,
            buf: BytesMut::new(),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            msgs: Vec::new(),
            bytes: 0,
        }
    }

    fn observe(&mut self, mut data: &[u8]) {
        let skip = self.skip.min(data.len());
        self.skip -= skip;
        data = &data[skip..];
        self.bytes += data.len();
        self.buf.extend_from_slice(data);
        while let Some(msg) = self.decoder.decode(&mut self.buf).expect("tap decodes") {
            if msg.type_id == type_id::SET_CHUNK_SIZE {
                self.decoder
                    .set_chunk_size(message::read_u32(&msg.payload).unwrap())
                    .unwrap();
            }
            self.msgs.push(msg);
        }
    }

    /// Names and transaction ids of the AMF0 commands seen.
    fn commands(&self) -> Vec<(String, f64)> {
        self.msgs
            .iter()
            .filter(|m| m.type_id == type_id::COMMAND_AMF0)
            .map(|m| {
                let cmd = Command::decode(&m.payload).unwrap();
                (cmd.name, cmd.transaction_id)
            })
            .collect()
    }

    fn of_type(&self, type_id: u8) -> Vec<&RawMessage> {
        self.msgs.iter().filter(|m| m.type_id == type_id).collect()
    }
}

struct Pair {
    server: ServerSession,
    client: ClientSession,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    c2s: Tap,
    s2c: Tap,
}

impl Pair {
    fn new(server_config: ServerConfig, client_config: ClientConfig) -> Self {
        Self {
            server: ServerSession::new(server_config, &random(1), 1000),
            client: ClientSession::new(client_config, &random(2), 2000),
            server_events: Vec::new(),
            client_events: Vec::new(),
            c2s: Tap::new(),
            s2c: Tap::new(),
        }
    }

    fn default_pair() -> Self {
        Self::new(ServerConfig::default(), client_config())
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                self.c2s.observe(&bytes);
                self.server
                    .feed(&bytes)
                    .expect("server accepts the client's bytes");
                moved = true;
            }
            while let Some(bytes) = self.server.poll_transmit() {
                self.s2c.observe(&bytes);
                self.client
                    .feed(&bytes)
                    .expect("client accepts the server's bytes");
                moved = true;
            }
            if self.server.has_held_input() {
                self.server.process().expect("server accepts held input");
            }
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            if !moved {
                break;
            }
        }
    }

    fn take_server(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn take_client(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    /// Runs the handshake and `connect`, returning the server's view of the request.
    fn connect(&mut self) -> ConnectRequest {
        self.pump();
        let req = match self.take_server().as_slice() {
            [ServerEvent::Connect(req)] => req.clone(),
            other => panic!("expected one Connect, got {other:?}"),
        };
        self.server.accept_connect(&req);
        self.pump();
        match self.take_client().as_slice() {
            [ClientEvent::Connected { info, .. }] => {
                assert_eq!(
                    info.get("code").and_then(Amf0Value::as_str),
                    Some(code::CONNECT_SUCCESS)
                );
            }
            other => panic!("expected Connected, got {other:?}"),
        }
        req
    }

    fn create_stream(&mut self) -> u32 {
        self.client.create_stream();
        self.pump();
        match self.take_client().as_slice() {
            [ClientEvent::StreamCreated { stream_id }] => *stream_id,
            other => panic!("expected StreamCreated, got {other:?}"),
        }
    }

    /// ffmpeg's publish sequence, accepted; returns the stream id.
    fn start_publish(&mut self, name: &str) -> u32 {
        self.client.prepare_publish(name);
        let id = self.create_stream();
        self.client.publish(id, name, PublishKind::Live);
        self.pump();
        let req = match self.take_server().as_slice() {
            [ServerEvent::Publish(req)] => req.clone(),
            other => panic!("expected Publish, got {other:?}"),
        };
        self.server.accept_publish(&req);
        self.pump();
        assert!(
            self.take_client()
                .contains(&ClientEvent::PublishStarted { stream_id: id })
        );
        id
    }

    fn start_play(&mut self, name: &str) -> u32 {
        let id = self.create_stream();
        self.client.play(id, name);
        self.pump();
        let req = match self.take_server().as_slice() {
            [ServerEvent::Play(req)] => req.clone(),
            other => panic!("expected Play, got {other:?}"),
        };
        self.server.accept_play(&req);
        self.pump();
        assert!(
            self.take_client()
                .contains(&ClientEvent::PlayStarted { stream_id: id })
        );
        id
    }

    /// Feeds the client a message as a self-contained fmt 0 run on a chunk stream the server
    /// never uses, as the driver's fan-out path would.
    fn inject_to_client(&mut self, csid: u32, msg: &RawMessage) {
        let bytes = encode_message(csid, msg, self.server.out_chunk_size());
        self.client
            .feed(&bytes)
            .expect("client accepts injected message");
        self.pump();
    }

    fn inject_to_server(&mut self, csid: u32, msg: &RawMessage) -> Result<(), SessionError> {
        let bytes = encode_message(csid, msg, self.client.out_chunk_size());
        self.server.feed(&bytes)
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new("live", "rtmp://127.0.0.1:1935/live")
}

fn metadata_body() -> Bytes {
    amf_body(&[
        s("onMetaData"),
        Amf0Value::ecma_array([
            ("width", Amf0Value::Number(1280.0)),
            ("height", Amf0Value::Number(720.0)),
            ("videocodecid", Amf0Value::Number(7.0)),
            ("encoder", s("Lavf61.7.100")),
        ]),
    ])
}

fn avc_sequence_header() -> Bytes {
    Bytes::from_static(&[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1F,
    ])
}

fn keyframe(len: usize) -> Bytes {
    let mut v = vec![0x17, 0x01, 0x00, 0x00, 0x21];
    v.extend((0..len).map(|i| (i * 7 + 3) as u8));
    Bytes::from(v)
}

fn aac(raw: bool, len: usize) -> Bytes {
    let mut v = vec![0xAF, u8::from(raw)];
    v.extend((0..len).map(|i| (i * 13) as u8));
    Bytes::from(v)
}

fn media(kind: MediaKind, timestamp: u64, payload: Bytes) -> Media {
    Media {
        kind,
        timestamp,
        payload,
    }
}

fn server_media(events: &[ServerEvent]) -> Vec<Media> {
    events
        .iter()
        .map(|e| match e {
            ServerEvent::Media {
                stream_id: 1,
                media,
            } => media.clone(),
            other => panic!("expected media on stream 1, got {other:?}"),
        })
        .collect()
}

fn client_media(events: &[ClientEvent]) -> Vec<(u32, Media)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media { stream_id, media } => Some((*stream_id, media.clone())),
            _ => None,
        })
        .collect()
}

// ---- handshake and connect ----

#[test]
fn simple_and_digest_handshakes_complete() {
    for (kind, expected) in [
        (ClientKind::Simple, HandshakeKind::Simple),
        (ClientKind::Digest, HandshakeKind::Digest { scheme: 0 }),
    ] {
        let mut pair = Pair::new(
            ServerConfig::default(),
            ClientConfig {
                handshake: kind,
                ..client_config()
            },
        );
        assert!(!pair.client.is_handshake_done());
        let c0c1 = pair.client.poll_transmit().unwrap();
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE, "C0+C1 written at once");
        assert_eq!(
            pair.client.poll_transmit(),
            None,
            "nothing else before the handshake is done"
        );
        pair.c2s.observe(&c0c1);
        pair.server.feed(&c0c1).unwrap();
        pair.pump();
        assert!(pair.client.is_handshake_done() && pair.server.is_handshake_done());
        assert_eq!(pair.client.handshake_kind(), Some(expected));
        assert_eq!(pair.server.handshake_kind(), Some(expected));
        let signed = (kind == ClientKind::Digest).then_some(true);
        assert_eq!(
            pair.client.server_signature_valid(),
            signed,
            "server's S2 signature"
        );
        // After the handshake: Set Chunk Size, then connect with transaction id 1.
        assert_eq!(pair.c2s.msgs[0].type_id, type_id::SET_CHUNK_SIZE);
        assert_eq!(&pair.c2s.msgs[0].payload[..], &4096u32.to_be_bytes());
        assert_eq!(pair.c2s.commands(), [("connect".to_string(), 1.0)]);
        assert_eq!(pair.client.out_chunk_size(), 4096);
        assert!(matches!(
            pair.take_server().as_slice(),
            [ServerEvent::Connect(_)]
        ));
    }
}

#[test]
fn connect_object_like_ffmpeg_and_accept() {
    let config = ClientConfig {
        connect_args: vec![
            ("flashVer".into(), s("FMLE/3.0 (compatible; test)")),
            ("custom".into(), s("x")),
        ],
        ..ClientConfig::new("live?token=abc", "rtmp://example.com/live?token=abc")
    };
    let mut pair = Pair::new(ServerConfig::default(), config);
    pair.pump();
    let ServerEvent::Connect(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(req.transaction_id, 1.0);
    assert_eq!(req.app, "live");
    assert_eq!(req.query.as_deref(), Some("token=abc"));
    assert_eq!(
        req.tc_url.as_deref(),
        Some("rtmp://example.com/live?token=abc")
    );
    assert_eq!(
        req.flash_ver.as_deref(),
        Some("FMLE/3.0 (compatible; test)"),
        "connect_args override"
    );
    assert_eq!(req.object_encoding, 0.0);
    let keys: Vec<&str> = req
        .command_object
        .properties()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "app",
            "type",
            "flashVer",
            "tcUrl",
            "fpad",
            "capabilities",
            "audioCodecs",
            "videoCodecs",
            "videoFunction",
            "objectEncoding",
            "custom"
        ]
    );
    let num = |k| req.command_object.get(k).and_then(Amf0Value::as_f64);
    assert_eq!(
        (
            num("capabilities"),
            num("audioCodecs"),
            num("videoCodecs"),
            num("videoFunction")
        ),
        (Some(15.0), Some(4071.0), Some(252.0), Some(1.0))
    );
    assert_eq!(
        req.command_object.get("fpad"),
        Some(&Amf0Value::Boolean(false))
    );
    assert_eq!(req.command_object.get("type"), Some(&s("nonprivate")));

    pair.server.accept_connect(&req);
    pair.pump();
    let ClientEvent::Connected { properties, info } = one(pair.take_client()) else {
        panic!()
    };
    assert_eq!(properties.get("fmsVer"), Some(&s("FMS/3,0,1,123")));
    assert_eq!(info.get("code"), Some(&s(code::CONNECT_SUCCESS)));
    assert_eq!(info.get("level"), Some(&s("status")));
    assert!(pair.client.is_connected());
    // The client answered Set Peer Bandwidth with its Window Acknowledgement Size.
    let was = pair.c2s.of_type(type_id::WINDOW_ACK_SIZE);
    assert_eq!(was.len(), 1);
    assert_eq!(&was[0].payload[..], &5_000_000u32.to_be_bytes());
}

#[test]
fn default_flash_ver_is_ffmpegs() {
    let mut pair = Pair::default_pair();
    pair.pump();
    let ServerEvent::Connect(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(req.flash_ver.as_deref(), Some("LNX 9,0,124,2"));
}

#[test]
fn reject_connect_fails_and_drops_held_commands() {
    let mut pair = Pair::default_pair();
    // Issued before the handshake: held until connect succeeds.
    pair.client.create_stream();
    pair.pump();
    assert_eq!(
        pair.c2s.commands(),
        [("connect".to_string(), 1.0)],
        "createStream waits for connect"
    );
    let ServerEvent::Connect(req) = one(pair.take_server()) else {
        panic!()
    };
    pair.server.reject_connect(&req, "bad token");
    pair.pump();
    let ClientEvent::ConnectFailed { info } = one(pair.take_client()) else {
        panic!()
    };
    assert_eq!(info.get("level"), Some(&s("error")));
    assert_eq!(info.get("code"), Some(&s(code::CONNECT_REJECTED)));
    assert_eq!(info.get("description"), Some(&s("bad token")));
    assert!(!pair.client.is_connected());
    assert_eq!(
        pair.c2s.commands().len(),
        1,
        "held createStream is never sent"
    );
    assert!(pair.take_server().is_empty());
}

#[test]
fn commands_issued_early_are_sent_after_connect_in_order() {
    let mut pair = Pair::default_pair();
    pair.client.prepare_publish("early");
    pair.client.create_stream();
    pair.pump();
    let ServerEvent::Connect(req) = one(pair.take_server()) else {
        panic!()
    };
    pair.server.accept_connect(&req);
    pair.pump();
    assert!(matches!(
        pair.client_events.remove(0),
        ClientEvent::Connected { .. }
    ));
    let names: Vec<String> = pair.c2s.commands().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["connect", "releaseStream", "FCPublish", "createStream"]
    );
    assert_eq!(
        pair.take_client(),
        [ClientEvent::StreamCreated { stream_id: 1 }]
    );
}

// ---- publishing ----

#[test]
fn publisher_flow_like_ffmpeg() {
    let mut pair = Pair::default_pair();
    pair.connect();
    pair.client.prepare_publish("test?key=abc");
    pair.client.create_stream();
    pair.pump();
    // releaseStream/FCPublish _result and onFCPublish are absorbed; only createStream shows.
    assert_eq!(
        pair.take_client(),
        [ClientEvent::StreamCreated { stream_id: 1 }]
    );
    assert!(pair.take_server().is_empty());

    pair.client.publish(1, "test?key=abc", PublishKind::Live);
    pair.pump();
    let ServerEvent::Publish(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(
        req,
        PublishRequest {
            stream_id: 1,
            name: "test".into(),
            query: Some("key=abc".into()),
            kind: PublishKind::Live
        }
    );
    pair.server.accept_publish(&req);
    pair.pump();
    assert_eq!(
        pair.take_client(),
        [
            ClientEvent::StreamBegin(1),
            status_event(1, "status", code::PUBLISH_START, "test is now published."),
            ClientEvent::PublishStarted { stream_id: 1 },
        ]
    );
    assert_eq!(
        pair.c2s.commands(),
        [
            ("connect".to_string(), 1.0),
            ("releaseStream".to_string(), 2.0),
            ("FCPublish".to_string(), 3.0),
            ("createStream".to_string(), 4.0),
            ("publish".to_string(), 5.0),
        ]
    );
    let publish = pair.c2s.of_type(type_id::COMMAND_AMF0)[4].clone();
    assert_eq!(publish.stream_id, 1);
    let cmd = Command::decode(&publish.payload).unwrap();
    assert_eq!(cmd.args, [s("test?key=abc"), s("live")]);

    let sent = [
        media(MediaKind::Metadata, 0, metadata_body()),
        media(MediaKind::Video, 0, avc_sequence_header()),
        media(MediaKind::Audio, 0, aac(false, 2)),
        media(MediaKind::Video, 40, keyframe(9000)),
        media(MediaKind::Audio, 23, aac(true, 300)),
        media(MediaKind::Audio, 46, aac(true, 301)),
        media(
            MediaKind::Video,
            80,
            Bytes::from_static(&[0x27, 0x01, 0, 0, 0, 1, 2, 3]),
        ),
    ];
    for m in &sent {
        pair.client.send_media(1, m);
    }
    pair.pump();
    assert_eq!(server_media(&pair.take_server()), sent);

    // On the wire metadata is "@setDataFrame", "onMetaData", {...}; audio on csid 4 and video
    // on csid 6 do not matter here, but the data message must carry the prefix.
    let data = pair.c2s.of_type(type_id::DATA_AMF0);
    assert_eq!(data.len(), 1);
    let values = amf::decode_all(&data[0].payload).unwrap();
    assert_eq!(values[0], s("@setDataFrame"));
    assert_eq!(values[1], s("onMetaData"));
    assert_eq!(data[0].stream_id, 1);
}

#[test]
fn metadata_already_prefixed_is_not_prefixed_twice_and_other_data_passes() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.start_publish("s");
    let mut prefixed = BytesMut::new();
    amf::encode(&s("@setDataFrame"), &mut prefixed);
    prefixed.extend_from_slice(&metadata_body());
    let cue = amf_body(&[s("onCuePoint"), Amf0Value::object([("name", s("ad"))])]);
    pair.client
        .send_media(id, &media(MediaKind::Metadata, 5, prefixed.freeze()));
    pair.client
        .send_media(id, &media(MediaKind::Data, 6, cue.clone()));
    pair.pump();
    assert_eq!(
        server_media(&pair.take_server()),
        [
            media(MediaKind::Metadata, 5, metadata_body()),
            media(MediaKind::Data, 6, cue)
        ]
    );
}

#[test]
fn publisher_timestamps_wrap_past_2_pow_32() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.start_publish("wrap");
    let sent = [
        media(MediaKind::Video, TWO_32 - 100, keyframe(10)),
        media(MediaKind::Audio, TWO_32 - 90, aac(true, 10)),
        media(MediaKind::Video, TWO_32 - 20, keyframe(10)),
        media(MediaKind::Audio, TWO_32 + 3, aac(true, 10)),
        media(MediaKind::Video, TWO_32 + 20, keyframe(300)),
        media(MediaKind::Audio, TWO_32 + 26, aac(true, 10)),
        media(MediaKind::Video, TWO_32 + 0x0100_0000, keyframe(10)),
    ];
    for m in &sent {
        pair.client.send_media(id, m);
    }
    pair.pump();
    assert_eq!(server_media(&pair.take_server()), sent);
}

#[test]
fn reject_publish_bad_name_reaches_client_as_error_status() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    pair.client.publish(id, "taken", PublishKind::Live);
    pair.pump();
    let ServerEvent::Publish(req) = one(pair.take_server()) else {
        panic!()
    };
    pair.server
        .reject_publish(&req, code::PUBLISH_BAD_NAME, "taken is already published");
    pair.pump();
    assert_eq!(
        pair.take_client(),
        [status_event(
            id,
            "error",
            code::PUBLISH_BAD_NAME,
            "taken is already published"
        )]
    );
}

#[test]
fn publish_kinds_and_fc_unpublish_delete_stream() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    pair.client.publish(id, "rec", PublishKind::Record);
    pair.pump();
    let ServerEvent::Publish(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(req.kind, PublishKind::Record);
    pair.server.accept_publish(&req);
    pair.pump();
    pair.take_client();
    pair.client.fc_unpublish("rec");
    pair.client.delete_stream(id);
    pair.pump();
    assert_eq!(
        pair.take_server(),
        [ServerEvent::StreamClosed { stream_id: id }]
    );
    assert_eq!(
        pair.take_client(),
        [status_event(
            id,
            "status",
            code::UNPUBLISH_SUCCESS,
            "rec is now unpublished."
        )]
    );
    let names: Vec<String> = pair.c2s.commands().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[names.len() - 2..], ["FCUnpublish", "deleteStream"]);
    let delete = pair
        .c2s
        .of_type(type_id::COMMAND_AMF0)
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        Command::decode(&delete.payload).unwrap().args,
        [Amf0Value::Number(f64::from(id))]
    );
}

// ---- playing ----

#[test]
fn player_flow() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    pair.client.play(id, "cam?token=x");
    pair.pump();
    let ServerEvent::Play(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(
        req,
        PlayRequest {
            stream_id: id,
            name: "cam".into(),
            query: Some("token=x".into()),
            start: Some(-2.0),
            duration: Some(-1.0),
            reset: Some(true),
        }
    );
    // SetBufferLength (3000 ms) follows play, as ffmpeg sends it.
    let last = pair.c2s.msgs.last().unwrap();
    assert_eq!(last.type_id, type_id::USER_CONTROL);
    assert_eq!(
        UserControl::parse(&last.payload),
        Some(UserControl::SetBufferLength {
            stream_id: id,
            millis: 3000
        })
    );

    pair.server.accept_play(&req);
    pair.pump();
    assert_eq!(
        pair.take_client(),
        [
            ClientEvent::StreamBegin(id),
            status_event(id, "status", code::PLAY_RESET, "Playing and resetting cam."),
            status_event(id, "status", code::PLAY_START, "Started playing cam."),
            ClientEvent::PlayStarted { stream_id: id },
        ]
    );

    pair.server.notify_unpublish(id, "cam");
    pair.pump();
    assert_eq!(
        pair.take_client(),
        [
            status_event(
                id,
                "status",
                code::PLAY_UNPUBLISH_NOTIFY,
                "cam is now unpublished."
            ),
            ClientEvent::StreamEof(id)
        ]
    );
}

/// Between its rare commands a player's session keeps no room for output or events: the
/// handshake's 3 KiB of output, or a queue sized for requests, kept by each of thousands of
/// players, would be a good part of their memory.
#[test]
fn a_players_session_keeps_no_room_between_commands() {
    let mut pair = Pair::default_pair();
    pair.connect();
    pair.start_play("cam");
    let (out, events) = pair.server.room_kept();
    assert!(out < 64, "the output buffer keeps {out} bytes");
    assert_eq!(events, 0, "the event queue keeps room for {events}");
}

#[test]
fn play_with_explicit_arguments() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    pair.client.play_with(id, "vod", 12.5, 30.0, false);
    pair.pump();
    let ServerEvent::Play(req) = one(pair.take_server()) else {
        panic!()
    };
    assert_eq!(
        (req.name.as_str(), req.start, req.duration, req.reset),
        ("vod", Some(12.5), Some(30.0), Some(false))
    );
    pair.server.accept_play(&req);
    pair.pump();
    let events = pair.take_client();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Status { code, .. } if code == code::PLAY_RESET))
    );
    assert!(events.contains(&ClientEvent::PlayStarted { stream_id: id }));
}

#[test]
fn player_receives_media_metadata_aggregates_and_wrapping_timestamps() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.start_play("cam");
    let raw = |ts: u32, type_id: u8, payload: Bytes| RawMessage {
        timestamp: ts,
        type_id,
        stream_id: id,
        payload,
    };

    // onMetaData as nginx-rtmp sends it, and with @setDataFrame left in.
    pair.inject_to_client(20, &raw(u32::MAX - 20, type_id::DATA_AMF0, metadata_body()));
    let mut prefixed = BytesMut::new();
    amf::encode(&s("@setDataFrame"), &mut prefixed);
    prefixed.extend_from_slice(&metadata_body());
    pair.inject_to_client(
        20,
        &raw(u32::MAX - 20, type_id::DATA_AMF0, prefixed.freeze()),
    );
    // |RtmpSampleAccess is not media.
    pair.inject_to_client(
        20,
        &raw(
            0,
            type_id::DATA_AMF0,
            amf_body(&[s("|RtmpSampleAccess"), true.into(), true.into()]),
        ),
    );
    pair.inject_to_client(21, &raw(u32::MAX - 10, type_id::VIDEO, keyframe(5000)));
    pair.inject_to_client(22, &raw(u32::MAX - 5, type_id::AUDIO, aac(true, 5)));
    pair.inject_to_client(21, &raw(5, type_id::VIDEO, keyframe(10)));

    // An aggregate of two FLV tags, rebased onto the aggregate's timestamp.
    fn tag(type_id: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(payload);
        v.extend_from_slice(&(11 + payload.len() as u32).to_be_bytes());
        v
    }
    let mut agg = tag(9, 1000, b"\x27\x01video");
    agg.extend(tag(8, 1023, b"\xaf\x01aud"));
    pair.inject_to_client(23, &raw(100, type_id::AGGREGATE, Bytes::from(agg)));

    let events = pair.take_client();
    let got = client_media(&events);
    assert_eq!(
        got,
        [
            (
                id,
                media(
                    MediaKind::Metadata,
                    u64::from(u32::MAX - 20),
                    metadata_body()
                )
            ),
            (
                id,
                media(
                    MediaKind::Metadata,
                    u64::from(u32::MAX - 20),
                    metadata_body()
                )
            ),
            (
                id,
                media(MediaKind::Video, u64::from(u32::MAX - 10), keyframe(5000))
            ),
            (
                id,
                media(MediaKind::Audio, u64::from(u32::MAX - 5), aac(true, 5))
            ),
            (id, media(MediaKind::Video, TWO_32 + 5, keyframe(10))),
            (
                id,
                media(
                    MediaKind::Video,
                    TWO_32 + 100,
                    Bytes::from_static(b"\x27\x01video")
                )
            ),
            (
                id,
                media(
                    MediaKind::Audio,
                    TWO_32 + 123,
                    Bytes::from_static(b"\xaf\x01aud")
                )
            ),
        ]
    );
    assert_eq!(events.len(), got.len(), "nothing but media: {events:?}");
}

// ---- server notifications the client must cope with ----

#[test]
fn status_as_amf3_command_and_data_message() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    let info = crate::command::status_info(StatusLevel::Status, code::PLAY_START, "amf3 start");
    let mut amf3 = vec![0u8];
    amf3.extend_from_slice(&encode_command("onStatus", 0.0, &[Amf0Value::Null, info]));
    pair.inject_to_client(
        20,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::COMMAND_AMF3,
            stream_id: id,
            payload: Bytes::from(amf3),
        },
    );
    let data = amf_body(&[
        s("onStatus"),
        Amf0Value::object([
            ("level", s("status")),
            ("code", s(code::PLAY_STOP)),
            ("description", s("stopped")),
        ]),
    ]);
    pair.inject_to_client(
        20,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::DATA_AMF0,
            stream_id: id,
            payload: data,
        },
    );
    assert_eq!(
        pair.take_client(),
        [
            status_event(id, "status", code::PLAY_START, "amf3 start"),
            ClientEvent::PlayStarted { stream_id: id },
            status_event(id, "status", code::PLAY_STOP, "stopped"),
        ]
    );
}

#[test]
fn bandwidth_check_and_fc_notifications() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let before = pair.c2s.commands().len();
    let cmd = |name: &str, txn: f64| RawMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: encode_command(name, txn, &[Amf0Value::Null]),
    };
    // onBWDone is answered with _checkbw, as ffmpeg does; the server's _result is absorbed.
    pair.inject_to_client(20, &cmd("onBWDone", 0.0));
    let commands = pair.c2s.commands();
    assert_eq!(commands.len(), before + 1);
    assert_eq!(commands.last().unwrap().0, "_checkbw");
    // _onbwcheck, _onbwdone, onFCPublish, onFCUnpublish, close: no events, nothing sent.
    for name in [
        "_onbwcheck",
        "_onbwdone",
        "onFCPublish",
        "onFCUnpublish",
        "close",
    ] {
        pair.inject_to_client(20, &cmd(name, 7.0));
    }
    // A _result for a transaction we never sent is ignored.
    pair.inject_to_client(20, &cmd("_result", 999.0));
    assert_eq!(pair.c2s.commands().len(), before + 1);
    assert!(pair.take_client().is_empty());
}

#[test]
fn create_stream_error_is_a_call_result() {
    let mut pair = Pair::default_pair();
    pair.connect();
    pair.client.create_stream(); // transaction 2, not pumped yet
    let info = crate::command::status_info(StatusLevel::Error, code::CALL_FAILED, "no streams");
    let reply = encode_command("_error", 2.0, &[Amf0Value::Null, info.clone()]);
    pair.inject_to_client(
        20,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id: 0,
            payload: reply,
        },
    );
    // The server's own _result for transaction 2 arrives after and is ignored.
    assert_eq!(
        pair.take_client(),
        [ClientEvent::CallResult {
            transaction_id: 2.0,
            name: "_error".into(),
            values: vec![Amf0Value::Null, info]
        }]
    );
}

#[test]
fn error_reply_to_publish_is_an_error_status() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream(); // transaction 2
    pair.client.publish(id, "x", PublishKind::Live); // transaction 3
    let info = crate::command::status_info(StatusLevel::Error, code::PUBLISH_DENIED, "denied");
    let reply = encode_command("_error", 3.0, &[Amf0Value::Null, info]);
    pair.inject_to_client(
        20,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id: 0,
            payload: reply,
        },
    );
    assert_eq!(
        pair.take_client(),
        [status_event(id, "error", code::PUBLISH_DENIED, "denied")]
    );
    assert!(matches!(
        pair.take_server().as_slice(),
        [ServerEvent::Publish(_)]
    ));
}

#[test]
fn create_stream_result_without_id_is_an_error() {
    let mut pair = Pair::default_pair();
    pair.connect();
    pair.client.create_stream();
    let reply = encode_command("_result", 2.0, &[Amf0Value::Null, s("one")]);
    let bytes = encode_message(
        20,
        &RawMessage {
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id: 0,
            payload: reply,
        },
        pair.server.out_chunk_size(),
    );
    assert!(matches!(
        pair.client.feed(&bytes),
        Err(SessionError::UnexpectedReply(_))
    ));
}

#[test]
fn unknown_call_gets_error_and_known_calls_get_result() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let t1 = pair.client.call("fooBar", &[Amf0Value::Number(1.0)]);
    let t2 = pair.client.call("_checkbw", &[]);
    let t3 = pair.client.call("getStreamLength", &[s("cam")]);
    assert_eq!((t1, t2, t3), (2.0, 3.0, 4.0));
    pair.pump();
    assert_eq!(
        pair.take_client(),
        [
            ClientEvent::CallResult {
                transaction_id: 2.0,
                name: "_error".into(),
                values: vec![
                    Amf0Value::Null,
                    crate::command::status_info(
                        StatusLevel::Error,
                        code::CALL_FAILED,
                        "Method not found (fooBar)"
                    ),
                ],
            },
            ClientEvent::CallResult {
                transaction_id: 3.0,
                name: "_result".into(),
                values: vec![Amf0Value::Null, Amf0Value::Undefined],
            },
            ClientEvent::CallResult {
                transaction_id: 4.0,
                name: "_result".into(),
                values: vec![Amf0Value::Null, Amf0Value::Number(0.0)],
            },
        ]
    );
}

// ---- protocol control ----

/// Acknowledgement sequence numbers in `tap`, checked against the window and the byte count.
fn check_acks(tap: &Tap, window: u32, peer_bytes: usize) -> usize {
    let acks: Vec<u64> = tap
        .of_type(type_id::ACKNOWLEDGEMENT)
        .iter()
        .map(|m| u64::from(message::read_u32(&m.payload).unwrap()))
        .collect();
    let mut last = 0;
    for &ack in &acks {
        assert!(
            ack - last >= u64::from(window),
            "acks {acks:?} closer than the window {window}"
        );
        last = ack;
    }
    assert!(
        peer_bytes as u64 - last < u64::from(window),
        "unacknowledged {peer_bytes} - {last} >= {window}"
    );
    acks.len()
}

#[test]
fn server_acknowledges_per_window_and_pings_are_answered() {
    let window = 3000;
    let mut pair = Pair::new(
        ServerConfig {
            ack_window: window,
            ..ServerConfig::default()
        },
        client_config(),
    );
    pair.connect();
    let id = pair.start_publish("acks");
    for i in 0..20u64 {
        pair.client
            .send_media(id, &media(MediaKind::Video, i * 40, keyframe(1000)));
    }
    pair.pump();
    assert_eq!(pair.take_server().len(), 20);
    assert!(pair.c2s.bytes > 20_000);
    let n = check_acks(&pair.s2c, window, pair.c2s.bytes);
    assert!(n >= 6, "only {n} acks for {} bytes", pair.c2s.bytes);

    pair.server.ping(0xDEAD_BEEF);
    pair.pump();
    let last = pair.c2s.msgs.last().unwrap();
    assert_eq!(last.type_id, type_id::USER_CONTROL);
    assert_eq!(
        UserControl::parse(&last.payload),
        Some(UserControl::PingResponse(0xDEAD_BEEF))
    );
    // Answered by the session already; reported so a client can observe keepalive.
    assert!(
        matches!(pair.take_client()[..], [ClientEvent::Ping(0xDEAD_BEEF)]),
        "a ping is one event"
    );

    // The server answers a client's ping too.
    let ping = RawMessage {
        timestamp: 0,
        type_id: type_id::USER_CONTROL,
        stream_id: 0,
        payload: UserControl::PingRequest(77).encode(),
    };
    pair.inject_to_server(30, &ping).unwrap();
    pair.pump();
    let last = pair.s2c.msgs.last().unwrap();
    assert_eq!(
        UserControl::parse(&last.payload),
        Some(UserControl::PingResponse(77))
    );
}

#[test]
fn client_acknowledges_per_server_window() {
    let window = 2500;
    let mut pair = Pair::new(
        ServerConfig {
            ack_window: window,
            ..ServerConfig::default()
        },
        client_config(),
    );
    pair.connect();
    let id = pair.start_play("cam");
    let mut injected = 0;
    for i in 0..10u32 {
        let msg = RawMessage {
            timestamp: i * 40,
            type_id: type_id::VIDEO,
            stream_id: id,
            payload: keyframe(1500),
        };
        let bytes = encode_message(21, &msg, pair.server.out_chunk_size());
        injected += bytes.len();
        pair.client.feed(&bytes).unwrap();
        pair.pump();
    }
    assert_eq!(client_media(&pair.take_client()).len(), 10);
    let total = pair.s2c.bytes + injected;
    let n = check_acks(&pair.c2s, window, total);
    // Acks go out per decoded message, so each covers at most window + one message.
    assert!(
        n >= total / (window as usize + 1600),
        "{n} acks for {total} bytes"
    );
}

#[test]
fn chunk_sizes_both_ways_with_large_messages() {
    let mut pair = Pair::new(
        ServerConfig {
            chunk_size: 100,
            ..ServerConfig::default()
        },
        ClientConfig {
            chunk_size: 60,
            ..client_config()
        },
    );
    pair.connect();
    assert_eq!(
        (pair.client.out_chunk_size(), pair.server.out_chunk_size()),
        (60, 100)
    );
    let set = pair.s2c.of_type(type_id::SET_CHUNK_SIZE);
    assert_eq!(&set[0].payload[..], &100u32.to_be_bytes());

    // Client -> server: a 20 kB keyframe and a long metadata object in 60-byte chunks.
    let id = pair.start_publish("big");
    let big_meta = amf_body(&[
        s("onMetaData"),
        Amf0Value::ecma_array([("description", s(&"x".repeat(3000)))]),
    ]);
    let sent = [
        media(MediaKind::Video, 0, keyframe(20_000)),
        media(MediaKind::Metadata, 1, big_meta),
    ];
    for m in &sent {
        pair.client.send_media(id, m);
    }
    let before = pair.c2s.bytes;
    pair.pump();
    assert!(
        pair.c2s.bytes - before > 20_000 + 20_000 / 60,
        "sent in 60-byte chunks"
    );
    assert_eq!(server_media(&pair.take_server()), sent);

    // Server -> client: a long command reply and large media in 100-byte chunks.
    let mut play = Pair::new(
        ServerConfig {
            chunk_size: 100,
            ..ServerConfig::default()
        },
        ClientConfig {
            chunk_size: 60,
            ..client_config()
        },
    );
    play.connect();
    let id = play.start_play("big");
    play.server
        .send_status(id, StatusLevel::Status, "Custom.Code", &"d".repeat(1000));
    play.pump();
    assert_eq!(
        play.take_client(),
        [status_event(id, "status", "Custom.Code", &"d".repeat(1000))]
    );
    let msg = RawMessage {
        timestamp: 7,
        type_id: type_id::VIDEO,
        stream_id: id,
        payload: keyframe(12_345),
    };
    play.inject_to_client(21, &msg);
    assert_eq!(
        client_media(&play.take_client()),
        [(id, media(MediaKind::Video, 7, keyframe(12_345)))]
    );
}

// ---- malformed input ----

#[test]
fn garbage_after_handshake_is_an_error() {
    let mut pair = Pair::default_pair();
    pair.connect();
    // fmt 1 on a chunk stream that never had a full header.
    let garbage = [0x45u8, 0x13, 0x37, 0x00, 0xFF, 0xFF, 0xFF, 0x14, 0xAB, 0xCD];
    assert_eq!(
        pair.server.feed(&garbage),
        Err(SessionError::Chunk(
            crate::chunk::ChunkError::MissingHeader { csid: 5, fmt: 1 }
        ))
    );
}

#[test]
fn broken_amf_command_is_a_command_error() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let bad = RawMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::from_static(&[0x02, 0x00, 0x10, b'a']),
    };
    assert!(matches!(
        pair.inject_to_server(8, &bad),
        Err(SessionError::Command(CommandError::Amf(_)))
    ));
    let mut pair = Pair::default_pair();
    pair.connect();
    let nameless = RawMessage {
        payload: amf_body(&[Amf0Value::Number(1.0)]),
        ..bad
    };
    assert_eq!(
        pair.inject_to_server(8, &nameless),
        Err(SessionError::Command(CommandError::MissingName))
    );
}

/// A server that finished a simple handshake with a raw client and received nothing else,
/// and a tap on its output.
fn handshaken_server(config: ServerConfig) -> (ServerSession, Tap) {
    let mut server = ServerSession::new(config, &random(1), 1000);
    let mut c0c1 = vec![3u8];
    c0c1.extend(vec![0u8; 2 * HANDSHAKE_SIZE]);
    server.feed(&c0c1).unwrap();
    assert!(server.is_handshake_done());
    let mut tap = Tap::new();
    statuses(&mut tap, &mut server);
    (server, tap)
}

fn command(stream_id: u32, name: &str, values: &[Amf0Value]) -> RawMessage {
    RawMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id,
        payload: encode_command(name, 2.0, values),
    }
}

/// Feeds `msg` as chunks of 128 bytes on chunk stream 3.
fn feed_raw(server: &mut ServerSession, msg: &RawMessage) -> Result<(), SessionError> {
    server.feed(&encode_message(3, msg, 128))
}

fn publish_command(stream_id: u32, name: &str) -> RawMessage {
    command(stream_id, "publish", &[Amf0Value::Null, s(name), s("live")])
}

fn connect_command(app: &str) -> RawMessage {
    command(0, "connect", &[Amf0Value::object([("app", s(app))])])
}

#[test]
fn publish_before_connect_is_not_connected() {
    let (mut server, _) = handshaken_server(ServerConfig::default());
    assert_eq!(
        feed_raw(&mut server, &publish_command(1, "x")),
        Err(SessionError::NotConnected("publish".into()))
    );
}

#[test]
fn commands_before_connect_are_not_decoded_past_their_name() {
    // An AMF reference bomb after the name of a command that is refused anyway: refused as
    // NotConnected, never as TooLarge (which would mean the body was decoded).
    let mut body = BytesMut::new();
    amf::encode(&s("createStream"), &mut body);
    body.extend_from_slice(&[0x0A, 0, 0, 0, 0x13, 0x0A, 0, 0, 0, 0]);
    for k in 1..19u8 {
        body.extend_from_slice(&[0x0A, 0, 0, 0, 2, 0x07, 0x00, k, 0x07, 0x00, k]);
    }
    let msg = RawMessage {
        payload: body.freeze(),
        ..command(0, "x", &[])
    };
    let (mut server, _) = handshaken_server(ServerConfig::default());
    assert_eq!(
        feed_raw(&mut server, &msg),
        Err(SessionError::NotConnected("createStream".into()))
    );
}

#[test]
fn a_pending_connect_holds_later_input_and_connect_comes_once() {
    let (mut server, _) = handshaken_server(ServerConfig::default());
    let mut wire = BytesMut::from(&encode_message(3, &connect_command("live"), 128)[..]);
    wire.extend_from_slice(&encode_message(3, &connect_command("live"), 128));
    server.feed(&wire).unwrap();
    let Some(ServerEvent::Connect(req)) = server.poll_event() else {
        panic!("expected connect")
    };
    // The second connect waits for the answer to the first.
    assert_eq!(server.poll_event(), None);
    assert!(!server.has_held_input());
    server.accept_connect(&req);
    assert!(server.has_held_input());
    assert_eq!(server.process(), Err(SessionError::DuplicateConnect));
}

#[test]
fn a_refused_connection_produces_no_more_events() {
    let (mut server, _) = handshaken_server(ServerConfig::default());
    let mut wire = BytesMut::from(&encode_message(3, &connect_command("live"), 128)[..]);
    wire.extend_from_slice(&encode_message(3, &command(0, "createStream", &[]), 128));
    server.feed(&wire).unwrap();
    let Some(ServerEvent::Connect(req)) = server.poll_event() else {
        panic!("expected connect")
    };
    server.reject_connect(&req, "no");
    assert!(!server.has_held_input());
    // Whatever comes later is neither decoded nor answered with events.
    server.process().unwrap();
    feed_raw(&mut server, &publish_command(1, "x")).unwrap();
    assert_eq!(server.poll_event(), None);
    // A late accept (a driver bug) does not resurrect it.
    server.accept_connect(&req);
    assert!(feed_raw(&mut server, &command(0, "createStream", &[])).is_ok());
    assert_eq!(server.poll_event(), None);
}

/// "code description" of each `onStatus` and `_error` in the server's new output.
fn statuses(tap: &mut Tap, server: &mut ServerSession) -> Vec<String> {
    let seen = tap.msgs.len();
    while let Some(bytes) = server.poll_transmit() {
        tap.observe(&bytes);
    }
    tap.msgs[seen..]
        .iter()
        .filter(|m| m.type_id == type_id::COMMAND_AMF0)
        .filter_map(|m| {
            let cmd = Command::decode(&m.payload).ok()?;
            let info = cmd.args.last()?;
            Some(format!(
                "{} {}",
                info.get("code").and_then(Amf0Value::as_str)?,
                info.get("description").and_then(Amf0Value::as_str)?
            ))
        })
        .collect()
}

#[test]
fn bad_names_are_refused_before_any_event() {
    let long = "n".repeat(257);
    let (mut server, mut tap) = handshaken_server(ServerConfig::default());
    assert_eq!(
        feed_raw(&mut server, &connect_command(&long)),
        Err(SessionError::BadName {
            what: "app",
            error: crate::name::NameError::TooLong {
                len: 257,
                limit: 256
            }
        })
    );
    assert_eq!(server.poll_event(), None);
    assert_eq!(
        statuses(&mut tap, &mut server),
        ["NetConnection.Connect.Rejected bad app name".to_string()]
    );

    for (cmd, name, status) in [
        ("publish", long.as_str(), code::PUBLISH_BAD_NAME),
        ("publish", "a\nb", code::PUBLISH_BAD_NAME),
        ("publish", "", code::PUBLISH_BAD_NAME),
        ("play", long.as_str(), code::PLAY_BAD_NAME),
        ("play", "a\x1b[31m", code::PLAY_BAD_NAME),
    ] {
        let mut pair = Pair::default_pair();
        pair.connect();
        let id = pair.create_stream();
        statuses(&mut pair.s2c, &mut pair.server);
        let msg = command(id, cmd, &[Amf0Value::Null, s(&format!("{name}?k=v"))]);
        let result = pair.inject_to_server(8, &msg);
        assert!(
            matches!(result, Err(SessionError::BadName { what: "stream", .. })),
            "{cmd} {name:?}: {result:?}"
        );
        assert_eq!(pair.server.poll_event(), None, "{cmd} {name:?}");
        let out = statuses(&mut pair.s2c, &mut pair.server);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].starts_with(status), "{out:?}");
        assert!(
            !out[0].contains("nnnn"),
            "the name is never echoed: {out:?}"
        );
    }
    // The limit is configurable.
    let mut pair = Pair::new(
        ServerConfig {
            max_name_len: 4,
            ..ServerConfig::default()
        },
        client_config(),
    );
    pair.connect();
    let id = pair.create_stream();
    let msg = command(id, "play", &[Amf0Value::Null, s("abcde")]);
    assert!(pair.inject_to_server(8, &msg).is_err());
}

#[test]
fn play_and_publish_need_a_stream_the_connection_created() {
    for (cmd, expected) in [
        ("play", code::PLAY_FAILED),
        ("publish", code::PUBLISH_DENIED),
    ] {
        let mut pair = Pair::default_pair();
        pair.connect();
        let id = pair.create_stream();
        statuses(&mut pair.s2c, &mut pair.server);
        let msg = command(id + 1, cmd, &[Amf0Value::Null, s("cam")]);
        let result = pair.inject_to_server(8, &msg);
        assert!(
            matches!(result, Err(SessionError::UnknownStream { stream_id, .. }) if stream_id == id + 1),
            "{result:?}"
        );
        assert_eq!(pair.server.poll_event(), None);
        let out = statuses(&mut pair.s2c, &mut pair.server);
        assert!(out.len() == 1 && out[0].starts_with(expected), "{out:?}");
    }
    // accept_play with an id the session never handed out changes nothing.
    let mut pair = Pair::default_pair();
    pair.connect();
    statuses(&mut pair.s2c, &mut pair.server);
    let req = PlayRequest {
        stream_id: 9,
        name: "cam".into(),
        query: None,
        start: None,
        duration: None,
        reset: None,
    };
    pair.server.accept_play(&req);
    assert!(statuses(&mut pair.s2c, &mut pair.server).is_empty());
}

#[test]
fn messages_are_small_until_a_publish_is_accepted() {
    let mut pair = Pair::default_pair();
    pair.connect();
    let big = command(0, "call", &[Amf0Value::Null, s(&"x".repeat(64 * 1024))]);
    assert_eq!(
        pair.inject_to_server(8, &big),
        Err(SessionError::Chunk(
            crate::chunk::ChunkError::MessageTooLarge {
                length: big.payload.len() as u32,
                limit: 64 * 1024
            }
        ))
    );
    // Once publishing, a 1 MB keyframe passes.
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.start_publish("cam");
    let frame = media(MediaKind::Video, 0, keyframe(1 << 20));
    pair.client.send_media(id, &frame);
    pair.pump();
    assert_eq!(server_media(&pair.take_server()), [frame]);
}

#[test]
fn media_sent_right_after_publish_waits_for_the_decision() {
    // A publisher that does not wait for Publish.Start: its first large frame is decoded under
    // the publisher's limits once the publish is accepted, not refused as pre-publish input.
    let mut pair = Pair::default_pair();
    pair.connect();
    let id = pair.create_stream();
    pair.client.publish(id, "cam", PublishKind::Live);
    let frame = media(MediaKind::Video, 0, keyframe(200_000));
    pair.client.send_media(id, &frame);
    pair.pump();
    let ServerEvent::Publish(req) = one(pair.take_server()) else {
        panic!("expected publish")
    };
    pair.server.accept_publish(&req);
    pair.pump();
    assert_eq!(server_media(&pair.take_server()), [frame]);
}

#[test]
fn deadlines_for_connect_and_for_publish_or_play() {
    use std::time::{Duration, Instant};
    let config = ServerConfig {
        connect_timeout: Duration::from_secs(10),
        start_timeout: Duration::from_secs(30),
        // Quiet timers off: this test is about the deadlines alone.
        ping_interval: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        ..ServerConfig::default()
    };
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    // No connect: armed at the first call after the handshake, fails 10 s later.
    let (mut server, _) = handshaken_server(config);
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(10)));
    server.handle_timeout(secs(9)).unwrap();
    assert_eq!(
        server.handle_timeout(secs(10)),
        Err(SessionError::ConnectTimeout(Duration::from_secs(10)))
    );
    // Connected but no publish or play: 30 s from connect.
    let mut pair = Pair::new(config, client_config());
    pair.pump();
    pair.server.handle_timeout(t0).unwrap();
    let ServerEvent::Connect(req) = one(pair.take_server()) else {
        panic!()
    };
    pair.server.accept_connect(&req);
    pair.server.handle_timeout(secs(5)).unwrap();
    assert_eq!(pair.server.poll_timeout(), Some(secs(35)));
    assert_eq!(
        pair.server.handle_timeout(secs(35)),
        Err(SessionError::StartTimeout(Duration::from_secs(30)))
    );
    // Playing: no deadline; after the play ends, another 30 s.
    let mut pair = Pair::new(config, client_config());
    pair.connect();
    pair.server.handle_timeout(t0).unwrap();
    let id = pair.start_play("cam");
    pair.server.handle_timeout(secs(100)).unwrap();
    assert_eq!(pair.server.poll_timeout(), None);
    pair.client.delete_stream(id);
    pair.pump();
    pair.server.handle_timeout(secs(200)).unwrap();
    assert_eq!(pair.server.poll_timeout(), Some(secs(230)));
}

/// The ping requests the server sent, by timestamp.
fn pings_sent(tap: &mut Tap, server: &mut ServerSession) -> Vec<u32> {
    if let Some(bytes) = server.poll_transmit() {
        tap.observe(&bytes);
    }
    let pings = tap
        .of_type(type_id::USER_CONTROL)
        .into_iter()
        .filter_map(|m| match UserControl::parse(&m.payload) {
            Some(UserControl::PingRequest(ts)) => Some(ts),
            _ => None,
        })
        .collect();
    tap.msgs.clear();
    pings
}

fn quiet_config() -> ServerConfig {
    use std::time::Duration;
    ServerConfig {
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        // Far away: these tests are about the quiet timers.
        connect_timeout: Duration::from_secs(1000),
        ..ServerConfig::default()
    }
}

#[test]
fn a_quiet_peer_is_pinged_after_the_interval_and_not_before() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    let config = ServerConfig {
        idle_timeout: Duration::from_secs(100),
        ..quiet_config()
    };
    let (mut server, mut tap) = handshaken_server(config);
    server.note_received(t0);
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(30)));
    server.handle_timeout(secs(29)).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), Vec::<u32>::new());
    // Due at 30 s of quiet; the timestamp is the quiet time in milliseconds, as before.
    server
        .handle_timeout(secs(30) + Duration::from_millis(5))
        .unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), [30_005]);
    // Early and repeated calls send nothing more; the next ping is one interval later.
    server.handle_timeout(secs(31)).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), Vec::<u32>::new());
    let next = secs(60) + Duration::from_millis(5);
    assert_eq!(server.poll_timeout(), Some(next));
    server.handle_timeout(next).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), [60_005]);
}

#[test]
fn receiving_bytes_pushes_the_ping_and_the_idle_deadline() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    let (mut server, mut tap) = handshaken_server(quiet_config());
    server.note_received(t0);
    server.handle_timeout(t0).unwrap();
    server.handle_timeout(secs(30)).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), [30_000]);
    // The peer answers (any bytes do): both timers count from then.
    server.note_received(secs(45));
    assert_eq!(server.poll_timeout(), Some(secs(75)));
    server.handle_timeout(secs(70)).unwrap();
    server.handle_timeout(secs(74)).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), Vec::<u32>::new());
    server.handle_timeout(secs(75)).unwrap();
    assert_eq!(pings_sent(&mut tap, &mut server), [30_000]);
    // Idle at 60 s after the last bytes, not after the first ones.
    server.handle_timeout(secs(104)).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(105)));
    assert_eq!(
        server.handle_timeout(secs(105)),
        Err(SessionError::IdleTimeout(Duration::from_secs(60)))
    );
}

#[test]
fn a_silent_peer_fails_with_the_idle_timeout() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    let (mut server, mut tap) = handshaken_server(quiet_config());
    // No note_received: the first call after the handshake starts the quiet spell.
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(30)));
    server.handle_timeout(secs(30)).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(60)));
    server.handle_timeout(secs(59)).unwrap();
    let error = server.handle_timeout(secs(60)).unwrap_err();
    assert_eq!(error, SessionError::IdleTimeout(Duration::from_secs(60)));
    assert!(
        error
            .to_string()
            .contains("nothing received within the idle timeout")
    );
    // Idle wins over a ping due at the same moment.
    assert_eq!(pings_sent(&mut tap, &mut server), [30_000]);
}

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    let config = |connect, ping, idle| ServerConfig {
        connect_timeout: Duration::from_secs(connect),
        ping_interval: Duration::from_secs(ping),
        idle_timeout: Duration::from_secs(idle),
        ..ServerConfig::default()
    };
    // The connect deadline first...
    let (mut server, _) = handshaken_server(config(10, 30, 60));
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(10)));
    // ...the ping first...
    let (mut server, _) = handshaken_server(config(100, 30, 60));
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(30)));
    // ...the idle timeout first (no ping before it)...
    let (mut server, _) = handshaken_server(config(100, 70, 60));
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(60)));
    // ...and nothing during the handshake, whatever was received.
    let mut server = ServerSession::new(config(10, 30, 60), &random(1), 1000);
    server.feed(&[3]).unwrap();
    server.note_received(t0);
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn client_rejects_garbage_without_panicking() {
    let mut pair = Pair::default_pair();
    pair.connect();
    assert!(matches!(
        pair.client.feed(&[0x7F, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(SessionError::Chunk(_))
    ));
}

// ---- property tests ----

fn arb_media() -> impl Strategy<Value = Vec<(u8, i64, usize)>> {
    // Repeated deltas and lengths make the encoder use fmt 2 and 3 headers; deltas around
    // 0xFFFFFF exercise extended timestamps on compressed headers.
    let delta = prop_oneof![
        -50i64..0,
        Just(0),
        Just(40),
        0i64..100_000,
        Just(0xFF_FFFF),
        0xFF_FFF0i64..0x100_0010,
    ];
    let len = prop_oneof![Just(0usize), Just(100), Just(200), 0usize..6000];
    proptest::collection::vec((0u8..4, delta, len), 1..24)
}

fn build_media(start: u64, spec: &[(u8, i64, usize)]) -> Vec<Media> {
    let mut ts = start;
    spec.iter()
        .enumerate()
        .map(|(i, &(kind, delta, len))| {
            // The first timestamp is `start` itself: below 2^32, as a stream's first must be.
            if i > 0 {
                ts = ts.saturating_add_signed(delta);
            }
            let filler =
                |n: usize| Bytes::from((0..n).map(|j| (i * 31 + j * 7) as u8).collect::<Vec<_>>());
            match kind {
                0 => media(MediaKind::Audio, ts, filler(len)),
                1 => media(MediaKind::Video, ts, filler(len)),
                2 => media(
                    MediaKind::Metadata,
                    ts,
                    amf_body(&[
                        s("onMetaData"),
                        Amf0Value::ecma_array([("n", Amf0Value::Number(i as f64))]),
                    ]),
                ),
                _ => media(
                    MediaKind::Data,
                    ts,
                    amf_body(&[s("onTextData"), s(&"t".repeat(len % 300))]),
                ),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn published_media_arrives_identical_whatever_the_splits(
        start in prop_oneof![0u64..1000, (TWO_32 - 300_000)..TWO_32],
        spec in arb_media(),
        cuts in proptest::collection::vec(1usize..3000, 1..200),
        chunk_size in prop_oneof![Just(128u32), Just(4096), 1u32..300],
    ) {
        let mut pair = Pair::new(ServerConfig::default(), ClientConfig { chunk_size, ..client_config() });
        pair.connect();
        let id = pair.start_publish("prop");
        let sent = build_media(start, &spec);
        for m in &sent {
            pair.client.send_media(id, m);
        }
        let mut wire = BytesMut::new();
        while let Some(b) = pair.client.poll_transmit() {
            wire.extend_from_slice(&b);
        }
        let mut cuts = cuts.into_iter().cycle();
        while !wire.is_empty() {
            let n = cuts.next().unwrap().min(wire.len());
            let piece = wire.split_to(n);
            pair.server.feed(&piece).unwrap();
        }
        let got: Vec<Media> = std::iter::from_fn(|| pair.server.poll_event())
            .map(|e| match e {
                ServerEvent::Media { stream_id, media } if stream_id == id => media,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        prop_assert_eq!(got, sent);
    }

    #[test]
    fn garbage_after_handshake_never_panics(garbage in proptest::collection::vec(any::<u8>(), 1..2000)) {
        let mut pair = Pair::default_pair();
        pair.connect();
        let _ = pair.server.feed(&garbage);
        let _ = pair.client.feed(&garbage);
    }
}

/// Enhanced RTMP v2 Reconnect Request: sent only to a client whose `connect` announced
/// `capsEx` Reconnect, on the NetConnection (stream 0), with the URL to connect to; the
/// `connect` answer says which of the announced capabilities the server has.
#[test]
fn reconnect_requests_go_only_to_clients_that_announced_them() {
    let mut caps = client_config();
    caps.connect_args = vec![("capsEx".into(), Amf0Value::Number(3.0))];
    for (config, announced) in [(caps, true), (client_config(), false)] {
        let mut p = Pair::new(ServerConfig::default(), config);
        let req = p.connect();
        assert_eq!(req.caps_ex, if announced { 3 } else { 0 });
        p.start_publish("cam");
        let sent = p
            .server
            .request_reconnect(Some("rtmp://lb/live"), "server restarting");
        assert_eq!(sent, announced);
        p.pump();
        let statuses: Vec<(u32, String)> = p
            .take_client()
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Status {
                    stream_id, code, ..
                } => Some((stream_id, code)),
                _ => None,
            })
            .collect();
        let request = p.s2c.msgs.iter().rev().find_map(|m| {
            let values = crate::amf::decode_all(&m.payload).ok()?;
            let info = values.get(3)?;
            (info.get("code")?.as_str()? == code::CONNECT_RECONNECT_REQUEST).then(|| {
                info.get("tcUrl")
                    .and_then(Amf0Value::as_str)
                    .map(str::to_owned)
            })
        });
        if announced {
            assert_eq!(statuses, [(0, code::CONNECT_RECONNECT_REQUEST.to_owned())]);
            assert_eq!(request, Some(Some("rtmp://lb/live".to_owned())));
        } else {
            assert!(statuses.is_empty() && request.is_none(), "{statuses:?}");
        }
    }
}

//! Fuzz target `server_session`: arbitrary client bytes into a [`ServerSession`], driven the way
//! the RTMP server's connection task drives it (read, process, act on the events, send).
//!
//! Input: byte 0 holds [flags](HANDSHAKE_IN_INPUT) (what the harness decides), byte 1 the size
//! of each read (0 counts as 1), the rest is what the client sends. Without
//! [`HANDSHAKE_IN_INPUT`] the harness completes a simple handshake first, so the input starts
//! at the first chunk.
//!
//! Beyond "no panic", every run checks:
//! - the output decodes: S0/S1/S2 answer C1 (echo, or a valid digest exchange), the chunk stream
//!   decodes into whole messages of types a server sends, with well-formed control payloads and
//!   AMF that decodes to its last byte, and the project's client session accepts all of it
//!   ([`crate::output`]);
//! - each decision the harness makes is answered on the wire in the same round (connect
//!   `_result`/`_error` with the request's transaction id, Publish.Start, Play.Reset/Start,
//!   StreamBegin/StreamEof, pings), and the server never claims a start, a rejection or a
//!   notification the harness did not ask for;
//! - events respect the session's promises: nothing but `connect` before a connect was
//!   accepted, media only on a stream whose publish was accepted and not closed, a close only
//!   for a stream that was publishing or playing, names without their `?query`, metadata that
//!   starts with `onMetaData`, acknowledgements that do not count more bytes than were sent,
//!   and the announced chunk size is the one the session writes with.

use std::collections::HashMap;

use bytes::BytesMut;
use liverelay_rtmp::amf::{Amf0Decoder, Amf0Value};
use liverelay_rtmp::command::code;
use liverelay_rtmp::handshake::digest::{
    self, FMS_PARTIAL_KEY, FP_PARTIAL_KEY, GENUINE_FMS_KEY, find_digest,
};
use liverelay_rtmp::handshake::{HANDSHAKE_SIZE, Packet, RTMP_VERSION};
use liverelay_rtmp::message::{LimitType, UserControl};
use liverelay_rtmp::session::{MediaKind, ServerConfig, ServerEvent, ServerSession, SessionError};

use crate::output::{Control, HANDSHAKE_REPLY_LEN, ServerOutput};

/// The input starts with C0+C1 and C2; otherwise the harness does a simple handshake itself.
pub const HANDSHAKE_IN_INPUT: u8 = 1 << 0;
/// Refuse every `connect` (accepted otherwise).
pub const REJECT_CONNECT: u8 = 1 << 1;
/// Refuse every publish and play (accepted otherwise).
pub const REJECT_STREAMS: u8 = 1 << 2;
/// Ping once connected, and tell every accepted player its publisher left and came back.
pub const NOTIFY_PLAYERS: u8 = 1 << 3;

/// The server's handshake randomness and epoch: fixed, so a recorded digest C2 stays valid.
pub const SERVER_RANDOM: [u8; 3072] = [0x5A; 3072];
pub const SERVER_EPOCH: u32 = 0;

/// The libFuzzer entry point.
pub fn fuzz(data: &[u8]) {
    run(data);
}

/// Runs one input and returns how far it got.
pub fn run(data: &[u8]) -> Reached {
    let [flags, read_size, input @ ..] = data else {
        return Reached::default();
    };
    let mut harness = Harness::new(*flags);
    for read in input.chunks(usize::from(*read_size).max(1)) {
        if harness.read(read).is_err() {
            break;
        }
    }
    harness.reached
}

/// What a run reached, for the corpus test to show the seeds cover the session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub handshake_from_input: bool,
    pub digest_handshake: bool,
    pub connects_accepted: usize,
    pub connects_rejected: usize,
    pub publishes_accepted: usize,
    pub plays_accepted: usize,
    pub streams_rejected: usize,
    pub media: usize,
    pub streams_closed: usize,
    pub acknowledgements: usize,
}

impl Reached {
    pub fn add(&mut self, o: &Reached) {
        self.handshake_from_input |= o.handshake_from_input;
        self.digest_handshake |= o.digest_handshake;
        self.connects_accepted += o.connects_accepted;
        self.connects_rejected += o.connects_rejected;
        self.publishes_accepted += o.publishes_accepted;
        self.plays_accepted += o.plays_accepted;
        self.streams_rejected += o.streams_rejected;
        self.media += o.media;
        self.streams_closed += o.streams_closed;
        self.acknowledgements += o.acknowledgements;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publishing,
    Playing,
}

/// Replies the harness's decisions must produce on the wire in the same round.
#[derive(Debug)]
enum Expected {
    /// `_result`/`_error` answering a connect (transaction ids compare by bits: NaN too).
    Reply {
        name: &'static str,
        txn: f64,
        code: &'static str,
    },
    /// `onStatus` with `code` on a message stream.
    Status {
        stream_id: u32,
        code: &'static str,
    },
    Control(Control),
    /// The session's own refusal of a bad name or an unknown stream id, which ends it: an
    /// error reply with one of these codes.
    Refusal(&'static [&'static str]),
}

/// Codes the server may only send when the driver asked for them (`onFCPublish` reuses
/// Publish.Start as a mere acknowledgement, so `onFC*` replies are exempt).
const DECIDED_CODES: &[&str] = &[
    code::CONNECT_SUCCESS,
    code::CONNECT_REJECTED,
    code::PUBLISH_START,
    code::PUBLISH_DENIED,
    code::PLAY_FAILED,
    code::PLAY_RESET,
    code::PLAY_START,
    code::PLAY_PUBLISH_NOTIFY,
    code::PLAY_UNPUBLISH_NOTIFY,
];

/// A [`ServerSession`] plus the driver's decisions and the checks on what comes out.
pub struct Harness {
    flags: u8,
    session: ServerSession,
    /// The window the session announces on connect.
    ack_window: u32,
    output: ServerOutput,
    /// C0 + C1 as received, for checking S1/S2.
    c0c1: Vec<u8>,
    handshake_checked: bool,
    /// Bytes given to the session so far.
    fed: u64,
    connected: bool,
    streams: HashMap<u32, Role>,
    expected: Vec<Expected>,
    pings: u32,
    /// Everything the session sent, kept when recording seeds.
    recorded: Option<BytesMut>,
    pub reached: Reached,
}

impl Harness {
    pub fn new(flags: u8) -> Self {
        Self::build(flags, None)
    }

    /// A harness that keeps the session's output for [`take_recorded`](Self::take_recorded).
    pub fn recording(flags: u8) -> Self {
        Self::build(flags, Some(BytesMut::new()))
    }

    fn build(flags: u8, recorded: Option<BytesMut>) -> Self {
        // The defaults, as the server runs with.
        let config = ServerConfig::default();
        let mut harness = Self {
            flags,
            session: ServerSession::new(config, &SERVER_RANDOM, SERVER_EPOCH),
            ack_window: config.ack_window,
            output: ServerOutput::default(),
            c0c1: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            handshake_checked: false,
            fed: 0,
            connected: false,
            streams: HashMap::new(),
            expected: Vec::new(),
            pings: 0,
            recorded,
            reached: Reached::default(),
        };
        if flags & HANDSHAKE_IN_INPUT == 0 {
            let mut hello = vec![RTMP_VERSION];
            hello.resize(1 + 2 * HANDSHAKE_SIZE, 0);
            harness.read(&hello).expect("a simple handshake completes");
        }
        harness
    }

    pub fn take_recorded(&mut self) -> BytesMut {
        self.recorded
            .as_mut()
            .map(BytesMut::split)
            .unwrap_or_default()
    }

    pub fn has_handshake_in_input(&self) -> bool {
        self.flags & HANDSHAKE_IN_INPUT != 0
    }

    /// One read from the socket: process it, act on the events, send and check the output.
    /// Events decoded before a protocol error are acted on, as the server does.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let take = (1 + HANDSHAKE_SIZE - self.c0c1.len()).min(bytes.len());
        self.c0c1.extend_from_slice(&bytes[..take]);
        let mut result = self.session.feed(bytes);
        self.fed += bytes.len() as u64;
        if self.session.is_handshake_done() && self.has_handshake_in_input() {
            self.reached.handshake_from_input = true;
        }
        self.handle_events();
        // Input held back until a connect or publish was answered is decoded now, as the
        // server's driver does.
        while result.is_ok() && self.session.has_held_input() {
            result = self.session.process();
            self.handle_events();
        }
        let refusal: &[&str] = match &result {
            Err(SessionError::BadName { what: "app", .. }) => &[code::CONNECT_REJECTED],
            Err(SessionError::BadName { .. }) => &[code::PUBLISH_BAD_NAME, code::PLAY_BAD_NAME],
            Err(SessionError::UnknownStream { .. }) => &[code::PUBLISH_DENIED, code::PLAY_FAILED],
            _ => &[],
        };
        if !refusal.is_empty() {
            self.expected.push(Expected::Refusal(refusal));
        }
        self.flush();
        result
    }

    fn handle_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            assert!(
                self.connected || matches!(event, ServerEvent::Connect(_)),
                "{event:?} before a connect was accepted"
            );
            match event {
                ServerEvent::Connect(req) => {
                    assert!(
                        !req.app.contains('?') && !req.app.ends_with('/'),
                        "app {:?} keeps its query or trailing slash",
                        req.app
                    );
                    let txn = req.transaction_id;
                    if self.flags & REJECT_CONNECT != 0 {
                        self.session
                            .reject_connect(&req, "refused by the fuzz harness");
                        self.reached.connects_rejected += 1;
                        self.expect_reply("_error", txn, code::CONNECT_REJECTED);
                    } else {
                        self.session.accept_connect(&req);
                        self.connected = true;
                        self.reached.connects_accepted += 1;
                        self.expect_reply("_result", txn, code::CONNECT_SUCCESS);
                        // Announced with the accept; the chunk size is checked after each round.
                        let window = self.ack_window;
                        self.expected
                            .push(Expected::Control(Control::WindowAckSize(window)));
                        let dynamic = LimitType::Dynamic as u8;
                        let bandwidth = Control::PeerBandwidth(window, dynamic);
                        self.expected.push(Expected::Control(bandwidth));
                        if self.flags & NOTIFY_PLAYERS != 0 {
                            self.pings += 1;
                            self.session.ping(self.pings);
                            self.expect_control(UserControl::PingRequest(self.pings));
                        }
                    }
                }
                ServerEvent::Publish(req) => {
                    assert!(!req.name.contains('?'), "publish name {:?}", req.name);
                    if self.flags & REJECT_STREAMS != 0 {
                        self.session
                            .reject_publish(&req, code::PUBLISH_DENIED, "refused");
                        self.reached.streams_rejected += 1;
                        self.expect_status(req.stream_id, code::PUBLISH_DENIED);
                    } else {
                        self.session.accept_publish(&req);
                        self.streams.insert(req.stream_id, Role::Publishing);
                        self.reached.publishes_accepted += 1;
                        self.expect_control(UserControl::StreamBegin(req.stream_id));
                        self.expect_status(req.stream_id, code::PUBLISH_START);
                    }
                }
                ServerEvent::Play(req) => {
                    assert!(!req.name.contains('?'), "play name {:?}", req.name);
                    let id = req.stream_id;
                    if self.flags & REJECT_STREAMS != 0 {
                        self.session.reject_play(&req, code::PLAY_FAILED, "refused");
                        self.reached.streams_rejected += 1;
                        self.expect_status(id, code::PLAY_FAILED);
                        continue;
                    }
                    self.session.accept_play(&req);
                    self.streams.insert(id, Role::Playing);
                    self.reached.plays_accepted += 1;
                    self.expect_control(UserControl::StreamBegin(id));
                    if req.resets() {
                        self.expect_status(id, code::PLAY_RESET);
                    }
                    self.expect_status(id, code::PLAY_START);
                    if self.flags & NOTIFY_PLAYERS != 0 {
                        self.session.notify_unpublish(id, &req.name);
                        self.session.notify_publish(id, &req.name);
                        self.expect_status(id, code::PLAY_UNPUBLISH_NOTIFY);
                        self.expect_control(UserControl::StreamEof(id));
                        self.expect_control(UserControl::StreamBegin(id));
                        self.expect_status(id, code::PLAY_PUBLISH_NOTIFY);
                    }
                }
                ServerEvent::Media { stream_id, media } => {
                    assert_eq!(
                        self.streams.get(&stream_id),
                        Some(&Role::Publishing),
                        "media on stream {stream_id}, which is not publishing"
                    );
                    if matches!(media.kind, MediaKind::Metadata | MediaKind::Data) {
                        let first = Amf0Decoder::new(&media.payload).decode();
                        let first = first.unwrap_or_else(|e| {
                            panic!("{:?} payload does not start with AMF0: {e}", media.kind)
                        });
                        if media.kind == MediaKind::Metadata {
                            assert_eq!(first, Amf0Value::String("onMetaData".into()));
                        }
                    }
                    self.reached.media += 1;
                }
                ServerEvent::StreamClosed { stream_id } => {
                    assert!(
                        self.streams.remove(&stream_id).is_some(),
                        "stream {stream_id} closed, but it was neither publishing nor playing"
                    );
                    self.reached.streams_closed += 1;
                }
                ServerEvent::Pause { .. }
                | ServerEvent::ReceiveAudio { .. }
                | ServerEvent::ReceiveVideo { .. }
                | ServerEvent::Close => {}
            }
        }
    }

    fn expect_reply(&mut self, name: &'static str, txn: f64, code: &'static str) {
        self.expected.push(Expected::Reply { name, txn, code });
    }

    fn expect_status(&mut self, stream_id: u32, code: &'static str) {
        self.expected.push(Expected::Status { stream_id, code });
    }

    fn expect_control(&mut self, event: UserControl) {
        self.expected.push(Expected::Control(Control::User(event)));
    }

    /// Sends (decodes and checks) everything the session wrote this round.
    fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            self.output.observe(&bytes);
            if let Some(recorded) = &mut self.recorded {
                recorded.extend_from_slice(&bytes);
            }
        }
        if !self.handshake_checked
            && let Some(reply) = self.output.handshake_reply()
        {
            check_handshake(&self.c0c1, reply, &mut self.reached);
            self.handshake_checked = true;
        }
        let (mut replies, mut controls) = self.output.take();
        for expected in std::mem::take(&mut self.expected) {
            let found = match &expected {
                Expected::Reply { name, txn, code } => take_first(&mut replies, |r| {
                    r.name == *name
                        && r.transaction_id.to_bits() == txn.to_bits()
                        && r.code.as_deref() == Some(*code)
                }),
                Expected::Status { stream_id, code } => take_first(&mut replies, |r| {
                    r.name == "onStatus"
                        && r.stream_id == *stream_id
                        && r.code.as_deref() == Some(*code)
                }),
                Expected::Control(event) => take_first(&mut controls, |c| c == event),
                Expected::Refusal(codes) => take_first(&mut replies, |r| {
                    r.level.as_deref() == Some("error")
                        && codes.contains(&r.code.as_deref().unwrap_or(""))
                }),
            };
            assert!(found, "the server did not send {expected:?}");
        }
        for r in &replies {
            assert!(
                r.name.starts_with("onFC")
                    || !DECIDED_CODES.contains(&r.code.as_deref().unwrap_or("")),
                "the server sent {r:?} without being asked to"
            );
        }
        // What a server sends on its own: answers to pings, acknowledgements, and its window
        // when the client's Set Peer Bandwidth names another one.
        let after_handshake = self.fed.saturating_sub(HANDSHAKE_REPLY_LEN as u64);
        for c in &controls {
            match c {
                Control::User(UserControl::PingResponse(_)) | Control::WindowAckSize(_) => {}
                Control::Acknowledgement(seq) => {
                    assert!(
                        u64::from(*seq) <= after_handshake,
                        "acknowledged {seq} bytes, {after_handshake} were sent"
                    );
                    self.reached.acknowledgements += 1;
                }
                other => panic!("the server sent {other:?} without being asked to"),
            }
        }
        assert_eq!(
            self.output.chunk_size(),
            self.session.out_chunk_size(),
            "the session writes with a chunk size it did not announce"
        );
    }
}

/// Removes the first element matching `pred`; whether there was one.
fn take_first<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> bool {
    match items.iter().position(pred) {
        Some(i) => {
            items.remove(i);
            true
        }
        None => false,
    }
}

/// S0 is version 3; a simple C1 gets itself back as S2, a digest C1 gets an S1 with a valid
/// server digest and an S2 signed for C1's digest.
fn check_handshake(c0c1: &[u8], reply: &[u8], reached: &mut Reached) {
    let packet = |b: &[u8]| -> Packet { b.try_into().expect("handshake packet size") };
    let c1 = packet(&c0c1[1..]);
    let s1 = packet(&reply[1..1 + HANDSHAKE_SIZE]);
    let s2 = packet(&reply[1 + HANDSHAKE_SIZE..]);
    assert_eq!(reply[0], RTMP_VERSION, "S0");
    match find_digest(&c1, FP_PARTIAL_KEY) {
        None => assert!(s2 == c1, "S2 does not echo a simple C1"),
        Some((_, c1_digest)) => {
            assert!(
                find_digest(&s1, FMS_PARTIAL_KEY).is_some(),
                "S1 lacks a valid server digest"
            );
            assert!(
                digest::response_signature_valid(&s2, &GENUINE_FMS_KEY, &c1_digest),
                "S2 is not signed for C1's digest"
            );
            reached.digest_handshake = true;
        }
    }
}

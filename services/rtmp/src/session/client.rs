//! The client end of an RTMP connection: runs the handshake, connects, creates streams,
//! publishes or plays, and turns the server's replies and media into [`ClientEvent`]s. It is
//! what the load generator, static relays (pull from / push to other servers) and tests use,
//! and it behaves on the wire like ffmpeg, which every RTMP server is tested against.
//!
//! Commands issued before the server accepted `connect` are held back and sent, in order, once
//! the connect `_result` arrives: sending them earlier would race servers that authorise the
//! connect asynchronously (our own included).

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::MessageHandler;
use super::connection::{ChunkConnection, Incoming};
use super::server::{PublishKind, classify_data};
use super::{Media, MediaKind, SessionError};
use crate::amf::{self, Amf0Decoder, Amf0Value};
use crate::chunk::{ChunkLimits, MAX_CHUNK_SIZE};
use crate::command::{self, Command, code, encode_command};
use crate::handshake::{ClientHandshake, ClientKind, HandshakeKind};
use crate::message::{RawMessage, UserControl, csid, type_id};
use crate::timestamp::TimestampExtender;

/// Chunk stream ids for what the client sends; audio and video as ffmpeg sends them, data
/// messages on their own chunk stream so they do not break audio's header compression.
mod out_csid {
    pub const AUDIO: u32 = 4;
    pub const VIDEO: u32 = 6;
    pub const DATA: u32 = super::csid::DATA;
}

/// Buffer length announced after `play`, as ffmpeg does.
const PLAY_BUFFER_MS: u32 = 3000;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application name, e.g. `live` (may carry a `?query` for auth).
    pub app: String,
    /// `rtmp://host[:port]/app`.
    pub tc_url: String,
    pub flash_ver: String,
    /// Chunk size for everything we send; announced right after the handshake.
    pub chunk_size: u32,
    pub limits: ChunkLimits,
    pub handshake: ClientKind,
    /// Extra properties for the connect command object. A name that is already there replaces
    /// the default value; new names are appended.
    pub connect_args: Vec<(String, Amf0Value)>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            app: String::new(),
            tc_url: String::new(),
            flash_ver: "LNX 9,0,124,2".into(),
            chunk_size: 4096,
            limits: ChunkLimits::default(),
            handshake: ClientKind::Digest,
            connect_args: Vec::new(),
        }
    }
}

impl ClientConfig {
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            tc_url: tc_url.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server accepted `connect` (`_result`): its properties and info objects.
    Connected {
        properties: Amf0Value,
        info: Amf0Value,
    },
    /// The server refused `connect` (`_error`); the connection is useless after this.
    ConnectFailed {
        info: Amf0Value,
    },
    /// `createStream` succeeded. A refused `createStream` comes out as a [`CallResult`]
    /// named `_error`.
    ///
    /// [`CallResult`]: ClientEvent::CallResult
    StreamCreated {
        stream_id: u32,
    },
    /// Any `onStatus`, as an AMF command or as a data message (NetStream.Data.Start). Also an
    /// `_error` answering our `publish` or `play`, whose info object has the same fields.
    Status {
        stream_id: u32,
        level: String,
        code: String,
        description: String,
    },
    /// NetStream.Publish.Start arrived on `stream_id` (after its [`Status`](ClientEvent::Status)).
    PublishStarted {
        stream_id: u32,
    },
    /// NetStream.Play.Start arrived on `stream_id` (after its [`Status`](ClientEvent::Status)).
    PlayStarted {
        stream_id: u32,
    },
    /// Audio, video or data from the server, timestamps extended to 64 bits per stream.
    /// `onMetaData` comes as [`MediaKind::Metadata`] with the body starting at "onMetaData".
    Media {
        stream_id: u32,
        media: Media,
    },
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    /// The server pinged us (User Control 6) with this timestamp. Already answered: the
    /// session queued the pong; this only tells the application that it happened.
    Ping(u32),
    /// The reply to a [`ClientSession::call`] (or to a failed `createStream`): `name` is
    /// `_result` or `_error`, `values` everything after the transaction id.
    CallResult {
        transaction_id: f64,
        name: String,
        values: Vec<Amf0Value>,
    },
}

/// What a transaction id we sent is waiting for.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Connect,
    CreateStream,
    /// `publish`/`play` on this stream: an `_error` becomes a `Status`.
    StreamCommand(u32),
    /// [`ClientSession::call`].
    Call,
}

pub struct ClientSession {
    config: ClientConfig,
    handshake: ClientHandshake,
    /// C0+C1 and C2; sent before anything in `conn.out`, which is held until the handshake
    /// is done.
    handshake_out: BytesMut,
    inbuf: BytesMut,
    conn: ChunkConnection,
    events: VecDeque<ClientEvent>,
    connected: bool,
    /// Messages (csid, message) issued before `connect` succeeded.
    held: Vec<(u32, RawMessage)>,
    next_transaction: f64,
    pending: HashMap<u64, Pending>,
    timestamps: HashMap<u32, TimestampExtender>,
}

impl ClientSession {
    /// Writes C0+C1 at once; Set Chunk Size and `connect` follow as soon as the handshake is
    /// done. `random` seeds the handshake (see [`ClientHandshake::new`]: 3072 fresh random
    /// bytes); `epoch` is the client's uptime in milliseconds.
    pub fn new(config: ClientConfig, random: &[u8], epoch: u32) -> Self {
        let mut handshake = ClientHandshake::new(config.handshake, random, epoch);
        let mut handshake_out = BytesMut::with_capacity(2 * crate::handshake::HANDSHAKE_SIZE + 1);
        handshake.start(&mut handshake_out);
        let mut session = Self {
            conn: ChunkConnection::new(config.limits),
            config,
            handshake,
            handshake_out,
            inbuf: BytesMut::with_capacity(8192),
            events: VecDeque::new(),
            connected: false,
            held: Vec::new(),
            next_transaction: 1.0,
            pending: HashMap::new(),
            timestamps: HashMap::new(),
        };
        // Queued in `conn.out`, which goes out only after the handshake.
        session
            .conn
            .set_out_chunk_size(session.config.chunk_size.clamp(1, MAX_CHUNK_SIZE));
        let txn = session.track(Pending::Connect);
        let body = encode_command("connect", txn, &[session.connect_object()]);
        session.conn.send_command(0, body);
        session
    }

    /// The connect command object, laid out as ffmpeg sends it.
    fn connect_object(&self) -> Amf0Value {
        let c = &self.config;
        let s = |v: &str| Amf0Value::String(v.to_owned());
        let mut props: Vec<(String, Amf0Value)> = [
            ("app", s(&c.app)),
            ("type", s("nonprivate")),
            ("flashVer", s(&c.flash_ver)),
            ("tcUrl", s(&c.tc_url)),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (name, value) in &c.connect_args {
            match props.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = value.clone(),
                None => props.push((name.clone(), value.clone())),
            }
        }
        Amf0Value::Object(props)
    }

    /// Where the driver puts received bytes before calling [`process`](Self::process).
    pub fn recv_buffer(&mut self) -> &mut BytesMut {
        &mut self.inbuf
    }

    /// Appends `data` to the receive buffer and processes it (for tests and fuzzing).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), SessionError> {
        self.inbuf.extend_from_slice(data);
        self.process()
    }

    /// Runs the handshake and decodes every complete message in the receive buffer.
    pub fn process(&mut self) -> Result<(), SessionError> {
        if !self.handshake.is_done()
            && !self
                .handshake
                .read(&mut self.inbuf, &mut self.handshake_out)?
        {
            return Ok(());
        }
        while let Some(incoming) = self.conn.next(&mut self.inbuf)? {
            match incoming {
                Incoming::Message(msg) => self.handle_message(msg)?,
                Incoming::UserControl(event) => self.handle_user_control(event),
            }
        }
        Ok(())
    }

    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_done()
    }

    /// The handshake performed (simple or digest); known once S1 has arrived.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.handshake.kind()
    }

    /// Whether the server signed S2 correctly for our digest C1; `None` unless both sides did
    /// a digest handshake. A bad signature is not fatal (many servers get it wrong).
    pub fn server_signature_valid(&self) -> Option<bool> {
        self.handshake.server_signature_valid()
    }

    /// Whether the server accepted `connect`.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to send, if any. Nothing but handshake bytes comes out before the handshake is
    /// done.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if !self.handshake_out.is_empty() {
            return Some(self.handshake_out.split().freeze());
        }
        (self.handshake.is_done() && !self.conn.out.is_empty())
            .then(|| self.conn.out.split().freeze())
    }

    pub fn out_chunk_size(&self) -> u32 {
        self.conn.out_chunk_size()
    }

    /// Sends `createStream`; the reply comes as [`ClientEvent::StreamCreated`].
    pub fn create_stream(&mut self) {
        let txn = self.track(Pending::CreateStream);
        self.command(0, encode_command("createStream", txn, &[Amf0Value::Null]));
    }

    /// Sends `releaseStream` and `FCPublish` for `name`, as ffmpeg and OBS do before
    /// `createStream`. Servers answer with `_result`, `onFCPublish` or nothing; all are fine.
    pub fn prepare_publish(&mut self, name: &str) {
        for cmd in ["releaseStream", "FCPublish"] {
            self.untracked_command(0, cmd, &[Amf0Value::Null, Amf0Value::String(name.into())]);
        }
    }

    /// Sends `publish(name, kind)` on `stream_id`; success comes as
    /// [`ClientEvent::PublishStarted`], refusal as a [`ClientEvent::Status`] with level error.
    pub fn publish(&mut self, stream_id: u32, name: &str, kind: PublishKind) {
        let txn = self.track(Pending::StreamCommand(stream_id));
        let args = [
            Amf0Value::Null,
            Amf0Value::String(name.into()),
            Amf0Value::String(kind.as_str().into()),
        ];
        self.command(stream_id, encode_command("publish", txn, &args));
    }

    /// Plays a live-or-recorded stream from its start with reset (`play(name, -2, -1, true)`),
    /// then announces a 3 s buffer like ffmpeg.
    pub fn play(&mut self, stream_id: u32, name: &str) {
        self.play_with(stream_id, name, -2.0, -1.0, true);
    }

    /// `play` with explicit start (seconds; -2 live or recorded, -1 live only), duration and
    /// reset.
    pub fn play_with(
        &mut self,
        stream_id: u32,
        name: &str,
        start: f64,
        duration: f64,
        reset: bool,
    ) {
        let txn = self.track(Pending::StreamCommand(stream_id));
        let args = [
            Amf0Value::Null,
            Amf0Value::String(name.into()),
            Amf0Value::Number(start),
            Amf0Value::Number(duration),
            Amf0Value::Boolean(reset),
        ];
        self.command(stream_id, encode_command("play", txn, &args));
        let buffer = UserControl::SetBufferLength {
            stream_id,
            millis: PLAY_BUFFER_MS,
        };
        self.queue(
            csid::PROTOCOL_CONTROL,
            type_id::USER_CONTROL,
            0,
            0,
            buffer.encode(),
        );
    }

    /// Sends one media message on `stream_id` (which must be publishing). Only the lower 32
    /// bits of the timestamp go on the wire. Metadata is sent as `@setDataFrame` +
    /// the payload (which starts at "onMetaData", as [`MediaKind::Metadata`] payloads do);
    /// other data messages go as they are.
    pub fn send_media(&mut self, stream_id: u32, media: &Media) {
        let timestamp = media.timestamp as u32;
        let (csid, type_id, payload) = match media.kind {
            MediaKind::Audio => (out_csid::AUDIO, type_id::AUDIO, media.payload.clone()),
            MediaKind::Video => (out_csid::VIDEO, type_id::VIDEO, media.payload.clone()),
            MediaKind::Metadata => (
                out_csid::DATA,
                type_id::DATA_AMF0,
                with_set_data_frame(&media.payload),
            ),
            MediaKind::Data => (out_csid::DATA, type_id::DATA_AMF0, media.payload.clone()),
        };
        self.queue(csid, type_id, stream_id, timestamp, payload);
    }

    /// Sends `deleteStream(stream_id)`; no reply is expected.
    pub fn delete_stream(&mut self, stream_id: u32) {
        self.pending
            .retain(|_, p| *p != Pending::StreamCommand(stream_id));
        self.timestamps.remove(&stream_id);
        self.untracked_command(
            0,
            "deleteStream",
            &[Amf0Value::Null, Amf0Value::Number(f64::from(stream_id))],
        );
    }

    /// Sends `FCUnpublish(name)`; whatever the server answers is ignored.
    pub fn fc_unpublish(&mut self, name: &str) {
        self.untracked_command(
            0,
            "FCUnpublish",
            &[Amf0Value::Null, Amf0Value::String(name.into())],
        );
    }

    /// Calls `name` on the NetConnection with a null command object and `args`; the reply
    /// comes as [`ClientEvent::CallResult`] with the returned transaction id.
    pub fn call(&mut self, name: &str, args: &[Amf0Value]) -> f64 {
        let txn = self.track(Pending::Call);
        let mut values = Vec::with_capacity(args.len() + 1);
        values.push(Amf0Value::Null);
        values.extend_from_slice(args);
        self.command(0, encode_command(name, txn, &values));
        txn
    }

    fn next_transaction(&mut self) -> f64 {
        let txn = self.next_transaction;
        self.next_transaction += 1.0;
        txn
    }

    fn track(&mut self, pending: Pending) -> f64 {
        let txn = self.next_transaction();
        self.pending.insert(txn.to_bits(), pending);
        txn
    }

    /// A command whose reply (if the server sends one) is ignored: its transaction id is not
    /// tracked, so a `_result` for it is dropped like any unknown one.
    fn untracked_command(&mut self, stream_id: u32, name: &str, values: &[Amf0Value]) {
        let txn = self.next_transaction();
        self.command(stream_id, encode_command(name, txn, values));
    }

    fn command(&mut self, stream_id: u32, body: Bytes) {
        self.queue(csid::COMMAND, type_id::COMMAND_AMF0, stream_id, 0, body);
    }

    /// Sends a message now, or holds it until `connect` has succeeded.
    fn queue(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: Bytes) {
        if self.connected {
            self.conn.send(csid, type_id, stream_id, timestamp, payload);
        } else {
            self.held.push((
                csid,
                RawMessage {
                    timestamp,
                    type_id,
                    stream_id,
                    payload,
                },
            ));
        }
    }

    fn handle_user_control(&mut self, event: UserControl) {
        let event = match event {
            UserControl::StreamBegin(id) => ClientEvent::StreamBegin(id),
            UserControl::StreamEof(id) => ClientEvent::StreamEof(id),
            UserControl::StreamDry(id) => ClientEvent::StreamDry(id),
            // Answered by the chunk layer already; reported so a client can see keepalive.
            UserControl::PingRequest(ts) => ClientEvent::Ping(ts),
            // The rest needs nothing from a client.
            _ => return,
        };
        self.events.push_back(event);
    }

    fn handle_reply(&mut self, cmd: Command) -> Result<(), SessionError> {
        let Some(pending) = self.pending.remove(&cmd.transaction_id.to_bits()) else {
            // Replies to releaseStream, FCPublish, _checkbw, ... or to nothing we sent.
            return Ok(());
        };
        let ok = cmd.name == "_result";
        let info = cmd.arg(0).cloned().unwrap_or(Amf0Value::Null);
        match pending {
            Pending::Connect if ok => {
                self.connected = true;
                for (csid, msg) in std::mem::take(&mut self.held) {
                    self.conn
                        .send(csid, msg.type_id, msg.stream_id, msg.timestamp, msg.payload);
                }
                self.events.push_back(ClientEvent::Connected {
                    properties: cmd.command_object,
                    info,
                });
            }
            Pending::Connect => {
                self.held.clear();
                self.events.push_back(ClientEvent::ConnectFailed { info });
            }
            Pending::CreateStream if ok => {
                let stream_id = info
                    .as_f64()
                    .filter(|id| id.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(id))
                    .ok_or_else(|| {
                        SessionError::UnexpectedReply(
                            "createStream _result without a stream id".into(),
                        )
                    })?;
                self.events.push_back(ClientEvent::StreamCreated {
                    stream_id: stream_id as u32,
                });
            }
            Pending::StreamCommand(stream_id) if !ok => self.push_status(stream_id, &info),
            // Servers do not normally answer publish/play with _result; nothing to do.
            Pending::StreamCommand(_) => {}
            Pending::CreateStream | Pending::Call => {
                let mut values = Vec::with_capacity(cmd.args.len() + 1);
                values.push(cmd.command_object);
                values.extend(cmd.args);
                self.events.push_back(ClientEvent::CallResult {
                    transaction_id: cmd.transaction_id,
                    name: cmd.name,
                    values,
                });
            }
        }
        Ok(())
    }

    fn push_status(&mut self, stream_id: u32, info: &Amf0Value) {
        let field = |k: &str| {
            info.get(k)
                .and_then(Amf0Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let code = field("code");
        let started = match code.as_str() {
            code::PUBLISH_START => Some(ClientEvent::PublishStarted { stream_id }),
            code::PLAY_START => Some(ClientEvent::PlayStarted { stream_id }),
            _ => None,
        };
        self.events.push_back(ClientEvent::Status {
            stream_id,
            level: field("level"),
            code,
            description: field("description"),
        });
        self.events.extend(started);
    }
}

/// Data messages the client handles itself rather than passing on as media.
enum DataMessage {
    /// `onStatus` as a data message, with its info object.
    Status(Amf0Value),
    /// `|RtmpSampleAccess`: permission for Flash to read raw samples; meaningless here.
    SampleAccess,
    Other,
}

fn data_message(body: &[u8]) -> Result<DataMessage, SessionError> {
    let mut dec = Amf0Decoder::new(body);
    Ok(match dec.decode()?.as_str() {
        Some("onStatus") => DataMessage::Status(if dec.is_empty() {
            Amf0Value::Null
        } else {
            dec.decode()?
        }),
        Some("|RtmpSampleAccess") => DataMessage::SampleAccess,
        _ => DataMessage::Other,
    })
}

/// `@setDataFrame` followed by `payload`, unless the payload already starts with it.
fn with_set_data_frame(payload: &Bytes) -> Bytes {
    let mut prefix = BytesMut::with_capacity(payload.len() + 16);
    amf::encode(&Amf0Value::String("@setDataFrame".into()), &mut prefix);
    if payload.starts_with(&prefix) {
        return payload.clone();
    }
    prefix.extend_from_slice(payload);
    prefix.freeze()
}

impl MessageHandler for ClientSession {
    fn handle_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        match cmd.name.as_str() {
            "_result" | "_error" => self.handle_reply(cmd),
            "onStatus" => {
                // The info object is the first argument; tolerate servers that put it where
                // the command object belongs.
                let info = cmd
                    .arg(0)
                    .filter(|v| v.properties().is_some())
                    .unwrap_or(&cmd.command_object);
                self.push_status(stream_id, info);
                Ok(())
            }
            // Flash Media Server's bandwidth check: answer onBWDone with _checkbw like ffmpeg.
            "onBWDone" => {
                self.untracked_command(0, "_checkbw", &[Amf0Value::Null]);
                Ok(())
            }
            // Notifications that need nothing from us ("onFCPublish", "onFCUnpublish",
            // "onFCSubscribe", "_onbwcheck", "_onbwdone", "close", ...).
            _ => Ok(()),
        }
    }

    fn handle_media(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let (kind, payload) = match msg.type_id {
            type_id::AUDIO => (MediaKind::Audio, msg.payload.clone()),
            type_id::VIDEO => (MediaKind::Video, msg.payload.clone()),
            _ => {
                let body = command::amf0_body(&msg);
                match data_message(&body)? {
                    DataMessage::Status(info) => {
                        self.push_status(msg.stream_id, &info);
                        return Ok(());
                    }
                    DataMessage::SampleAccess => return Ok(()),
                    DataMessage::Other => match classify_data(body)? {
                        Some(kind_payload) => kind_payload,
                        None => return Ok(()),
                    },
                }
            }
        };
        let timestamp = self
            .timestamps
            .entry(msg.stream_id)
            .or_default()
            .extend(msg.timestamp);
        self.events.push_back(ClientEvent::Media {
            stream_id: msg.stream_id,
            media: Media {
                kind,
                timestamp,
                payload,
            },
        });
        Ok(())
    }
}

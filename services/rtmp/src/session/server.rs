//! The server end of an RTMP connection: answers the handshake, runs NetConnection and
//! NetStream commands, and turns publishers' messages into [`Media`] events. Decisions that need
//! the rest of the system (may this client connect, publish this name, play that stream) come
//! out as events; the driver answers them with `accept_*`/`reject_*`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::MessageHandler;
use super::connection::{ChunkConnection, Incoming};
use super::{Media, MediaKind, SessionError};
use crate::amf::{Amf0Decoder, Amf0Value};
use crate::chunk::ChunkLimits;
use crate::command::{
    self, Command, StatusLevel, caps_ex, code, encode_command, on_status, status_info,
};
use crate::handshake::{HandshakeKind, ServerHandshake};
use crate::message::{LimitType, RawMessage, UserControl, type_id};
use crate::name::{DEFAULT_MAX_NAME_LEN, check_name};
use crate::timestamp::TimestampExtender;

#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Chunk size for everything we send; announced right after connect.
    pub chunk_size: u32,
    /// Window Acknowledgement Size and Set Peer Bandwidth we announce.
    pub ack_window: u32,
    /// What a publisher may send once its publish is accepted.
    pub limits: ChunkLimits,
    /// Largest message before a publish is accepted (connect, createStream, play, ...); the
    /// bytes held in unfinished messages are capped at twice this until then.
    pub max_message_size_before_publish: u32,
    /// Message streams one connection may create.
    pub max_streams: u32,
    /// Longest app or stream name, in bytes (see [`crate::name`]).
    pub max_name_len: usize,
    /// `connect` must come this soon after the handshake...
    pub connect_timeout: Duration,
    /// ...and a publish or play this soon after `connect` (or after the last one ended).
    pub start_timeout: Duration,
    /// A peer we received nothing from for this long is pinged, and again each time this
    /// passes while it stays quiet (zero: never)...
    pub ping_interval: Duration,
    /// ...and fails with [`SessionError::IdleTimeout`] after this long (zero: never).
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            ack_window: 5_000_000,
            limits: ChunkLimits::default(),
            max_message_size_before_publish: 64 * 1024,
            max_streams: 16,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            connect_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A client's `connect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    pub transaction_id: f64,
    /// Application name with any query string removed.
    pub app: String,
    /// Query string given after the app name (or in tcUrl), kept raw for auth.
    pub query: Option<String>,
    pub tc_url: Option<String>,
    pub flash_ver: Option<String>,
    pub swf_url: Option<String>,
    pub page_url: Option<String>,
    pub object_encoding: f64,
    /// Enhanced RTMP v2 capabilities the client announced (`capsEx`; 0 when absent).
    pub caps_ex: u8,
    pub command_object: Amf0Value,
    /// Optional user arguments after the command object.
    pub args: Vec<Amf0Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishKind {
    Live,
    Record,
    Append,
}

impl PublishKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Record => "record",
            Self::Append => "append",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub stream_id: u32,
    pub name: String,
    pub query: Option<String>,
    pub kind: PublishKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayRequest {
    pub stream_id: u32,
    pub name: String,
    pub query: Option<String>,
    /// The optional arguments as the client sent them (`None`: absent), so that callbacks can
    /// report them as nginx-rtmp does. `start` is -2 live-or-recorded (the default), -1 live
    /// only, >= 0 recorded from that point.
    pub start: Option<f64>,
    pub duration: Option<f64>,
    pub reset: Option<bool>,
}

impl PlayRequest {
    /// Whether the player asked for `NetStream.Play.Reset` (the default).
    pub fn resets(&self) -> bool {
        self.reset.unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// Answer with [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`].
    Connect(ConnectRequest),
    /// Answer with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    Publish(PublishRequest),
    /// Answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    Play(PlayRequest),
    /// A message from an accepted publisher.
    Media {
        stream_id: u32,
        media: Media,
    },
    /// The publisher or player on this stream stopped (deleteStream, closeStream, FCUnpublish).
    StreamClosed {
        stream_id: u32,
    },
    Pause {
        stream_id: u32,
        paused: bool,
        position_ms: f64,
    },
    ReceiveAudio {
        stream_id: u32,
        enabled: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        enabled: bool,
    },
    /// The client sent NetConnection `close`.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Idle,
    Publishing(String),
    Playing,
}

/// What the session waits for from a peer that holds no publish or play, and until when.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    for_start: bool,
    /// Armed by the first [`ServerSession::handle_timeout`] of this phase.
    deadline: Option<Instant>,
}

impl Waiting {
    fn connect() -> Self {
        Self {
            for_start: false,
            deadline: None,
        }
    }

    fn start() -> Self {
        Self {
            for_start: true,
            deadline: None,
        }
    }
}

/// When bytes last arrived from the peer, and when the last ping of this quiet spell went out.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    since: Instant,
    pinged: Option<Instant>,
}

#[derive(Debug)]
struct StreamSlot {
    role: Role,
    timestamps: TimestampExtender,
}

pub struct ServerSession {
    config: ServerConfig,
    handshake: Option<ServerHandshake>,
    handshake_kind: Option<HandshakeKind>,
    inbuf: BytesMut,
    conn: ChunkConnection,
    events: VecDeque<ServerEvent>,
    connected: bool,
    /// A `connect` arrived (accepted or not): a second one is a protocol error.
    connect_seen: bool,
    /// The connection was refused: no more input is decoded and no more events come out.
    refused: bool,
    /// A `connect`, `publish` or `play` awaits the driver's answer: input after it is decoded
    /// under the answer's rules (connected or not, publisher's message limits or not, the
    /// stream still there).
    held: bool,
    /// `process` stopped at a held decision with input left over.
    stalled: bool,
    waiting: Option<Waiting>,
    /// Set by [`ServerSession::note_received`] (or the first `handle_timeout` after the
    /// handshake); drives pings and the idle timeout once the handshake is done.
    quiet: Option<Quiet>,
    object_encoding: f64,
    /// `capsEx` of the accepted `connect`.
    caps_ex: u8,
    next_stream_id: u32,
    streams: HashMap<u32, StreamSlot>,
}

impl ServerSession {
    /// `random` seeds the handshake (see [`ServerHandshake::new`]); `epoch` is the server's
    /// uptime in milliseconds.
    pub fn new(config: ServerConfig, random: &[u8], epoch: u32) -> Self {
        Self {
            config,
            handshake: Some(ServerHandshake::new(random, epoch)),
            handshake_kind: None,
            // Grown by the driver as needed: a player sends little, a publisher a lot.
            inbuf: BytesMut::new(),
            conn: ChunkConnection::new(before_publish(&config)),
            events: VecDeque::new(),
            connected: false,
            connect_seen: false,
            refused: false,
            held: false,
            stalled: false,
            waiting: None,
            quiet: None,
            object_encoding: 0.0,
            caps_ex: 0,
            next_stream_id: 1,
            streams: HashMap::new(),
        }
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
        if let Some(hs) = &mut self.handshake {
            if !hs.read(&mut self.inbuf, &mut self.conn.out)? {
                return Ok(());
            }
            self.handshake_kind = hs.kind();
            self.handshake = None;
            self.waiting = Some(Waiting::connect());
        }
        self.stalled = false;
        while !self.refused {
            if self.held {
                self.stalled = !self.inbuf.is_empty();
                break;
            }
            let Some(incoming) = self.conn.next(&mut self.inbuf)? else {
                break;
            };
            match incoming {
                Incoming::Message(msg) => self.handle_message(msg)?,
                Incoming::UserControl(_) => {}
            }
        }
        Ok(())
    }

    /// Whether input waits that an answered decision lets [`process`](Self::process) go on
    /// with: call `process` again after answering events while this is true.
    pub fn has_held_input(&self) -> bool {
        self.stalled && !self.held && !self.refused
    }

    /// Tells the session that bytes arrived from the peer at `now` (call on every read that
    /// got some): the ping and idle timers count from the last of these.
    pub fn note_received(&mut self, now: Instant) {
        self.quiet = Some(Quiet {
            since: now,
            pinged: None,
        });
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if at all: the
    /// earliest of the deadline for `connect` (or for a publish or play), the next ping and
    /// the idle timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.waiting.and_then(|w| w.deadline);
        [deadline, self.next_ping(), self.idle_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Call with the current time after processing input and answering events, and when the
    /// [`poll_timeout`](Self::poll_timeout) deadline passes. The first call in a phase (after
    /// the handshake, after `connect`, after the last publish or play ended) arms that phase's
    /// deadline at `now`; once it has passed, this fails and the connection should close.
    /// A ping is queued when one is due; after `idle_timeout` with nothing received this fails
    /// with [`SessionError::IdleTimeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.check_deadline(now)?;
        self.check_quiet(now)
    }

    /// The connect, publish or play deadline of [`handle_timeout`](Self::handle_timeout).
    fn check_deadline(&mut self, now: Instant) -> Result<(), SessionError> {
        let Some(waiting) = self.waiting.as_mut() else {
            return Ok(());
        };
        let limit = if waiting.for_start {
            self.config.start_timeout
        } else {
            self.config.connect_timeout
        };
        match waiting.deadline {
            None => waiting.deadline = Some(now + limit),
            Some(deadline) if now >= deadline => {
                return Err(if waiting.for_start {
                    SessionError::StartTimeout(limit)
                } else {
                    SessionError::ConnectTimeout(limit)
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Pings a quiet peer and gives up on a silent one. The timers start at the last
    /// [`note_received`](Self::note_received), or here if there was none since the handshake.
    fn check_quiet(&mut self, now: Instant) -> Result<(), SessionError> {
        if !self.is_handshake_done() {
            return Ok(());
        }
        let quiet = *self.quiet.get_or_insert(Quiet {
            since: now,
            pinged: None,
        });
        if self.idle_deadline().is_some_and(|idle| now >= idle) {
            return Err(SessionError::IdleTimeout(self.config.idle_timeout));
        }
        if self.next_ping().is_some_and(|ping| now >= ping) {
            self.quiet = Some(Quiet {
                pinged: Some(now),
                ..quiet
            });
            let silent = now.saturating_duration_since(quiet.since);
            self.ping(silent.as_millis() as u32);
        }
        Ok(())
    }

    /// The quiet spell's start, once the handshake is done.
    fn quiet(&self) -> Option<Quiet> {
        self.quiet.filter(|_| self.is_handshake_done())
    }

    fn next_ping(&self) -> Option<Instant> {
        let every = self.config.ping_interval;
        let quiet = self.quiet().filter(|_| !every.is_zero())?;
        Some(quiet.pinged.unwrap_or(quiet.since) + every)
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let limit = self.config.idle_timeout;
        let quiet = self.quiet().filter(|_| !limit.is_zero())?;
        Some(quiet.since + limit)
    }

    /// Refuses `name` (an app or stream name, without its query) if it breaks the name rule.
    fn check_name(&self, what: &'static str, name: &str) -> Result<(), SessionError> {
        check_name(name, self.config.max_name_len)
            .map_err(|error| SessionError::BadName { what, error })
    }

    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Which handshake the client used (simple, or digest with its scheme), once done.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.handshake_kind
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        // A command's room is not kept: a player sees a handful of them in its life, and
        // thousands of players would each hold a queue for them. Media events come in a
        // stream; their queue is reused.
        if self.events.is_empty() && !matches!(event, None | Some(ServerEvent::Media { .. })) {
            self.events = VecDeque::new();
        }
        event
    }

    /// Bytes to send, if any. The buffer goes with them rather than staying for the next
    /// output: a session sends little after its handshake (3 KiB), and keeping that room
    /// would cost every player as much.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.conn.out.is_empty()).then(|| std::mem::take(&mut self.conn.out).freeze())
    }

    /// Room the session holds on to between calls: its output buffer's (all of its
    /// allocation, as the next output would reuse it) and its event queue's, in entries.
    #[cfg(test)]
    pub(crate) fn room_kept(&mut self) -> (usize, usize) {
        self.conn.out.reserve(1);
        (self.conn.out.capacity(), self.events.capacity())
    }

    pub fn out_chunk_size(&self) -> u32 {
        self.conn.out_chunk_size()
    }

    fn on_connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        let prop = |k: &str| {
            cmd.command_object
                .get(k)
                .and_then(Amf0Value::as_str)
                .map(str::to_owned)
        };
        let (app, mut query) = command::split_query(prop("app").as_deref().unwrap_or_default());
        let tc_url = prop("tcUrl");
        if query.is_none() {
            query = tc_url
                .as_deref()
                .and_then(|u| u.split_once('?'))
                .map(|(_, q)| q.to_owned());
        }
        let object_encoding = cmd
            .command_object
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        // A number in AMF0; only the low bits mean anything today.
        let caps_ex = cmd
            .command_object
            .get("capsEx")
            .and_then(Amf0Value::as_f64)
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map_or(0, |c| (c as u64 & 0xFF) as u8);
        let app = app.trim_end_matches('/');
        if let Err(e) = self.check_name("app", app) {
            self.refuse(cmd.transaction_id, "bad app name");
            return Err(e);
        }
        self.held = true;
        self.events.push_back(ServerEvent::Connect(ConnectRequest {
            transaction_id: cmd.transaction_id,
            app: app.to_owned(),
            query,
            tc_url,
            flash_ver: prop("flashVer"),
            swf_url: prop("swfUrl"),
            page_url: prop("pageUrl"),
            object_encoding,
            caps_ex,
            command_object: cmd.command_object,
            args: cmd.args,
        }));
        Ok(())
    }

    /// Sends `NetConnection.Connect.Rejected` and stops: nothing more is decoded and no more
    /// events come out.
    fn refuse(&mut self, transaction_id: f64, description: &str) {
        let info = status_info(StatusLevel::Error, code::CONNECT_REJECTED, description);
        self.conn.send_command(
            0,
            encode_command("_error", transaction_id, &[Amf0Value::Null, info]),
        );
        self.refused = true;
        self.held = false;
        self.events.clear();
    }

    /// A publish or play must name a stream this connection created, and a valid name;
    /// otherwise the client gets `code` and the session fails.
    fn check_stream(
        &mut self,
        command: &'static str,
        stream_id: u32,
        name: &str,
        bad_name: &str,
    ) -> Result<(), SessionError> {
        let failed = if !self.streams.contains_key(&stream_id) {
            Err(SessionError::UnknownStream { command, stream_id })
        } else {
            self.check_name("stream", name)
        };
        if let Err(e) = &failed {
            let code = match e {
                SessionError::BadName { .. } => bad_name,
                _ if command == "publish" => code::PUBLISH_DENIED,
                _ => code::PLAY_FAILED,
            };
            // The description names the problem, never the name.
            self.send_status(stream_id, StatusLevel::Error, code, &e.to_string());
        }
        failed
    }

    fn on_publish(&mut self, stream_id: u32, cmd: &Command) -> Result<(), SessionError> {
        let (name, query) = command::split_query(cmd.arg_str(0).unwrap_or_default());
        self.check_stream("publish", stream_id, &name, code::PUBLISH_BAD_NAME)?;
        let kind = match cmd.arg_str(1) {
            Some("record") => PublishKind::Record,
            Some("append") => PublishKind::Append,
            _ => PublishKind::Live,
        };
        self.held = true;
        self.events.push_back(ServerEvent::Publish(PublishRequest {
            stream_id,
            name,
            query,
            kind,
        }));
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, cmd: &Command) -> Result<(), SessionError> {
        let (name, query) = command::split_query(cmd.arg_str(0).unwrap_or_default());
        self.check_stream("play", stream_id, &name, code::PLAY_BAD_NAME)?;
        self.held = true;
        let reset = match cmd.arg(3) {
            Some(Amf0Value::Boolean(b)) => Some(*b),
            Some(v) => Some(v.as_f64().is_some_and(|n| n != 0.0)),
            None => None,
        };
        self.events.push_back(ServerEvent::Play(PlayRequest {
            stream_id,
            name,
            query,
            start: cmd.arg_f64(1),
            duration: cmd.arg_f64(2),
            reset,
        }));
        Ok(())
    }

    /// play2 (stream switching) carries a NetStreamPlayOptions object; for live streams it is a
    /// play of `streamName`.
    fn on_play2(&mut self, stream_id: u32, cmd: &Command) -> Result<(), SessionError> {
        let opts = cmd.arg(0);
        let get_str = |k| opts.and_then(|o| o.get(k)).and_then(Amf0Value::as_str);
        let get_f64 = |k| opts.and_then(|o| o.get(k)).and_then(Amf0Value::as_f64);
        let (name, query) = command::split_query(get_str("streamName").unwrap_or_default());
        self.check_stream("play2", stream_id, &name, code::PLAY_BAD_NAME)?;
        self.held = true;
        self.events.push_back(ServerEvent::Play(PlayRequest {
            stream_id,
            name,
            query,
            start: get_f64("start"),
            duration: get_f64("len"),
            reset: None,
        }));
        Ok(())
    }

    /// Ends what the stream was doing; for a publisher this also says Unpublish.Success.
    fn stop_stream(&mut self, stream_id: u32) {
        let Some(slot) = self.streams.get_mut(&stream_id) else {
            return;
        };
        let role = std::mem::replace(&mut slot.role, Role::Idle);
        match role {
            Role::Idle => return,
            Role::Publishing(name) => {
                let info = status_info(
                    StatusLevel::Status,
                    code::UNPUBLISH_SUCCESS,
                    &format!("{name} is now unpublished."),
                );
                self.conn.send_command(stream_id, on_status(info));
            }
            Role::Playing => {}
        }
        self.events
            .push_back(ServerEvent::StreamClosed { stream_id });
        self.wait_if_idle();
    }

    /// With no publish or play left, the peer has `start_timeout` to begin another.
    fn wait_if_idle(&mut self) {
        if self.waiting.is_none() && self.streams.values().all(|s| s.role == Role::Idle) {
            self.waiting = Some(Waiting::start());
        }
    }

    fn send_result(&mut self, txn: f64, props: Amf0Value, info: Amf0Value) {
        self.conn
            .send_command(0, encode_command("_result", txn, &[props, info]));
    }

    /// Sends `onStatus` on a message stream.
    pub fn send_status(
        &mut self,
        stream_id: u32,
        level: StatusLevel,
        code: &str,
        description: &str,
    ) {
        self.conn
            .send_command(stream_id, on_status(status_info(level, code, description)));
    }

    pub fn accept_connect(&mut self, req: &ConnectRequest) {
        if self.refused {
            return;
        }
        self.connected = true;
        self.held = false;
        self.waiting = Some(Waiting::start());
        self.object_encoding = req.object_encoding;
        self.caps_ex = req.caps_ex & caps_ex::RECONNECT;
        self.conn.send_window_ack_size(self.config.ack_window);
        self.conn
            .send_peer_bandwidth(self.config.ack_window, LimitType::Dynamic);
        self.conn.set_out_chunk_size(self.config.chunk_size);
        let mut props = vec![
            ("fmsVer", Amf0Value::String("FMS/3,0,1,123".into())),
            ("capabilities", Amf0Value::Number(31.0)),
        ];
        if req.caps_ex != 0 {
            // Enhanced RTMP v2: what of the client's capsEx the server supports.
            props.push(("capsEx", Amf0Value::Number(f64::from(self.caps_ex))));
        }
        let props = Amf0Value::object(props);
        let info = Amf0Value::object([
            ("level", Amf0Value::String("status".into())),
            ("code", Amf0Value::String(code::CONNECT_SUCCESS.into())),
            (
                "description",
                Amf0Value::String("Connection succeeded.".into()),
            ),
            ("objectEncoding", Amf0Value::Number(req.object_encoding)),
        ]);
        self.send_result(req.transaction_id, props, info);
    }

    /// Asks the client to connect again (Enhanced RTMP v2 Reconnect Request), to `tc_url` if
    /// given, else where it is; `false` (and nothing sent) when its `connect` did not announce
    /// that it can.
    pub fn request_reconnect(&mut self, tc_url: Option<&str>, description: &str) -> bool {
        if !self.connected || self.caps_ex & caps_ex::RECONNECT == 0 {
            return false;
        }
        let mut info = vec![
            ("level", Amf0Value::String("status".into())),
            (
                "code",
                Amf0Value::String(code::CONNECT_RECONNECT_REQUEST.into()),
            ),
            ("description", Amf0Value::String(description.into())),
        ];
        if let Some(url) = tc_url {
            info.push(("tcUrl", Amf0Value::String(url.into())));
        }
        self.conn
            .send_command(0, on_status(Amf0Value::object(info)));
        true
    }

    /// Refuses the connection; the driver should close it after sending the output.
    /// Events already queued are dropped and nothing more is decoded.
    pub fn reject_connect(&mut self, req: &ConnectRequest, description: &str) {
        self.refuse(req.transaction_id, description);
    }

    /// Raises the message limits to the publisher's. Does nothing if the stream was deleted
    /// meanwhile.
    pub fn accept_publish(&mut self, req: &PublishRequest) {
        self.held = false;
        let Some(slot) = self.streams.get_mut(&req.stream_id) else {
            return;
        };
        slot.role = Role::Publishing(req.name.clone());
        self.waiting = None;
        self.conn.set_limits(self.config.limits);
        self.conn
            .send_user_control(UserControl::StreamBegin(req.stream_id));
        self.send_status(
            req.stream_id,
            StatusLevel::Status,
            code::PUBLISH_START,
            &format!("{} is now published.", req.name),
        );
    }

    /// Refuses a publish with a status `code` such as [`code::PUBLISH_BAD_NAME`].
    pub fn reject_publish(&mut self, req: &PublishRequest, code: &str, description: &str) {
        self.held = false;
        self.send_status(req.stream_id, StatusLevel::Error, code, description);
    }

    /// Starts playback on `req.stream_id`: StreamBegin, Play.Reset (if asked), Play.Start and
    /// `|RtmpSampleAccess`, in the order Flash Media Server sends them. FMS's data message
    /// `onStatus(NetStream.Data.Start)` is left out: ffmpeg's FLV demuxer turns it into a bogus
    /// data stream. Media then goes out through the driver's fan-out path, on this stream id.
    /// Only on a stream this connection created: does nothing if it was deleted meanwhile (a
    /// viewer on an unknown id would cost a private encoding of every frame).
    pub fn accept_play(&mut self, req: &PlayRequest) {
        self.held = false;
        let Some(slot) = self.streams.get_mut(&req.stream_id) else {
            return;
        };
        slot.role = Role::Playing;
        self.waiting = None;
        let id = req.stream_id;
        self.conn.send_user_control(UserControl::StreamBegin(id));
        if req.resets() {
            self.send_status(
                id,
                StatusLevel::Status,
                code::PLAY_RESET,
                &format!("Playing and resetting {}.", req.name),
            );
        }
        self.send_status(
            id,
            StatusLevel::Status,
            code::PLAY_START,
            &format!("Started playing {}.", req.name),
        );
        let access = encode_command_values(&[
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ]);
        self.conn.send_data(id, access);
    }

    pub fn reject_play(&mut self, req: &PlayRequest, code: &str, description: &str) {
        self.held = false;
        self.send_status(req.stream_id, StatusLevel::Error, code, description);
    }

    /// Tells a waiting or continuing player that a publisher started on its stream.
    pub fn notify_publish(&mut self, stream_id: u32, name: &str) {
        self.conn
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            StatusLevel::Status,
            code::PLAY_PUBLISH_NOTIFY,
            &format!("{name} is now published."),
        );
    }

    /// Tells a player its publisher stopped; the player stays connected for a republish.
    pub fn notify_unpublish(&mut self, stream_id: u32, name: &str) {
        self.send_status(
            stream_id,
            StatusLevel::Status,
            code::PLAY_UNPUBLISH_NOTIFY,
            &format!("{name} is now unpublished."),
        );
        self.conn
            .send_user_control(UserControl::StreamEof(stream_id));
    }

    /// Sends a ping; players answer with a PingResponse, which keeps idle detection honest.
    pub fn ping(&mut self, timestamp: u32) {
        self.conn
            .send_user_control(UserControl::PingRequest(timestamp));
    }
}

/// The chunk limits until a publish is accepted: small messages, little held in unfinished ones.
fn before_publish(config: &ServerConfig) -> ChunkLimits {
    let size = config
        .max_message_size_before_publish
        .min(config.limits.max_message_size);
    ChunkLimits {
        max_message_size: size,
        max_pending_bytes: (2 * size as usize).min(config.limits.max_pending_bytes),
        ..config.limits
    }
}

fn encode_command_values(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    crate::amf::encode_all(values, &mut out);
    out.freeze()
}

/// Sorts a data message into metadata or other data. `@setDataFrame` is stripped so viewers
/// receive `onMetaData` as Flash Media Server sends it; `@clearDataFrame` is dropped.
pub(super) fn classify_data(body: Bytes) -> Result<Option<(MediaKind, Bytes)>, SessionError> {
    let mut dec = Amf0Decoder::new(&body);
    let first = dec.decode()?;
    match first.as_str() {
        Some("@setDataFrame") => {
            let consumed = body.len() - dec.remaining().len();
            let rest = body.slice(consumed..);
            let mut peek = Amf0Decoder::new(&rest);
            let kind = match peek.decode()?.as_str() {
                Some("onMetaData") => MediaKind::Metadata,
                _ => MediaKind::Data,
            };
            Ok(Some((kind, rest)))
        }
        Some("@clearDataFrame") => Ok(None),
        Some("onMetaData") => Ok(Some((MediaKind::Metadata, body))),
        _ => Ok(Some((MediaKind::Data, body))),
    }
}

impl MessageHandler for ServerSession {
    fn check_command(&self, name: &str) -> Result<(), SessionError> {
        if name == "connect" {
            if self.connect_seen {
                return Err(SessionError::DuplicateConnect);
            }
        } else if !self.connected {
            return Err(SessionError::NotConnected(name.to_owned()));
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => {
                self.connect_seen = true;
                self.on_connect(cmd)?;
            }
            "createStream" => {
                if self.streams.len() as u32 >= self.config.max_streams {
                    return Err(SessionError::TooManyStreams(self.config.max_streams));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.insert(
                    id,
                    StreamSlot {
                        role: Role::Idle,
                        timestamps: Default::default(),
                    },
                );
                self.send_result(txn, Amf0Value::Null, Amf0Value::Number(f64::from(id)));
            }
            "releaseStream" | "FCSubscribe" | "_checkbw" | "getStreamLength" => {
                let value = if cmd.name == "getStreamLength" {
                    Amf0Value::Number(0.0)
                } else {
                    Amf0Value::Undefined
                };
                self.send_result(txn, Amf0Value::Null, value);
            }
            "FCPublish" => {
                let name = cmd.arg_str(0).unwrap_or_default().to_owned();
                let info = status_info(StatusLevel::Status, code::PUBLISH_START, &name);
                self.conn.send_command(
                    0,
                    encode_command("onFCPublish", 0.0, &[Amf0Value::Null, info]),
                );
                self.send_result(txn, Amf0Value::Null, Amf0Value::Undefined);
            }
            "FCUnpublish" => {
                let (name, _) = command::split_query(cmd.arg_str(0).unwrap_or_default());
                let info = status_info(StatusLevel::Status, code::UNPUBLISH_SUCCESS, &name);
                self.conn.send_command(
                    0,
                    encode_command("onFCUnpublish", 0.0, &[Amf0Value::Null, info]),
                );
                self.send_result(txn, Amf0Value::Null, Amf0Value::Undefined);
                let publishing = self
                    .streams
                    .iter()
                    .find(|(_, s)| s.role == Role::Publishing(name.clone()))
                    .map(|(id, _)| *id);
                if let Some(id) = publishing {
                    self.stop_stream(id);
                }
            }
            "publish" => self.on_publish(stream_id, &cmd)?,
            "play" => self.on_play(stream_id, &cmd)?,
            "play2" => self.on_play2(stream_id, &cmd)?,
            "deleteStream" => {
                let id = cmd.arg_f64(0).map_or(stream_id, |v| v as u32);
                self.stop_stream(id);
                self.streams.remove(&id);
                self.wait_if_idle();
            }
            "closeStream" => self.stop_stream(stream_id),
            "receiveAudio" | "receiveVideo" => {
                let enabled = cmd.arg(0).and_then(Amf0Value::as_bool).unwrap_or(true);
                self.events.push_back(if cmd.name == "receiveAudio" {
                    ServerEvent::ReceiveAudio { stream_id, enabled }
                } else {
                    ServerEvent::ReceiveVideo { stream_id, enabled }
                });
            }
            "pause" | "pauseRaw" => {
                let paused = cmd.arg(0).and_then(Amf0Value::as_bool).unwrap_or(true);
                let position_ms = cmd.arg_f64(1).unwrap_or(0.0);
                let (code, what) = if paused {
                    (code::PAUSE_NOTIFY, "Paused live")
                } else {
                    (code::UNPAUSE_NOTIFY, "Unpaused live")
                };
                self.send_status(stream_id, StatusLevel::Status, code, what);
                self.events.push_back(ServerEvent::Pause {
                    stream_id,
                    paused,
                    position_ms,
                });
            }
            "close" => self.events.push_back(ServerEvent::Close),
            // Replies and notifications a client may send us; none needs an answer.
            "_result" | "_error" | "onStatus" | "onBWDone" | "_onbwcheck" | "_onbwdone"
            | "seek" => {}
            other => {
                if txn > 0.0 {
                    let info = status_info(
                        StatusLevel::Error,
                        code::CALL_FAILED,
                        &format!("Method not found ({other})"),
                    );
                    self.conn
                        .send_command(0, encode_command("_error", txn, &[Amf0Value::Null, info]));
                }
            }
        }
        Ok(())
    }

    fn handle_media(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let Some(slot) = self.streams.get_mut(&msg.stream_id) else {
            return Ok(());
        };
        if !matches!(slot.role, Role::Publishing(_)) {
            return Ok(());
        }
        let (kind, payload) = match msg.type_id {
            type_id::AUDIO => (MediaKind::Audio, msg.payload.clone()),
            type_id::VIDEO => (MediaKind::Video, msg.payload.clone()),
            _ => match classify_data(command::amf0_body(&msg))? {
                Some(kind_payload) => kind_payload,
                None => return Ok(()),
            },
        };
        let timestamp = slot.timestamps.extend(msg.timestamp);
        self.events.push_back(ServerEvent::Media {
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

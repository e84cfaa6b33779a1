//! One client connection: feeds the socket into the session, answers the session's requests
//! against the hub, and writes a viewer's frames.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use liverelay_hub::{Hub, HubError, Publisher, Viewer, ViewerItem};
use liverelay_rtmp::command::{StatusLevel, code};
use liverelay_rtmp::name::{NameError, check_name};
use liverelay_rtmp::session::{ConnectRequest, PlayRequest, PublishRequest};
use liverelay_rtmp::{MediaKind, ServerEvent, ServerSession, SessionError};
use liverelay_types::StreamId;
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument, Span, info, info_span, warn};

use crate::access::{Access, Action, Admission, ClientInfo, StreamAttempt};
use crate::config::RtmpServerConfig;
use crate::drain::{Phase, reached};
use crate::listener::Services;
use crate::play_budget::PlayBudget;
use crate::sessions::{Registered, SessionInfo, SessionRole, Sessions};
use crate::write::{Transport, try_write_all_vectored, write_all_vectored};
use futures::future::BoxFuture;
use liverelay_metrics::{KindLabel, Metrics, ReasonLabel};
use liverelay_types::{Refusal, StreamPolicy, Ticket};

/// Free receive space kept for a publisher's and a player's reads.
const PUBLISHER_READ: usize = 64 * 1024;
const PLAYER_READ: usize = 1024;
/// Batch containers larger than this (in entries) are shrunk after use.
const SHRINK_ABOVE: usize = 64;

/// The first byte of a TLS ClientHello (record type: handshake); an RTMP C0 is 3.
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// Random bytes the handshake needs (S1 and S2 bodies).
const HANDSHAKE_RANDOM: usize = 3072;

/// Why a connection ended; logged once per connection.
#[derive(Debug)]
pub enum CloseReason {
    PeerClosed,
    ClientClose,
    HandshakeTimeout,
    IdleTimeout,
    WriteTimeout,
    Io(std::io::Error),
    Protocol(SessionError),
    /// No `connect`, or no publish or play, within its deadline (the session's timers).
    Deadline(SessionError),
    Refused(&'static str),
    /// The client speaks another protocol on this port (TLS on the plain port, plain RTMP on
    /// the RTMPS port).
    WrongProtocol(&'static str),
    /// The TLS handshake failed.
    Tls(std::io::Error),
    /// The publish or play was withdrawn (lease lost, key revoked, dropped by an operator).
    Revoked(&'static str, String),
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::ClientClose => f.write_str("client sent close"),
            Self::HandshakeTimeout => f.write_str("handshake timed out"),
            Self::IdleTimeout => f.write_str("nothing received within the idle timeout"),
            Self::WriteTimeout => f.write_str("peer did not read within the idle timeout"),
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Deadline(e) => write!(f, "{e}"),
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::WrongProtocol(why) => write!(f, "wrong protocol: {why}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Revoked(what, why) => write!(f, "{what} revoked: {why}"),
            Self::Shutdown => f.write_str("server shutting down (drain grace period over)"),
        }
    }
}

impl CloseReason {
    /// Why the session's `handle_timeout` failed: idle keeps its own reason.
    fn timer(e: SessionError) -> Self {
        match e {
            SessionError::IdleTimeout(_) => Self::IdleTimeout,
            e => Self::Deadline(e),
        }
    }
}

struct Publishing {
    stream_id: u32,
    publisher: Publisher,
    /// The policy's and access's tickets, in that order.
    _ticket: Box<dyn Ticket>,
    /// The tickets' revocation, if they can be revoked; made once and polled in place.
    revoked: Option<BoxFuture<'static, String>>,
    kicked: oneshot::Receiver<String>,
    _session: Registered,
    _span: Span,
}

struct Playing {
    stream_id: u32,
    name: String,
    viewer: Viewer,
    _ticket: Box<dyn Ticket>,
    revoked: Option<BoxFuture<'static, String>>,
    kicked: oneshot::Receiver<String>,
    _session: Registered,
    _span: Span,
    paused: bool,
    audio: bool,
    video: bool,
    /// Frames known to be waiting beyond the last batch.
    pending: u64,
    /// When this viewer was last written to, and (while coalescing) until when new frames
    /// wait for the next write.
    last_pump: tokio::time::Instant,
    held_until: Option<tokio::time::Instant>,
}

pub struct Connection<S> {
    socket: S,
    id: u64,
    peer: SocketAddr,
    config: Arc<RtmpServerConfig>,
    hub: Hub,
    policy: Arc<dyn StreamPolicy>,
    access: Arc<dyn Access>,
    sessions: Sessions,
    metrics: Arc<Metrics>,
    phase: watch::Receiver<Phase>,
    session: ServerSession,
    /// Set once `connect` is accepted; its app may differ from the requested one.
    client: Option<Arc<ClientInfo>>,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    closing: Option<CloseReason>,
    plays: PlayBudget,
    out: VecDeque<Bytes>,
    items: Vec<ViewerItem>,
}

enum Wake {
    Read(std::io::Result<usize>),
    Viewer,
    Revoked(&'static str, String),
    /// A coalescing window ended.
    Held,
    /// The session's timer (`connect` or publish/play deadline, ping, idle) is due.
    Deadline,
    Closing,
}

impl<S: Transport> Connection<S> {
    pub fn new(
        socket: S,
        (id, peer): (u64, SocketAddr),
        config: Arc<RtmpServerConfig>,
        services: Services,
        phase: watch::Receiver<Phase>,
        started: Instant,
    ) -> Self {
        let mut random = vec![0u8; HANDSHAKE_RANDOM];
        rand::fill(&mut random[..]);
        let epoch = started.elapsed().as_millis() as u32;
        let session = ServerSession::new(config.session, &random, epoch);
        let plays = PlayBudget::new(config.max_plays_per_connection, config.max_plays_per_minute);
        Self {
            socket,
            id,
            peer,
            config,
            hub: services.hub,
            policy: services.policy,
            access: services.access,
            sessions: services.sessions,
            metrics: services.metrics,
            phase,
            session,
            client: None,
            publishing: None,
            playing: None,
            closing: None,
            plays,
            out: VecDeque::new(),
            items: Vec::new(),
        }
    }

    pub async fn run(mut self) -> CloseReason {
        let timeout = self.config.handshake_timeout;
        let (failure, with_c2) = match tokio::time::timeout(timeout, self.handshake()).await {
            Err(_) => (Some(CloseReason::HandshakeTimeout), Ok(())),
            Ok(Err(reason)) => (Some(reason), Ok(())),
            Ok(Ok(with_c2)) => (None, with_c2),
        };
        if let Some(reason) = failure {
            let label = match &reason {
                CloseReason::HandshakeTimeout => "timeout",
                CloseReason::PeerClosed => "closed",
                CloseReason::Io(_) => "io",
                CloseReason::Protocol(SessionError::Handshake(_)) => "bad_version",
                CloseReason::WrongProtocol(_) => "wrong_protocol",
                _ => "protocol",
            };
            self.metrics
                .handshake_failures
                .get_or_create(&ReasonLabel { reason: label })
                .inc();
            return reason;
        }
        // Chunks that arrived together with C2 have been decoded already: answer them (an
        // error in them is the connection's, not the handshake's).
        if let Err(reason) = self.answer_input(with_c2).await {
            let _ = self.flush().await;
            return reason;
        }
        // Made once: re-creating it on every wakeup would re-register with a watch channel
        // every connection shares.
        let mut phase = self.phase.clone();
        let closing = async move { reached(&mut phase, Phase::Closing).await };
        tokio::pin!(closing);
        loop {
            if let Err(reason) = self.flush().await {
                return reason;
            }
            if let Some(reason) = self.closing.take() {
                return reason;
            }
            if self
                .playing
                .as_ref()
                .is_some_and(|p| p.pending > 0 && !p.paused)
            {
                if let Err(reason) = self.pump_viewer().await {
                    return reason;
                }
                continue;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let wake = {
                // A publisher reads in large pieces; a player only receives acks and commands,
                // and keeping its buffer small keeps thousands of players cheap.
                let room = if self.publishing.is_some() {
                    PUBLISHER_READ
                } else {
                    PLAYER_READ
                };
                let recv = self.session.recv_buffer();
                if recv.capacity() - recv.len() < room / 4 {
                    recv.reserve(room);
                }
                // Branches with nothing to wait for are disabled, not polled: this select runs
                // once per frame per player.
                let (viewer, held, play_revoked, play_kicked) = match self.playing.as_mut() {
                    Some(p) => (
                        (!p.paused && p.held_until.is_none()).then_some(&mut p.viewer),
                        p.held_until,
                        p.revoked.as_mut(),
                        Some(&mut p.kicked),
                    ),
                    None => (None, None, None, None),
                };
                let (pub_revoked, pub_kicked) = match self.publishing.as_mut() {
                    Some(p) => (p.revoked.as_mut(), Some(&mut p.kicked)),
                    None => (None, None),
                };
                let on = (
                    viewer.is_some(),
                    held.is_some(),
                    pub_revoked.is_some(),
                    pub_kicked.is_some(),
                    play_revoked.is_some(),
                    play_kicked.is_some(),
                );
                tokio::select! {
                    () = &mut closing => Wake::Closing,
                    r = self.socket.read_buf(recv) => Wake::Read(r),
                    _ = async { viewer.expect("enabled").changed().await }, if on.0 => Wake::Viewer,
                    () = async { tokio::time::sleep_until(held.expect("enabled")).await }, if on.1 => Wake::Held,
                    why = async { pub_revoked.expect("enabled").await }, if on.2 => Wake::Revoked("publish", why),
                    why = async { kick_reason(pub_kicked.expect("enabled").await) }, if on.3 => Wake::Revoked("publish", why),
                    why = async { play_revoked.expect("enabled").await }, if on.4 => Wake::Revoked("play", why),
                    why = async { kick_reason(play_kicked.expect("enabled").await) }, if on.5 => Wake::Revoked("play", why),
                    () = async { tokio::time::sleep_until(deadline.expect("enabled")).await }, if deadline.is_some() => Wake::Deadline,
                }
            };
            let step = match wake {
                Wake::Read(r) => self.on_read(r).await,
                Wake::Viewer => self.on_viewer_changed().await,
                Wake::Held => self.pump_viewer().await,
                Wake::Deadline => self
                    .session
                    .handle_timeout(Instant::now())
                    .map_err(CloseReason::timer),
                Wake::Revoked(what, why) => Err(CloseReason::Revoked(what, why)),
                Wake::Closing => {
                    self.say_goodbye();
                    Err(CloseReason::Shutdown)
                }
            };
            if let Err(reason) = step {
                // Whatever the session queued (an _error, a status) still goes out first.
                let _ = self.flush().await;
                return reason;
            }
        }
    }

    /// Tells the client the server is going away: a player hears that its stream ended (players
    /// and load balancers then reconnect to another pod), everyone gets
    /// NetConnection.Connect.Closed.
    fn say_goodbye(&mut self) {
        if let Some(p) = &self.playing {
            self.session.notify_unpublish(p.stream_id, &p.name);
        }
        self.session.send_status(
            0,
            StatusLevel::Status,
            code::CONNECT_CLOSED,
            "server shutting down",
        );
    }

    /// Runs the handshake; returns how decoding what came after C2 in the same read went.
    async fn handshake(&mut self) -> Result<Result<(), SessionError>, CloseReason> {
        let mut first_read = true;
        while !self.session.is_handshake_done() {
            let recv = self.session.recv_buffer();
            if recv.capacity() - recv.len() < 2048 {
                // C0+C1 is 1537 bytes, C2 1536: one read each.
                recv.reserve(4096);
            }
            let n = self
                .socket
                .read_buf(self.session.recv_buffer())
                .await
                .map_err(CloseReason::Io)?;
            if n == 0 {
                return Err(CloseReason::PeerClosed);
            }
            // Checked on the first read only: later the buffer starts mid-handshake.
            let first = std::mem::take(&mut first_read);
            if first && !S::ENCRYPTED && self.session.recv_buffer().first() == Some(&TLS_HANDSHAKE)
            {
                return Err(CloseReason::WrongProtocol(
                    "TLS client on the plain RTMP port (use the RTMPS port)",
                ));
            }
            let result = self.session.process();
            if self.session.is_handshake_done() {
                self.flush().await?;
                self.session.note_received(Instant::now());
                return Ok(result);
            }
            result.map_err(CloseReason::Protocol)?;
            self.flush().await?;
        }
        Ok(Ok(()))
    }

    /// Decodes what was received and answers the session's events; input the session held
    /// back until a decision (connect, publish) is decoded once it is answered. Then arms or
    /// checks the session's deadline.
    async fn process_input(&mut self) -> Result<(), CloseReason> {
        let result = self.session.process();
        self.answer_input(result).await
    }

    /// [`process_input`](Self::process_input) after the session's `process` gave `result`.
    async fn answer_input(
        &mut self,
        mut result: Result<(), SessionError>,
    ) -> Result<(), CloseReason> {
        loop {
            // Events decoded before a protocol error are still acted on.
            self.handle_events().await;
            result.map_err(CloseReason::Protocol)?;
            if self.closing.is_some() || !self.session.has_held_input() {
                break;
            }
            result = self.session.process();
        }
        self.session
            .handle_timeout(Instant::now())
            .map_err(CloseReason::timer)
    }

    async fn on_read(&mut self, r: std::io::Result<usize>) -> Result<(), CloseReason> {
        match r {
            Ok(0) => Err(CloseReason::PeerClosed),
            Err(e) => Err(CloseReason::Io(e)),
            Ok(_) => {
                self.session.note_received(Instant::now());
                self.process_input().await
            }
        }
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        if let Some(bytes) = self.session.poll_transmit() {
            self.out.push_back(bytes);
        }
        if self.out.is_empty() {
            return Ok(());
        }
        // Most writes complete at once; only a full socket pays for a timer and a wait.
        match try_write_all_vectored(&mut self.socket, &mut self.out) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(CloseReason::Io(e)),
        }
        let limit = self.config.session.idle_timeout.max(Duration::from_secs(1));
        match tokio::time::timeout(limit, write_all_vectored(&mut self.socket, &mut self.out)).await
        {
            Err(_) => Err(CloseReason::WriteTimeout),
            Ok(Err(e)) => Err(CloseReason::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn handle_events(&mut self) {
        // Once the connection is refused or closing, queued events are dropped: a refused
        // client causes no more callbacks.
        while self.closing.is_none()
            && let Some(event) = self.session.poll_event()
        {
            match event {
                // Boxed: these run once per session, and inline their state would enlarge every
                // connection's task for its whole life.
                ServerEvent::Connect(req) => Box::pin(self.on_connect(req)).await,
                ServerEvent::Publish(req) => Box::pin(self.on_publish(req)).await,
                ServerEvent::Play(req) => Box::pin(self.on_play(req)).await,
                ServerEvent::Media { stream_id, media } => {
                    if let Some(p) = self
                        .publishing
                        .as_mut()
                        .filter(|p| p.stream_id == stream_id)
                    {
                        p.publisher.push(media);
                    }
                }
                ServerEvent::StreamClosed { stream_id } => {
                    if self
                        .publishing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id)
                    {
                        self.publishing = None;
                        info!("unpublished");
                    }
                    if self
                        .playing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id)
                    {
                        self.playing = None;
                        info!("play stopped");
                    }
                }
                ServerEvent::Pause {
                    stream_id, paused, ..
                } => {
                    if let Some(p) = self.playing.as_mut().filter(|p| p.stream_id == stream_id) {
                        p.paused = paused;
                        // Resuming re-reads the ring; a long pause lands on a keyframe.
                        p.pending = u64::from(!paused);
                    }
                }
                ServerEvent::ReceiveAudio { stream_id, enabled } => {
                    if let Some(p) = self.playing.as_mut().filter(|p| p.stream_id == stream_id) {
                        p.audio = enabled;
                    }
                }
                ServerEvent::ReceiveVideo { stream_id, enabled } => {
                    if let Some(p) = self.playing.as_mut().filter(|p| p.stream_id == stream_id) {
                        p.video = enabled;
                    }
                }
                ServerEvent::Close => self.closing = Some(CloseReason::ClientClose),
            }
        }
    }

    async fn on_connect(&mut self, req: ConnectRequest) {
        Span::current().record("app", req.app.as_str());
        // Without its query: a stream key may ride there.
        let tc_url = req.tc_url.as_deref().unwrap_or("");
        info!(
            app = %req.app,
            tc_url = loggable(tc_url.split_once('?').map_or(tc_url, |(url, _)| url)),
            flash_ver = loggable(req.flash_ver.as_deref().unwrap_or("")),
            handshake = ?self.session.handshake_kind(),
            "connect"
        );
        let client = Arc::new(ClientInfo {
            id: self.id,
            addr: self.peer,
            app: req.app.clone(),
            connect_query: req.query.clone(),
            flash_ver: req.flash_ver.clone(),
            swf_url: req.swf_url.clone(),
            tc_url: req.tc_url.clone(),
            page_url: req.page_url.clone(),
            connected_at_ms: unix_ms(),
        });
        let answer = self.access.connect(client.clone()).await;
        let answer = answer.and_then(|moved| match moved {
            Some(app) if self.check_name(&app).is_err() => Err(Refusal {
                code: code::CONNECT_REJECTED,
                description: "access moved the connection to an invalid app name".into(),
            }),
            moved => Ok(moved),
        });
        match answer {
            Ok(moved) => {
                let client = match moved {
                    Some(app) => {
                        info!(from = %req.app, to = %app, "connect moved to another app");
                        Span::current().record("app", app.as_str());
                        Arc::new(ClientInfo {
                            app,
                            ..(*client).clone()
                        })
                    }
                    None => client,
                };
                self.session.accept_connect(&req);
                self.client = Some(client);
            }
            Err(refusal) => {
                warn!(app = %req.app, "connect refused: {}", refusal.description);
                self.session.reject_connect(&req, &refusal.description);
                self.closing = Some(CloseReason::Refused("connect refused"));
            }
        }
    }

    /// A name access chose (a callback's redirect, a stream key's public name) follows the
    /// rule a client's names follow (the session checked those).
    fn check_name(&self, name: &str) -> Result<(), NameError> {
        check_name(name, self.config.session.max_name_len)
    }

    /// Asks access about a publish or play; `None` when the client never got connected. Not
    /// an `async fn`: the connection is not `Sync` and must not be borrowed across the wait.
    fn admit(
        &self,
        name: &str,
        args: Option<&str>,
        action: Action,
    ) -> Option<BoxFuture<'static, Result<Admission, Refusal>>> {
        let client = self.client.clone()?;
        let attempt = StreamAttempt {
            app: client.app.clone(),
            client,
            name: name.to_string(),
            args: args.map(String::from),
            action,
        };
        Some(self.access.admit(attempt))
    }

    /// Enters a started publish or play in the session table.
    fn register(
        &self,
        role: SessionRole,
        key: &StreamId,
        tag: Option<String>,
    ) -> (Registered, oneshot::Receiver<String>) {
        self.sessions.register(SessionInfo {
            client_id: self.id,
            addr: self.peer,
            role,
            app: key.app.to_string(),
            name: key.name.to_string(),
            tag,
        })
    }

    /// The name was checked by the session (`liverelay_rtmp::name`) before this event.
    async fn on_publish(&mut self, req: PublishRequest) {
        if self.publishing.is_some() {
            return self.refuse_publish(
                &req,
                None,
                code::PUBLISH_BAD_NAME,
                "already publishing on this connection",
                "second publish on one connection",
            );
        }
        if let Some(refusal) = self.policy.refuses_publishers() {
            return self.refuse_publish(
                &req,
                None,
                refusal.code,
                &refusal.description,
                "role takes no publishers",
            );
        }
        let decision = self.admit(&req.name, req.query.as_deref(), Action::Publish(req.kind));
        let admission = match decision {
            Some(decision) => decision.await,
            None => Err(Refusal {
                code: code::PUBLISH_DENIED,
                description: "not connected".into(),
            }),
        };
        let admission = match admission {
            Ok(admission) => admission,
            Err(refusal) => {
                return self.refuse_publish(
                    &req,
                    None,
                    refusal.code,
                    &refusal.description,
                    "refused by access",
                );
            }
        };
        if let Err(e) = self
            .check_name(&admission.app)
            .and(self.check_name(&admission.name))
        {
            return self.refuse_publish(
                &req,
                None,
                code::PUBLISH_BAD_NAME,
                &format!("access chose an invalid app or stream name: {e}"),
                "access chose an invalid name",
            );
        }
        let key = StreamId::new(admission.app.clone(), admission.name.clone());
        // The local hub first (one publisher per name here), then the role's policy (one per
        // name in the cluster), so a local duplicate never touches the registry.
        // The publish session's span lasts as long as the publish (a trace of its own life).
        let span = info_span!("publish", app = %key.app, stream = %key.name);
        let shown = key.to_string();
        match self.hub.publish(key.clone()) {
            Ok(publisher) => match self
                .policy
                .publish(key.clone())
                .instrument(span.clone())
                .await
            {
                Ok(ticket) => {
                    Span::current().record("stream", key.name.as_str());
                    info!(stream = %key, kind = req.kind.as_str(), "publish started");
                    self.session.accept_publish(&req);
                    self.metrics
                        .sessions
                        .get_or_create(&KindLabel { kind: "publish" })
                        .inc();
                    let tickets = vec![ticket, admission.ticket];
                    let (registered, kicked) =
                        self.register(SessionRole::Publisher, &key, admission.tag);
                    self.publishing = Some(Publishing {
                        stream_id: req.stream_id,
                        publisher,
                        revoked: tickets.revoked(),
                        kicked,
                        _ticket: Box::new(tickets),
                        _session: registered,
                        _span: span,
                    });
                }
                Err(refusal) => {
                    drop(publisher);
                    self.refuse_publish(
                        &req,
                        Some(&shown),
                        refusal.code,
                        &refusal.description,
                        "refused by policy",
                    );
                }
            },
            Err(HubError::AlreadyPublishing(_)) => self.refuse_publish(
                &req,
                Some(&shown),
                code::PUBLISH_BAD_NAME,
                &format!("{key} is already being published"),
                "stream is already live",
            ),
            Err(e @ (HubError::TooManyStreams(_) | HubError::TooManyWaiting(_))) => self
                .refuse_publish(
                    &req,
                    Some(&shown),
                    code::PUBLISH_DENIED,
                    &e.to_string(),
                    "stream limit reached",
                ),
        }
    }

    /// `shown` is the stream's name inside liverelay when known: the name the client sent may
    /// be a secret stream key and is never logged.
    fn refuse_publish(
        &mut self,
        req: &PublishRequest,
        shown: Option<&str>,
        code: &str,
        description: &str,
        why: &'static str,
    ) {
        warn!(
            stream = shown.unwrap_or("-"),
            status = code,
            "publish refused: {description}"
        );
        self.session.reject_publish(req, code, description);
        self.closing = Some(CloseReason::Refused(why));
    }

    fn refuse_play(
        &mut self,
        req: &PlayRequest,
        shown: Option<&str>,
        refusal: Refusal,
        why: &'static str,
    ) {
        warn!(
            stream = shown.unwrap_or("-"),
            status = refusal.code,
            "play refused: {}",
            refusal.description
        );
        self.session
            .reject_play(req, refusal.code, &refusal.description);
        self.closing = Some(CloseReason::Refused(why));
    }

    /// The name was checked by the session before this event, as for a publish.
    async fn on_play(&mut self, req: PlayRequest) {
        if let Err(over) = self.plays.take(Instant::now()) {
            let refusal = Refusal {
                code: code::PLAY_FAILED,
                description: over.to_string(),
            };
            return self.refuse_play(&req, None, refusal, "too many plays");
        }
        let action = Action::Play {
            start: req.start,
            duration: req.duration,
            reset: req.reset,
        };
        let admission = match self.admit(&req.name, req.query.as_deref(), action) {
            Some(decision) => decision.await,
            None => Err(Refusal {
                code: code::PLAY_FAILED,
                description: "not connected".into(),
            }),
        };
        let admission = match admission {
            Ok(admission) => admission,
            Err(refusal) => return self.refuse_play(&req, None, refusal, "refused by access"),
        };
        if let Err(e) = self
            .check_name(&admission.app)
            .and(self.check_name(&admission.name))
        {
            let refusal = Refusal {
                code: code::PLAY_BAD_NAME,
                description: format!("access chose an invalid app or stream name: {e}"),
            };
            return self.refuse_play(&req, None, refusal, "access chose an invalid name");
        }
        let key = StreamId::new(admission.app.clone(), admission.name.clone());
        let shown = key.to_string();
        // The play session's span: on an edge, the upstream it starts (and the ingest's relay
        // subscription, through the trace context on the gRPC call) join its trace.
        let span = info_span!("play", app = %key.app, stream = %key.name);
        let ticket = match self.policy.play(key.clone()).instrument(span.clone()).await {
            Ok(ticket) => ticket,
            Err(refusal) => {
                return self.refuse_play(&req, Some(&shown), refusal, "refused by policy");
            }
        };
        match self.hub.play(key.clone()) {
            Ok(viewer) => {
                Span::current().record("stream", key.name.as_str());
                info!(stream = %key, live = viewer.is_live(), "play started");
                self.session.accept_play(&req);
                self.metrics
                    .sessions
                    .get_or_create(&KindLabel { kind: "play" })
                    .inc();
                let tickets = vec![ticket, admission.ticket];
                // A second play on this connection replaces the first, whose registration must
                // go before the new one is made.
                self.playing = None;
                let (registered, kicked) = self.register(SessionRole::Viewer, &key, admission.tag);
                self.playing = Some(Playing {
                    stream_id: req.stream_id,
                    name: req.name,
                    viewer,
                    revoked: tickets.revoked(),
                    kicked,
                    _ticket: Box::new(tickets),
                    _session: registered,
                    _span: span,
                    paused: false,
                    audio: true,
                    video: true,
                    pending: 1,
                    last_pump: tokio::time::Instant::now(),
                    held_until: None,
                });
            }
            Err(e) => {
                let refusal = Refusal {
                    code: code::PLAY_FAILED,
                    description: e.to_string(),
                };
                self.refuse_play(&req, Some(&shown), refusal, "stream limit reached");
            }
        }
    }

    /// Sends the viewer its next batch: everything pending, up to the batch limit, in one
    /// vectored write together with any status messages that belong between the frames.
    /// New frames: written now, or at the end of the coalescing window if the last write was
    /// more recent than that.
    async fn on_viewer_changed(&mut self) -> Result<(), CloseReason> {
        let window = self.config.write_coalesce;
        if let Some(p) = self.playing.as_mut().filter(|_| !window.is_zero()) {
            let due = p.last_pump + window;
            if tokio::time::Instant::now() < due {
                p.held_until = Some(due);
                return Ok(());
            }
        }
        self.pump_viewer().await
    }

    async fn pump_viewer(&mut self) -> Result<(), CloseReason> {
        let Some(p) = self.playing.as_mut() else {
            return Ok(());
        };
        p.held_until = None;
        p.last_pump = tokio::time::Instant::now();
        self.items.clear();
        p.pending = p.viewer.poll(&mut self.items, self.config.max_batch_frames);
        let chunk_size = self.session.out_chunk_size();
        for item in self.items.drain(..) {
            match item {
                ViewerItem::Frame(frame) => {
                    let wanted = match frame.kind {
                        MediaKind::Audio => p.audio,
                        MediaKind::Video => p.video,
                        MediaKind::Metadata | MediaKind::Data => true,
                    };
                    if wanted {
                        self.out.push_back(frame.wire(chunk_size, p.stream_id));
                    }
                }
                ViewerItem::Published => {
                    info!("publisher arrived");
                    self.session.notify_publish(p.stream_id, &p.name);
                    self.out.extend(self.session.poll_transmit());
                }
                ViewerItem::Unpublished => {
                    info!("publisher left");
                    self.session.notify_unpublish(p.stream_id, &p.name);
                    self.out.extend(self.session.poll_transmit());
                }
            }
        }
        p.viewer.record_sent(self.out.iter().map(Bytes::len).sum());
        let result = self.flush().await;
        // A burst (the GOP at start, a catch-up) must not leave its capacity with every viewer.
        if self.out.capacity() > SHRINK_ABOVE {
            self.out.shrink_to(SHRINK_ABOVE / 4);
        }
        if self.items.capacity() > SHRINK_ABOVE {
            self.items.shrink_to(SHRINK_ABOVE / 4);
        }
        result
    }
}

/// A client-chosen string as a log field: its first 256 characters, control characters
/// escaped, so that it can neither flood the log nor forge lines in it.
fn loggable(s: &str) -> String {
    s.chars().take(256).flat_map(char::escape_debug).collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A kick's reason; a kick channel closed without one means the session left the table.
fn kick_reason(kicked: Result<String, oneshot::error::RecvError>) -> String {
    kicked.unwrap_or_else(|_| "session unregistered".into())
}

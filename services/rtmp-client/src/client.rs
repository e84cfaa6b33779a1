use std::collections::VecDeque;
use std::ops::ControlFlow::{self, Break, Continue};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use liverelay_rtmp::handshake::ClientKind;
use liverelay_rtmp::media::parse_video;
use liverelay_rtmp::session::{ClientConfig, ClientEvent, ClientSession, Media, PublishKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::ClientStream;
use crate::bulk::BulkReader;
use crate::stream::unsent_bytes;
use crate::{Error, MediaKind, Result, RtmpUrl};

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit for each step that waits for the server (TCP connect + handshake + `connect`,
    /// `createStream`, `publish`/`play`).
    pub timeout: Duration,
    pub handshake: ClientKind,
    /// Chunk size for what we send (announced after the handshake).
    pub chunk_size: u32,
    pub nodelay: bool,
    /// Read buffer growth step: each read asks for at least this much space.
    pub read_size: usize,
    /// For `rtmps://`: whom to trust (and which client certificate to show); `None` trusts
    /// the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Note when each ping (User Control 6) from the server arrives, for
    /// [`RtmpClient::pings`] (one `Instant` per ping, kept for the connection's life). The
    /// session answers pings by itself either way.
    pub record_pings: bool,
    /// Enhanced RTMP v2 `capsEx` to announce in `connect` (0: none), e.g.
    /// `caps_ex::RECONNECT` for a client that handles reconnect requests.
    pub caps_ex: u8,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            handshake: ClientKind::Digest,
            chunk_size: 4096,
            nodelay: true,
            read_size: 16 * 1024,
            tls: None,
            record_pings: false,
            caps_ex: 0,
        }
    }
}

/// The server's answer to a `publish` or `play`: its first `onStatus` on that stream (or the
/// `_error` in its place), whatever it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub stream_id: u32,
    /// `status` or `error`.
    pub level: String,
    /// For example `NetStream.Publish.Start`, `NetStream.Play.Reset`, `NetStream.Play.Failed`.
    pub code: String,
    pub description: String,
}

/// Whether `media` is a picture: video that is neither a sequence header nor an info or
/// end-of-sequence frame (legacy FLV and Enhanced RTMP alike).
pub fn is_picture(media: &Media) -> bool {
    media.kind == MediaKind::Video
        && parse_video(&media.payload).is_some_and(|v| !v.sequence_header && !v.info_only)
}

/// One RTMP connection driven by tokio. Commands are queued in the session and written by
/// [`flush`](Self::flush) (the waiting helpers flush by themselves).
pub struct RtmpClient {
    socket: ClientStream,
    session: ClientSession,
    events: VecDeque<ClientEvent>,
    options: ClientOptions,
    bytes_in: u64,
    bytes_out: u64,
    /// Set by [`stop_writing`](RtmpClient::stop_writing).
    silent: bool,
    pings: Option<Vec<std::time::Instant>>,
}

impl RtmpClient {
    /// TCP connect (and TLS for `rtmps://`), handshake and `connect` to `url`'s app; returns
    /// once the server accepted.
    pub async fn connect(url: &RtmpUrl, options: ClientOptions) -> Result<Self> {
        let deadline = Instant::now() + options.timeout;
        let socket = timeout_at(deadline, TcpStream::connect(url.addr()))
            .await
            .map_err(|_| Error::Timeout("TCP connect"))??;
        Self::connect_on(socket, url, options).await
    }

    /// As [`connect`](Self::connect), on an already connected socket (one made with socket
    /// options of the caller's choice, such as a small receive buffer).
    pub async fn connect_on(
        socket: TcpStream,
        url: &RtmpUrl,
        options: ClientOptions,
    ) -> Result<Self> {
        let mut client = Self::open_on(socket, url, options).await?;
        let deadline = Instant::now() + client.options.timeout;
        let answer = client
            .wait_event(deadline, "connect", Others::Keep, |e| match e {
                ClientEvent::Connected { .. } => Break(Ok(())),
                ClientEvent::ConnectFailed { info } => {
                    let text = ["code", "description"]
                        .iter()
                        .filter_map(|k| info.get(k).and_then(|v| v.as_str()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    Break(Err(Error::ConnectRefused(text)))
                }
                other => Continue(other),
            })
            .await?;
        answer.map(|()| client)
    }

    /// TLS for `rtmps://` on an already connected socket, without waiting for the server: the
    /// handshake and `connect` go out as the client is read from, and the server's answer
    /// comes as [`ClientEvent::Connected`] or [`ClientEvent::ConnectFailed`] (with the info
    /// object that [`connect`](Self::connect) sums up in [`Error::ConnectRefused`]).
    pub async fn open_on(socket: TcpStream, url: &RtmpUrl, options: ClientOptions) -> Result<Self> {
        socket.set_nodelay(options.nodelay)?;
        let socket = if url.tls {
            let deadline = Instant::now() + options.timeout;
            let tls = ClientStream::tls(socket, &url.host, options.tls.clone());
            timeout_at(deadline, tls)
                .await
                .map_err(|_| Error::Timeout("TLS handshake"))??
        } else {
            ClientStream::Plain(socket)
        };
        let mut config = ClientConfig::new(url.app.clone(), url.tc_url());
        config.handshake = options.handshake;
        config.chunk_size = options.chunk_size;
        if options.caps_ex != 0 {
            config.connect_args.push((
                "capsEx".into(),
                liverelay_rtmp::amf::Amf0Value::Number(f64::from(options.caps_ex)),
            ));
        }
        let pings = options.record_pings.then(Vec::new);
        let session = ClientSession::new(config, &handshake_random(), 0);
        Ok(Self {
            socket,
            session,
            events: VecDeque::new(),
            options,
            bytes_in: 0,
            bytes_out: 0,
            silent: false,
            pings,
        })
    }

    /// Sends `createStream` and waits for its stream id.
    pub async fn create_stream(&mut self) -> Result<u32> {
        self.session.create_stream();
        let deadline = Instant::now() + self.options.timeout;
        self.wait_event(deadline, "createStream", Others::Keep, |e| match e {
            ClientEvent::StreamCreated { stream_id } => Break(Ok(stream_id)),
            ClientEvent::CallResult { name, values, .. } if name == "_error" => {
                let info = values.get(1);
                let field = |k: &str| {
                    info.and_then(|i| i.get(k))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                Break(Err(Error::Refused {
                    command: "createStream",
                    code: field("code"),
                    description: field("description"),
                }))
            }
            other => Continue(other),
        })
        .await?
    }

    /// `releaseStream`/`FCPublish`, `createStream`, `publish(name, live)`; returns the stream
    /// id once `NetStream.Publish.Start` arrived.
    pub async fn publish(&mut self, name: &str) -> Result<u32> {
        let id = self.send_publish(name).await?;
        self.wait_started(id, "publish").await?;
        Ok(id)
    }

    /// `createStream`, `play(name)`; returns the stream id once `NetStream.Play.Start`
    /// arrived. Media that came before it stays queued for [`next_event`](Self::next_event).
    pub async fn play(&mut self, name: &str) -> Result<u32> {
        let id = self.send_play(name).await?;
        self.wait_started(id, "play").await?;
        Ok(id)
    }

    /// As [`publish`](Self::publish), but returns the server's first status for the stream,
    /// whatever it says, instead of failing on a refusal. What came before it stays queued.
    pub async fn publish_status(&mut self, name: &str) -> Result<StreamStatus> {
        let id = self.send_publish(name).await?;
        self.first_status(id, "publish").await
    }

    /// As [`play`](Self::play), but returns the server's first status for the stream (for an
    /// accepted play usually `NetStream.Play.Reset`, then `Start` follows), whatever it says,
    /// instead of failing on a refusal. What came before it stays queued.
    pub async fn play_status(&mut self, name: &str) -> Result<StreamStatus> {
        let id = self.send_play(name).await?;
        self.first_status(id, "play").await
    }

    async fn send_publish(&mut self, name: &str) -> Result<u32> {
        self.session.prepare_publish(name);
        let id = self.create_stream().await?;
        self.session.publish(id, name, PublishKind::Live);
        Ok(id)
    }

    async fn send_play(&mut self, name: &str) -> Result<u32> {
        let id = self.create_stream().await?;
        self.session.play(id, name);
        Ok(id)
    }

    async fn wait_started(&mut self, id: u32, command: &'static str) -> Result<()> {
        let deadline = Instant::now() + self.options.timeout;
        self.wait_event(deadline, command, Others::Keep, |e| match e {
            ClientEvent::PublishStarted { stream_id } | ClientEvent::PlayStarted { stream_id }
                if stream_id == id =>
            {
                Break(Ok(()))
            }
            ClientEvent::Status {
                stream_id,
                level,
                code,
                description,
            } if stream_id == id && level == "error" => Break(Err(Error::Refused {
                command,
                code,
                description,
            })),
            other => Continue(other),
        })
        .await?
    }

    async fn first_status(&mut self, id: u32, command: &'static str) -> Result<StreamStatus> {
        let deadline = Instant::now() + self.options.timeout;
        self.wait_event(deadline, command, Others::Keep, |e| match e {
            ClientEvent::Status {
                stream_id,
                level,
                code,
                description,
            } if stream_id == id => Break(StreamStatus {
                stream_id,
                level,
                code,
                description,
            }),
            other => Continue(other),
        })
        .await
    }

    /// Reads events until `want` takes one or `limit` passes ([`Error::Timeout`]); the events
    /// it passes over are dropped. [`Error::Closed`] if the server closes the connection
    /// first.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<ClientEvent> {
        let deadline = Instant::now() + limit;
        self.wait_event(deadline, "event", Others::Drop, |e| {
            if want(&e) { Break(e) } else { Continue(e) }
        })
        .await
    }

    /// How many pictures (see [`is_picture`]) arrive within `window`; every other event is
    /// dropped. Stops early, with the count so far, if the server closes the connection.
    pub async fn count_pictures(&mut self, window: Duration) -> Result<usize> {
        let deadline = Instant::now() + window;
        let mut pictures = 0;
        loop {
            let picture = |e: ClientEvent| match e {
                ClientEvent::Media { media, .. } if is_picture(&media) => Break(()),
                other => Continue(other),
            };
            match self
                .wait_event(deadline, "pictures", Others::Drop, picture)
                .await
            {
                Ok(()) => pictures += 1,
                Err(Error::Timeout(_) | Error::Closed) => return Ok(pictures),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until `pick` takes an event (`Break`) or `deadline` passes. The events it passes
    /// over (`Continue`) are kept in order in front of anything read later, or dropped.
    async fn wait_event<T>(
        &mut self,
        deadline: Instant,
        what: &'static str,
        others: Others,
        mut pick: impl FnMut(ClientEvent) -> ControlFlow<T, ClientEvent>,
    ) -> Result<T> {
        let mut held = Vec::new();
        let result = loop {
            match self.next_event_until(deadline, what).await {
                Err(e) => break Err(e),
                Ok(event) => match pick(event) {
                    Break(taken) => break Ok(taken),
                    Continue(other) if others == Others::Keep => held.push(other),
                    Continue(_) => {}
                },
            }
        };
        for e in held.into_iter().rev() {
            self.events.push_front(e);
        }
        result
    }

    /// Queues one media message on a publishing stream; [`flush`](Self::flush) sends it.
    pub fn send_media(&mut self, stream_id: u32, media: &Media) {
        self.session.send_media(stream_id, media);
    }

    /// Writes everything the session has queued.
    pub async fn flush(&mut self) -> Result<()> {
        self.write_queued(None).await
    }

    /// Writes everything the session has queued, failing with [`Error::Timeout`] once the
    /// peer took none of the written bytes for `stall`: a slow reader given a large burst is
    /// waited for as long as it keeps reading.
    pub async fn flush_within(&mut self, stall: Duration) -> Result<()> {
        self.write_queued(Some(stall)).await
    }

    async fn write_queued(&mut self, stall: Option<Duration>) -> Result<()> {
        let fd = self.socket.as_raw_fd();
        while let Some(bytes) = self.session.poll_transmit() {
            if self.silent {
                continue;
            }
            self.bytes_out += bytes.len() as u64;
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = until_stalled(fd, stall, self.socket.write(rest)).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                }
                rest = &rest[n..];
            }
        }
        if matches!(self.socket, ClientStream::Tls(_)) {
            // TLS records may wait in rustls' buffer after a write that returned early.
            until_stalled(fd, stall, self.socket.flush()).await?;
        }
        Ok(())
    }

    /// An event already decoded, without reading.
    pub fn try_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next event; `Ok(None)` once the server closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<ClientEvent>> {
        loop {
            self.flush().await?;
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if self.read().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads once (whatever is available), decodes it and queues the events; returns the
    /// number of bytes read, 0 when the server closed. Cancel safe: no data is lost if the
    /// future is dropped before it completes (usable in `select!`).
    pub async fn read(&mut self) -> Result<usize> {
        let buf = self.session.recv_buffer();
        if buf.capacity() - buf.len() < self.options.read_size {
            buf.reserve(self.options.read_size);
        }
        let n = self.socket.read_buf(buf).await?;
        if n == 0 {
            return Ok(0);
        }
        self.bytes_in += n as u64;
        self.session.process()?;
        while let Some(e) = self.session.poll_event() {
            match e {
                ClientEvent::Ping(_) => {
                    if let Some(pings) = &mut self.pings {
                        pings.push(std::time::Instant::now());
                    }
                }
                e => self.events.push_back(e),
            }
        }
        // Acknowledgements and ping replies the session produced.
        self.flush().await?;
        Ok(n)
    }

    async fn next_event_until(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<ClientEvent> {
        match timeout_at(deadline, self.next_event()).await {
            Err(_) => Err(Error::Timeout(what)),
            Ok(Ok(None)) => Err(Error::Closed),
            Ok(Ok(Some(e))) => Ok(e),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Reads until the server closes the connection, dropping every event (queued or new):
    /// `Ok(true)` once it has (an end of stream or a reset), `Ok(false)` if it is still open
    /// after `limit`.
    pub async fn wait_closed(&mut self, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            self.events.clear();
            match timeout_at(deadline, self.read()).await {
                Err(_) => return Ok(false),
                Ok(Ok(0) | Err(Error::Io(_))) => return Ok(true),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Writes what the session has queued, then `bytes` as they are, outside the session: for
    /// testing how a server takes malformed input. The session does not know about them, so
    /// what it sends after them may no longer make sense to the server.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush().await?;
        self.bytes_out += bytes.len() as u64;
        self.socket.write_all(bytes).await?;
        self.socket.flush().await?;
        Ok(())
    }

    /// From now on nothing is written: the client still reads and decodes, but answers no
    /// ping and acknowledges nothing, and what it is asked to send is dropped. For testing how
    /// a server treats a peer that hung.
    pub fn stop_writing(&mut self) {
        self.silent = true;
    }

    /// When each ping from the server arrived, if [`ClientOptions::record_pings`] is set
    /// (empty otherwise).
    pub fn pings(&self) -> &[std::time::Instant] {
        self.pings.as_deref().unwrap_or(&[])
    }

    /// The protocol session, for commands this driver has no helper for.
    pub fn session_mut(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    pub fn socket(&self) -> &TcpStream {
        self.socket.tcp()
    }

    /// Bytes read from the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_in
    }

    /// Bytes written to the socket so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_out
    }

    /// Stops decoding: the rest of the connection is only counted. Undelivered events are
    /// dropped; bytes already buffered count as received.
    pub fn into_bulk(mut self) -> BulkReader {
        let pending = std::mem::take(self.session.recv_buffer());
        BulkReader::new(self.socket, self.bytes_in, pending.len() as u64)
    }

    /// The socket and whatever was read but not decoded yet.
    pub fn into_parts(mut self) -> (ClientStream, BytesMut) {
        let pending = std::mem::take(self.session.recv_buffer());
        (self.socket, pending)
    }
}

/// What [`RtmpClient::wait_event`] does with the events it passes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Others {
    Keep,
    Drop,
}

/// Handshake randomness: it only has to differ between connections, not be secret.
fn handshake_random() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
    (0..3072 / 8)
        .flat_map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
        })
        .collect()
}

/// Waits for `io`, a write to the socket `fd`. With a `stall` limit, fails once that long
/// passed without the peer taking any byte: the write did not finish and the kernel's queue
/// of unacknowledged bytes did not shrink.
async fn until_stalled<T>(
    fd: RawFd,
    stall: Option<Duration>,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T> {
    let Some(stall) = stall else {
        return Ok(io.await?);
    };
    let mut io = std::pin::pin!(io);
    let mut queued = unsent_bytes(fd);
    loop {
        if let Ok(done) = tokio::time::timeout(stall, &mut io).await {
            return Ok(done?);
        }
        match (queued, unsent_bytes(fd)) {
            (Some(before), Some(now)) if now < before => queued = Some(now),
            _ => return Err(Error::Timeout("the peer to read")),
        }
    }
}

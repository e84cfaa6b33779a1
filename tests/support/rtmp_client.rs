//! A minimal async RTMP client over the protocol core's `ClientSession`, for tests that check
//! individual messages, statuses and timings that ffmpeg does not expose.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use liverelay_rtmp::MediaKind;
use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits};
use liverelay_rtmp::media::parse_video;
use liverelay_rtmp::message::{UserControl, type_id};
use liverelay_rtmp::session::{ClientConfig, ClientEvent, ClientSession, Media, PublishKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A video message that is a picture (not a sequence header or an info frame).
pub fn is_picture(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Media { media, .. }
        if media.kind == MediaKind::Video
            && parse_video(&media.payload).is_some_and(|v| !v.sequence_header && !v.info_only))
}

pub struct RtmpClient {
    socket: TcpStream,
    session: ClientSession,
    events: VecDeque<ClientEvent>,
    /// A second decoder over the same bytes, for the protocol messages the session handles
    /// by itself and never reports (pings).
    tap: Tap,
    /// Set by [`stop_answering`](Self::stop_answering): nothing is written any more.
    mute: bool,
    closed: bool,
    /// Reads that returned data; the events of one read come out before the next read.
    reads: u64,
}

/// Decodes the server's chunk stream a second time, after the 3073 bytes of S0+S1+S2.
struct Tap {
    skip: usize,
    buf: BytesMut,
    decoder: ChunkDecoder,
    pings: Vec<Instant>,
}

impl Tap {
    fn feed(&mut self, bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        self.buf.extend_from_slice(&bytes[skipped..]);
        while let Ok(Some(msg)) = self.decoder.decode(&mut self.buf) {
            match msg.type_id {
                type_id::SET_CHUNK_SIZE if msg.payload.len() >= 4 => {
                    let size = u32::from_be_bytes(msg.payload[..4].try_into().unwrap());
                    self.decoder.set_chunk_size(size).expect("valid chunk size");
                }
                type_id::USER_CONTROL => {
                    if let Some(UserControl::PingRequest(_)) = UserControl::parse(&msg.payload) {
                        self.pings.push(Instant::now());
                    }
                }
                _ => {}
            }
        }
    }
}

impl RtmpClient {
    pub async fn connect(addr: SocketAddr, app: &str) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect");
        Self::connect_over(socket, addr, app).await
    }

    /// Connects with a receive buffer of about `bytes` (the kernel doubles it), so a player that
    /// stops reading fills its socket quickly.
    pub async fn connect_with_receive_buffer(addr: SocketAddr, app: &str, bytes: u32) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let socket = socket.connect(addr).await.expect("connect");
        Self::connect_over(socket, addr, app).await
    }

    /// Sends `connect` for `app` and returns the server's answer (`Connected` or
    /// `ConnectFailed`), or `None` if the connection ended first.
    pub async fn try_connect(addr: SocketAddr, app: &str) -> (Self, Option<ClientEvent>) {
        let socket = TcpStream::connect(addr).await.expect("connect");
        let mut client = Self::over(socket, addr, app);
        let answer = client
            .expect(Duration::from_secs(5), |e| {
                matches!(
                    e,
                    ClientEvent::Connected { .. } | ClientEvent::ConnectFailed { .. }
                )
            })
            .await;
        (client, answer)
    }

    async fn connect_over(socket: TcpStream, addr: SocketAddr, app: &str) -> Self {
        let mut client = Self::over(socket, addr, app);
        client
            .expect(Duration::from_secs(5), |e| {
                matches!(e, ClientEvent::Connected { .. })
            })
            .await
            .expect("connect succeeds");
        client
    }

    /// A client on `socket` whose `connect` goes out with its first write.
    fn over(socket: TcpStream, addr: SocketAddr, app: &str) -> Self {
        socket.set_nodelay(true).unwrap();
        let config = ClientConfig::new(app, format!("rtmp://{addr}/{app}"));
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        Self {
            socket,
            session: ClientSession::new(config, &random, 0),
            events: VecDeque::new(),
            tap: Tap {
                skip: 1 + 2 * 1536,
                buf: BytesMut::new(),
                decoder: ChunkDecoder::new(ChunkLimits::default()),
                pings: Vec::new(),
            },
            mute: false,
            closed: false,
            reads: 0,
        }
    }

    /// Sends what the session has queued, then reads until an event arrives or `limit` passes.
    pub async fn next_event(&mut self, limit: Duration) -> Option<ClientEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.flush().await;
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let before = self.session.recv_buffer().len();
            let read =
                tokio::time::timeout_at(deadline, self.socket.read_buf(self.session.recv_buffer()))
                    .await;
            match read {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    self.closed = true;
                    return None;
                }
                Ok(Ok(_)) => {
                    self.reads += 1;
                    self.tap.feed(&self.session.recv_buffer()[before..]);
                    self.session.process().expect("server sent valid RTMP");
                    while let Some(e) = self.session.poll_event() {
                        self.events.push_back(e);
                    }
                }
            }
        }
    }

    /// Reads events until one matches; `None` if the connection ends or `limit` passes first.
    pub async fn expect(
        &mut self,
        limit: Duration,
        mut want: impl FnMut(&ClientEvent) -> bool,
    ) -> Option<ClientEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next_event(left).await?;
            if want(&e) {
                return Some(e);
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            if !self.mute {
                self.socket.write_all(&bytes).await.expect("write");
            }
        }
    }

    /// From now on the client still reads and decodes but writes nothing: it answers no ping
    /// and sends no acknowledgement, like a peer that hung.
    pub fn stop_answering(&mut self) {
        self.mute = true;
    }

    /// When each ping request (user control 6) from the server arrived.
    pub fn pings(&self) -> &[Instant] {
        &self.tap.pings
    }

    /// Whether a read saw the server close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one media message on a stream this client publishes.
    pub async fn send_media(&mut self, stream_id: u32, media: &Media) {
        self.session.send_media(stream_id, media);
        self.flush().await;
    }

    pub async fn create_stream(&mut self) -> u32 {
        self.session.create_stream();
        match self
            .expect(Duration::from_secs(5), |e| {
                matches!(e, ClientEvent::StreamCreated { .. })
            })
            .await
        {
            Some(ClientEvent::StreamCreated { stream_id }) => stream_id,
            other => panic!("createStream failed: {other:?}"),
        }
    }

    /// Starts playing; returns the stream id once Play.Start arrived.
    pub async fn play(&mut self, name: &str) -> u32 {
        let id = self.create_stream().await;
        self.session.play(id, name);
        self.expect(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::PlayStarted { .. })
        })
        .await
        .expect("play starts");
        id
    }

    /// Sends `play` without waiting for the answer.
    pub fn send_play(&mut self, stream_id: u32, name: &str) {
        self.session.play(stream_id, name);
    }

    /// Sends `publish` (live) without waiting for the answer.
    pub fn send_publish(&mut self, stream_id: u32, name: &str) {
        self.session.publish(stream_id, name, PublishKind::Live);
    }

    /// Plays `name` on a new stream; returns the first status code the server answers with.
    pub async fn play_status(&mut self, name: &str) -> String {
        let id = self.create_stream().await;
        self.send_play(id, name);
        match self
            .expect(Duration::from_secs(5), |e| {
                matches!(e, ClientEvent::Status { .. })
            })
            .await
        {
            Some(ClientEvent::Status { code, .. }) => code,
            other => panic!("no play status: {other:?}"),
        }
    }

    /// Publishes like ffmpeg; returns the first status the server answers with.
    pub async fn publish(&mut self, name: &str) -> (u32, String, String) {
        self.session.prepare_publish(name);
        let id = self.create_stream().await;
        self.session.publish(id, name, PublishKind::Live);
        match self
            .expect(Duration::from_secs(5), |e| {
                matches!(e, ClientEvent::Status { .. })
            })
            .await
        {
            Some(ClientEvent::Status { level, code, .. }) => (id, level, code),
            other => panic!("no publish status: {other:?}"),
        }
    }

    /// Pictures received from now until `deadline`.
    pub async fn count_pictures(&mut self, deadline: std::time::Instant) -> usize {
        let mut pictures = 0;
        while std::time::Instant::now() < deadline {
            if self
                .expect(Duration::from_millis(500), is_picture)
                .await
                .is_some()
            {
                pictures += 1;
            }
        }
        pictures
    }

    /// Writes raw bytes, bypassing the session (for malformed input).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.socket.write_all(bytes).await;
    }

    /// Waits for the server to close the connection; false if it is still open at `limit`.
    pub async fn closed_by_server(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.socket.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// A video message as a [`MediaLog`] saw it arrive.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    /// Which socket read brought it (messages of one write usually share a read).
    pub read: u64,
    pub media: Media,
}

impl Arrival {
    pub fn is_picture(&self) -> bool {
        parse_video(&self.media.payload).is_some_and(|v| !v.sequence_header && !v.info_only)
    }

    pub fn is_keyframe(&self) -> bool {
        parse_video(&self.media.payload).is_some_and(|v| v.keyframe && !v.sequence_header)
    }
}

/// A player read all the time by a task of its own, so its socket never holds a backlog: what
/// it logs after a moment was sent by the server after that moment (a player read only when
/// the test gets round to it would show frames buffered long before). Logs every video message
/// until dropped.
pub struct MediaLog {
    video: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MediaLog {
    pub fn spawn(mut client: RtmpClient) -> Self {
        let video = Arc::new(Mutex::new(Vec::new()));
        let log = video.clone();
        let task = tokio::spawn(async move {
            while !client.is_closed() {
                if let Some(ClientEvent::Media { media, .. }) =
                    client.next_event(Duration::from_secs(1)).await
                    && media.kind == MediaKind::Video
                {
                    let arrival = Arrival {
                        at: Instant::now(),
                        read: client.reads,
                        media,
                    };
                    log.lock().unwrap().push(arrival);
                }
            }
        });
        Self { video, task }
    }

    /// Every video message so far, in arrival order.
    pub fn video(&self) -> Vec<Arrival> {
        self.video.lock().unwrap().clone()
    }

    /// Pictures so far (no sequence headers).
    pub fn pictures(&self) -> Vec<Arrival> {
        self.video()
            .into_iter()
            .filter(Arrival::is_picture)
            .collect()
    }

    /// Waits until `done` holds for the pictures so far; false if `limit` passes first.
    pub async fn wait_pictures(&self, limit: Duration, done: impl Fn(&[Arrival]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(&self.pictures()) {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Drop for MediaLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

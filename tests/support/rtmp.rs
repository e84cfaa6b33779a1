//! The product's RTMP client (`liverelay-rtmp-client`) as the tests use it: for a local
//! `SocketAddr` and app, with a 5 s limit on each step, recording the server's pings, and
//! failing the test (not returning errors) where a step that must work does not. Waits return
//! `None` on a timeout or when the server closed the connection ([`TestClient::is_closed`]).

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liverelay_rtmp_client::{
    ClientEvent, ClientOptions, Error, Media, MediaKind, PublishKind, RtmpClient, RtmpUrl,
};
use tokio::net::{TcpSocket, TcpStream};

/// A video message that is a picture (not a sequence header or an info frame).
pub fn is_picture(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Media { media, .. } if liverelay_rtmp_client::is_picture(media))
}

/// The product client, with helpers that fail the test; derefs to [`RtmpClient`] for the rest
/// (`pings`, `stop_writing`, `session_mut`, ...).
pub struct TestClient {
    client: RtmpClient,
    closed: bool,
}

fn url(addr: SocketAddr, app: &str) -> RtmpUrl {
    RtmpUrl {
        host: addr.ip().to_string(),
        port: addr.port(),
        app: app.to_owned(),
        name: String::new(),
        tls: false,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        record_pings: true,
        ..ClientOptions::default()
    }
}

impl TestClient {
    fn new(client: RtmpClient) -> Self {
        Self {
            client,
            closed: false,
        }
    }

    pub async fn connect(addr: SocketAddr, app: &str) -> Self {
        let client = RtmpClient::connect(&url(addr, app), options()).await;
        Self::new(client.expect("connect succeeds"))
    }

    /// Connects announcing Enhanced RTMP v2 `capsEx` (e.g. reconnect requests).
    pub async fn connect_with_caps(addr: SocketAddr, app: &str, caps_ex: u8) -> Self {
        let options = ClientOptions {
            caps_ex,
            ..options()
        };
        let client = RtmpClient::connect(&url(addr, app), options).await;
        Self::new(client.expect("connect succeeds"))
    }

    /// Connects with a receive buffer of about `bytes` (the kernel doubles it), so a player that
    /// stops reading fills its socket quickly.
    pub async fn connect_with_receive_buffer(addr: SocketAddr, app: &str, bytes: u32) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let socket = socket.connect(addr).await.expect("connect");
        let client = RtmpClient::connect_on(socket, &url(addr, app), options()).await;
        Self::new(client.expect("connect succeeds"))
    }

    /// Sends `connect` for `app` and returns the server's answer (`Connected` or
    /// `ConnectFailed`), or `None` if the connection ended first.
    pub async fn try_connect(addr: SocketAddr, app: &str) -> (Self, Option<ClientEvent>) {
        let socket = TcpStream::connect(addr).await.expect("connect");
        let client = RtmpClient::open_on(socket, &url(addr, app), options()).await;
        let mut client = Self::new(client.expect("open"));
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

    /// Reads events until one matches; `None` if the connection ends or `limit` passes first.
    pub async fn expect(
        &mut self,
        limit: Duration,
        want: impl FnMut(&ClientEvent) -> bool,
    ) -> Option<ClientEvent> {
        match self.client.wait_for(limit, want).await {
            Ok(e) => Some(e),
            Err(Error::Timeout(_)) => None,
            Err(Error::Closed | Error::Io(_)) => {
                self.closed = true;
                None
            }
            Err(e) => panic!("server sent valid RTMP: {e}"),
        }
    }

    /// The next event; `None` if the connection ends or `limit` passes first.
    pub async fn next_event(&mut self, limit: Duration) -> Option<ClientEvent> {
        self.expect(limit, |_| true).await
    }

    /// Whether a read saw the server close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends one media message on a stream this client publishes.
    pub async fn send_media(&mut self, stream_id: u32, media: &Media) {
        self.client.send_media(stream_id, media);
        self.client.flush().await.expect("write");
    }

    pub async fn create_stream(&mut self) -> u32 {
        match self.client.create_stream().await {
            Ok(stream_id) => stream_id,
            Err(e) => panic!("createStream failed: {e}"),
        }
    }

    /// Starts playing; returns the stream id once Play.Start arrived (what came before it is
    /// dropped).
    pub async fn play(&mut self, name: &str) -> u32 {
        let id = self.create_stream().await;
        self.send_play(id, name);
        self.expect(Duration::from_secs(5), |e| {
            matches!(e, ClientEvent::PlayStarted { .. })
        })
        .await
        .expect("play starts");
        id
    }

    /// Sends `play` without waiting for the answer.
    pub fn send_play(&mut self, stream_id: u32, name: &str) {
        self.client.session_mut().play(stream_id, name);
    }

    /// Sends `publish` (live) without waiting for the answer.
    pub fn send_publish(&mut self, stream_id: u32, name: &str) {
        let session = self.client.session_mut();
        session.publish(stream_id, name, PublishKind::Live);
    }

    /// Plays `name` on a new stream; returns the first status code the server answers with.
    pub async fn play_status(&mut self, name: &str) -> String {
        match self.client.play_status(name).await {
            Ok(status) => status.code,
            Err(e) => panic!("no play status: {e}"),
        }
    }

    /// Publishes like ffmpeg; returns the stream id and the first status the server answers
    /// with (level, code).
    pub async fn publish(&mut self, name: &str) -> (u32, String, String) {
        match self.client.publish_status(name).await {
            Ok(status) => (status.stream_id, status.level, status.code),
            Err(e) => panic!("no publish status: {e}"),
        }
    }

    /// Pictures received from now until `deadline`.
    pub async fn count_pictures(&mut self, deadline: Instant) -> usize {
        let window = deadline.saturating_duration_since(Instant::now());
        match self.client.count_pictures(window).await {
            Ok(pictures) => pictures,
            Err(e) => panic!("counting pictures: {e}"),
        }
    }

    /// Writes raw bytes, bypassing the session (for malformed input); a failed write is for
    /// [`closed_by_server`](Self::closed_by_server) to notice.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.client.write_raw(bytes).await;
    }

    /// Waits for the server to close the connection; false if it is still open at `limit`.
    pub async fn closed_by_server(&mut self, limit: Duration) -> bool {
        match self.client.wait_closed(limit).await {
            Ok(closed) => closed,
            Err(e) => panic!("server sent valid RTMP: {e}"),
        }
    }
}

impl Deref for TestClient {
    type Target = RtmpClient;

    fn deref(&self) -> &RtmpClient {
        &self.client
    }
}

impl DerefMut for TestClient {
    fn deref_mut(&mut self) -> &mut RtmpClient {
        &mut self.client
    }
}

/// A video message as a [`MediaLog`] saw it arrive.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub media: Media,
}

/// A player read all the time by a task of its own, so its socket never holds a backlog: what
/// it logs after a moment was sent by the server after that moment (a player read only when
/// the test gets round to it would show frames buffered long before). Logs every video message
/// and the code of every status message until dropped.
pub struct MediaLog {
    video: Arc<Mutex<Vec<Arrival>>>,
    statuses: Arc<Mutex<Vec<String>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl MediaLog {
    pub fn spawn(mut client: TestClient) -> Self {
        let video = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, status_log, closed_flag) = (video.clone(), statuses.clone(), closed.clone());
        let task = tokio::spawn(async move {
            while !client.is_closed() {
                match client.next_event(Duration::from_secs(1)).await {
                    Some(ClientEvent::Media { media, .. }) if media.kind == MediaKind::Video => {
                        let arrival = Arrival {
                            at: Instant::now(),
                            media,
                        };
                        log.lock().unwrap().push(arrival);
                    }
                    Some(ClientEvent::Status { code, .. }) => status_log.lock().unwrap().push(code),
                    _ => {}
                }
            }
            closed_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Self {
            video,
            statuses,
            closed,
            task,
        }
    }

    /// The codes of the status messages so far (e.g. `NetStream.Play.UnpublishNotify`).
    pub fn statuses(&self) -> Vec<String> {
        self.statuses.lock().unwrap().clone()
    }

    /// Whether the server closed the connection.
    pub fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Pictures so far (no sequence headers), in arrival order.
    pub fn pictures(&self) -> Vec<Arrival> {
        let video = self.video.lock().unwrap();
        video
            .iter()
            .filter(|a| liverelay_rtmp_client::is_picture(&a.media))
            .cloned()
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

//! A minimal async RTMP client over the protocol core's `ClientSession`, for tests that check
//! individual messages, statuses and timings that ffmpeg does not expose.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use liverelay_rtmp::MediaKind;
use liverelay_rtmp::media::parse_video;
use liverelay_rtmp::session::{ClientConfig, ClientEvent, ClientSession, PublishKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
}

impl RtmpClient {
    pub async fn connect(addr: SocketAddr, app: &str) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect");
        socket.set_nodelay(true).unwrap();
        let config = ClientConfig::new(app, format!("rtmp://{addr}/{app}"));
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut client = Self {
            socket,
            session: ClientSession::new(config, &random, 0),
            events: VecDeque::new(),
        };
        client
            .expect(Duration::from_secs(5), |e| {
                matches!(e, ClientEvent::Connected { .. })
            })
            .await
            .expect("connect succeeds");
        client
    }

    /// Sends what the session has queued, then reads until an event arrives or `limit` passes.
    pub async fn next_event(&mut self, limit: Duration) -> Option<ClientEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.flush().await;
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let read =
                tokio::time::timeout_at(deadline, self.socket.read_buf(self.session.recv_buffer()))
                    .await;
            match read {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {
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
            self.socket.write_all(&bytes).await.expect("write");
        }
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

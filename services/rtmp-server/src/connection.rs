//! One client connection, driven: bytes from the socket into the session, the session's output
//! and a viewer's frames to the socket, one timer for the session, and the session's events
//! handed on (`events`: to the admission gate and the hub). What may happen is decided
//! elsewhere: the protocol in the session, admission in the gate, stream state in the hub.

mod close;
mod events;
mod express;
mod handshake;
mod play;

use std::collections::VecDeque;
use std::future::{Future, Pending};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::Either;
use liverelay_admission::{Admitted, ClientInfo, Gate, PlayBudget};
use liverelay_hub::{Publisher, ViewerItem};
use liverelay_rtmp::command::{StatusLevel, code};
use liverelay_rtmp::{ServerSession, SessionError};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Sleep;

pub use close::CloseReason;
use play::{Due, Playing};

use crate::config::RtmpServerConfig;
use crate::drain::{Phase, reached};
use crate::metrics::RtmpMetrics;
use crate::write::{Transport, try_write_all_vectored, write_all_vectored};

/// Free receive space kept for a publisher's and a player's reads.
const PUBLISHER_READ: usize = 64 * 1024;
pub(crate) const PLAYER_READ: usize = 1024;
/// Batch containers keep at most this many entries' room after a batch this small: a steady
/// player's batch is a frame or two, and a burst (the GOP at start, a catch-up) must not
/// leave its capacity with every viewer. A player whose batches stay large (a loaded server)
/// keeps its room rather than reallocating on every write.
const BATCH_KEEP: usize = 8;

/// The first byte of a TLS ClientHello (record type: handshake); an RTMP C0 is 3.
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// Random bytes the handshake needs (S1 and S2 bodies).
const HANDSHAKE_RANDOM: usize = 3072;

struct Publishing {
    stream_id: u32,
    publisher: Admitted<Publisher>,
}

pub struct Connection<S> {
    socket: S,
    id: u64,
    peer: SocketAddr,
    config: Arc<RtmpServerConfig>,
    gate: Arc<Gate>,
    metrics: RtmpMetrics,
    phase: watch::Receiver<Phase>,
    session: ServerSession,
    /// Set once `connect` is accepted; its app may differ from the requested one.
    client: Option<Arc<ClientInfo>>,
    /// Boxed: few connections publish, and inline it would enlarge every player's task.
    publishing: Option<Box<Publishing>>,
    playing: Option<Playing>,
    closing: Option<CloseReason>,
    plays: PlayBudget,
    /// Bytes for the socket: the session's output and a viewer's frames.
    out: VecDeque<Bytes>,
    items: Vec<ViewerItem>,
}

/// What woke the connection.
enum Wake {
    Read(std::io::Result<usize>),
    Play(Due),
    Withdrawn(&'static str, String),
    /// The session's timer (`connect` or publish/play deadline, ping, idle) is due.
    Timer,
    /// The server started draining: clients that can are asked to reconnect (elsewhere).
    Draining,
    Closing,
}

impl<S: Transport> Connection<S> {
    pub fn new(
        socket: S,
        (id, peer): (u64, SocketAddr),
        config: Arc<RtmpServerConfig>,
        (gate, metrics): (Arc<Gate>, RtmpMetrics),
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
            gate,
            metrics,
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

    /// The connection's whole life; its future is the task every client costs, kept small.
    /// An async block rather than an `async fn`: that would hold `self` twice (the argument
    /// and the moved-in local, rust-lang/rust#62958), a whole `Connection` per client.
    #[expect(clippy::manual_async_fn, reason = "an async fn holds self twice")]
    pub fn run(mut self) -> impl Future<Output = CloseReason> + Send {
        async move {
            let with_c2 = match self.handshake().await {
                Ok(with_c2) => with_c2,
                Err(reason) => return reason,
            };
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
            let mut phase = self.phase.clone();
            // Resolves once; after that it is never polled again (`draining_told`).
            let draining = async move { reached(&mut phase, Phase::Draining).await };
            tokio::pin!(draining);
            let mut draining_told = false;
            let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
            tokio::pin!(sleep);
            let mut timer = SessionTimer { sleep, armed: None };
            loop {
                if let Err(reason) = self.flush().await {
                    return reason;
                }
                if let Some(reason) = self.closing.take() {
                    return reason;
                }
                let step = if self.playing.as_ref().is_some_and(Playing::has_backlog) {
                    self.write_frames().await
                } else {
                    self.go_direct();
                    let draining = (!draining_told).then_some(&mut draining);
                    let wake = self.wait(&mut closing, draining, &mut timer).await;
                    // Whatever woke the task may make it write: the publisher stops first.
                    if let Some(p) = self.playing.as_mut() {
                        p.take_back(&mut self.out);
                    }
                    draining_told |= matches!(wake, Wake::Draining);
                    self.on_wake(wake).await
                };
                if let Err(reason) = step {
                    // Whatever the session queued (an _error, a status) still goes out first.
                    let _ = self.flush().await;
                    return reason;
                }
            }
        }
    }

    /// Hands the player's frames to the stream's publisher while nothing else is to be written
    /// ([`express`]): plain TCP, `rtmp.direct_writes`, no write coalescing.
    fn go_direct(&mut self) {
        let (Some(p), Some(socket)) = (self.playing.as_mut(), self.socket.direct()) else {
            return;
        };
        if self.config.direct_writes
            && self.config.write_coalesce.is_zero()
            && self.out.is_empty()
            && self.closing.is_none()
            && p.go_direct(socket, &self.session, &self.metrics.direct_players)
        {
            // A direct player's last batch may have been its start (the cached GOP); no
            // later small batch would give that room back.
            self.shrink_batch();
        }
    }

    /// Waits for the socket, the play, a withdrawal, the session's timer or the drain.
    async fn wait(
        &mut self,
        closing: &mut (impl Future<Output = ()> + Unpin),
        draining: Option<&mut (impl Future<Output = ()> + Unpin)>,
        timer: &mut SessionTimer<'_>,
    ) -> Wake {
        // A publisher reads in large pieces; a player only receives acks and commands, and
        // keeping its buffer small keeps thousands of players cheap.
        let room = if self.publishing.is_some() {
            PUBLISHER_READ
        } else {
            PLAYER_READ
        };
        let timer = timer.until(self.session.poll_timeout());
        let (due, play_withdrawn) = match self.playing.as_mut() {
            Some(p) => {
                let (due, withdrawn) = p.wait();
                (Some(due), Some(withdrawn))
            }
            None => (None, None),
        };
        let publish_withdrawn = self.publishing.as_mut().map(|p| p.publisher.withdrawn());
        let recv = self.session.recv_buffer();
        if recv.capacity() - recv.len() < room / 4 {
            recv.reserve(room);
        }
        // In order, rather than from a random branch: a player is woken by frames dozens of
        // times a second, and the branches after `due` (the timer) are then never polled.
        // Everything the client sends still comes first.
        tokio::select! {
            biased;
            () = closing => Wake::Closing,
            () = or_pending(draining) => Wake::Draining,
            r = self.socket.read_buf(recv) => Wake::Read(r),
            why = or_pending(publish_withdrawn) => Wake::Withdrawn("publish", why),
            why = or_pending(play_withdrawn) => Wake::Withdrawn("play", why),
            due = or_pending(due) => Wake::Play(due),
            () = or_pending(timer) => Wake::Timer,
        }
    }

    async fn on_wake(&mut self, wake: Wake) -> Result<(), CloseReason> {
        match wake {
            Wake::Read(Ok(0)) => Err(CloseReason::PeerClosed),
            Wake::Read(Err(e)) => Err(CloseReason::Io(e)),
            Wake::Read(Ok(_)) => {
                self.session.note_received(Instant::now());
                self.process_input().await
            }
            Wake::Play(Due::Frames) => {
                let window = self.config.write_coalesce;
                if self.playing.as_mut().is_some_and(|p| p.write_now(window)) {
                    self.write_frames().await
                } else {
                    Ok(())
                }
            }
            Wake::Play(Due::Held) => self.write_frames().await,
            Wake::Timer => self
                .session
                .handle_timeout(Instant::now())
                .map_err(CloseReason::timer),
            Wake::Withdrawn(what, why) => Err(CloseReason::Revoked(what, why)),
            Wake::Draining => {
                // Enhanced RTMP v2: a client that announced it reconnects at once, to the
                // same URL (the load balancer sends it to another pod); the others are told
                // and closed when the grace period is over.
                if self
                    .session
                    .request_reconnect(None, "server draining; connect again")
                {
                    tracing::info!(client = self.id, "asked the client to reconnect (draining)");
                }
                Ok(())
            }
            Wake::Closing => {
                self.say_goodbye();
                Err(CloseReason::Shutdown)
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

    /// Decodes what was received and answers the session's events; input the session held
    /// back until a decision (connect, publish) is decoded once it is answered. Then arms or
    /// checks the session's timer.
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

    /// Sends the viewer its next batch in one vectored write, with the session's output.
    async fn write_frames(&mut self) -> Result<(), CloseReason> {
        let Some(p) = self.playing.as_mut() else {
            return Ok(());
        };
        let max = self.config.max_batch_frames;
        p.next_batch(&mut self.items, &mut self.out, &mut self.session, max);
        let batch = self.out.len();
        let result = self.flush().await;
        if batch <= BATCH_KEEP {
            self.shrink_batch();
        }
        result
    }

    fn shrink_batch(&mut self) {
        if self.out.capacity() > BATCH_KEEP {
            self.out.shrink_to(BATCH_KEEP);
        }
        if self.items.capacity() > BATCH_KEEP {
            self.items.shrink_to(BATCH_KEEP);
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
}

/// The session's timer, kept from one wait to the next: a `Sleep` made for each wait would be
/// inserted into the runtime's timer wheel and removed again on every frame of every player.
struct SessionTimer<'a> {
    sleep: Pin<&'a mut Sleep>,
    armed: Option<Instant>,
}

impl SessionTimer<'_> {
    /// Due at `deadline`, or never; re-armed only when the deadline moved.
    fn until(&mut self, deadline: Option<Instant>) -> Option<Pin<&mut Sleep>> {
        let deadline = deadline?;
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline.into());
            self.armed = Some(deadline);
        }
        Some(self.sleep.as_mut())
    }
}

/// `future`'s output, or never when there is none: a `select!` branch with nothing to wait
/// for. Not an `async fn`, which would hold `future` twice (see [`Connection::run`]).
fn or_pending<F: Future>(future: Option<F>) -> Either<F, Pending<F::Output>> {
    match future {
        Some(future) => Either::Left(future),
        None => Either::Right(std::future::pending()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use liverelay_hub::{Hub, HubConfig};
    use liverelay_types::OpenPolicy;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use crate::write::SharedTcp;

    /// A connection over loopback, and its client's socket.
    pub(crate) async fn connection() -> (Connection<SharedTcp>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (socket, peer) = listener.accept().await.unwrap();
        let gate = Gate::new(Hub::new(HubConfig::default()), Arc::new(OpenPolicy));
        let (phase, watch) = watch::channel(Phase::Running);
        // Not closed under the connection (it would start closing).
        std::mem::forget(phase);
        let conn = Connection::new(
            SharedTcp::new(socket),
            (1, peer),
            Arc::new(RtmpServerConfig::default()),
            (Arc::new(gate), RtmpMetrics::default()),
            watch,
            Instant::now(),
        );
        (conn, client)
    }

    /// The handshake needs 3 KiB of input at once; a player needs a fraction of it later, and
    /// the rest would stay with every player for as long as it plays.
    #[tokio::test]
    async fn a_player_keeps_a_small_receive_buffer_after_the_handshake() {
        let (mut conn, mut client) = connection().await;
        // C0 + a simple C1 + C2, in one write: one read takes them all.
        let mut hello = vec![3u8];
        hello.resize(1 + 2 * 1536, 0);
        client.write_all(&hello).await.unwrap();
        conn.handshake().await.unwrap().unwrap();
        let recv = conn.session.recv_buffer();
        assert!(recv.is_empty());
        // Room the buffer holds: reserving reclaims all of its allocation.
        recv.reserve(PLAYER_READ);
        assert!(
            recv.capacity() <= PLAYER_READ,
            "the receive buffer keeps {} bytes",
            recv.capacity()
        );
    }
}

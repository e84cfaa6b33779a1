//! Accepting connections, within the connection limit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use liverelay_hub::Hub;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, info_span, warn};

use crate::config::RtmpServerConfig;
use crate::connection::{CloseReason, Connection, TLS_HANDSHAKE};
use crate::drain::{Drain, Phase, reached};
use crate::metrics::RtmpMetrics;
use crate::slots::{Full, Slot, Slots};
use crate::write::SharedTcp;
use liverelay_admission::{Access, AdmissionMetrics, ClientInfo, Clients, Gate, Sessions};
use liverelay_metrics::{KindLabel, ReasonLabel};
use liverelay_types::StreamPolicy;

/// What every connection shares: where streams live, who may use them, and the role's say.
/// The listener admits its clients through a [`Gate`] made of these.
#[derive(Clone)]
pub struct Services {
    pub hub: Hub,
    pub policy: Arc<dyn StreamPolicy>,
    pub access: Arc<dyn Access>,
    pub sessions: Sessions,
    /// Connections and handshakes.
    pub metrics: RtmpMetrics,
    /// Sessions admitted (the gate counts them).
    pub admission: AdmissionMetrics,
}

pub struct RtmpServer {
    listener: TcpListener,
    config: Arc<RtmpServerConfig>,
    gate: Arc<Gate>,
    metrics: RtmpMetrics,
    /// RTMPS: every connection starts with a TLS handshake.
    tls: Option<TlsAcceptor>,
    /// `max_connections` (and the per-address limit): this listener's own, or shared with
    /// the others of the process.
    slots: Arc<Slots>,
}

impl RtmpServer {
    pub async fn bind(
        addr: SocketAddr,
        config: RtmpServerConfig,
        services: Services,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let Services {
            hub,
            policy,
            access,
            sessions,
            metrics,
            admission,
        } = services;
        let gate = Gate::new(hub, policy).with_clients(Clients {
            access,
            sessions,
            metrics: admission,
            // A name access chooses follows the rule the session checks a client's names by.
            max_name_len: config.session.max_name_len,
        });
        let slots = Arc::new(Slots::new(
            config.max_connections,
            config.max_connections_per_ip,
        ));
        Ok(Self {
            listener,
            config: Arc::new(config),
            gate: Arc::new(gate),
            metrics,
            tls: None,
            slots,
        })
    }

    /// Counts this listener's connections against `other`'s limits (`max_connections`, per
    /// client address): one limit for the plain and the RTMPS listener of a process.
    pub fn sharing_limits_with(mut self, other: &RtmpServer) -> Self {
        self.slots = other.slots.clone();
        self
    }

    /// Makes this an RTMPS listener: connections start with a TLS handshake (the config's
    /// certificate resolver decides what each new handshake presents).
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(tls));
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `drain` leaves the running phase; then closes the listening
    /// socket (new connections are refused) and returns once every connection has ended.
    pub async fn run(self, drain: Drain) {
        let slots = self.slots.clone();
        let started = Instant::now();
        let mut phase = drain.watch();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = reached(&mut phase, Phase::Draining) => break,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let id = ClientInfo::next_id();
            let slot = match slots.try_acquire(peer.ip()) {
                Ok(slot) => slot,
                Err(full) => {
                    let (limit, what) = match full {
                        Full::Global(limit) => (limit, "limit reached"),
                        Full::PerAddress(limit) => (limit, "limit per client address reached"),
                    };
                    warn!(conn = id, %peer, limit, "connection refused: {what}");
                    self.metrics
                        .connections
                        .get_or_create(&KindLabel { kind: "refused" })
                        .inc();
                    continue;
                }
            };
            if let Err(e) = socket.set_nodelay(self.config.tcp_nodelay) {
                warn!(conn = id, %peer, error = %e, "set TCP_NODELAY failed");
            }
            self.metrics
                .connections
                .get_or_create(&KindLabel { kind: "accepted" })
                .inc();
            self.metrics.connections_open.inc();
            let span = info_span!("rtmp", conn = id, %peer, tls = self.tls.is_some(), app = tracing::field::Empty, stream = tracing::field::Empty);
            let (config, phase) = (self.config.clone(), drain.watch());
            let shared = (self.gate.clone(), self.metrics.clone());
            let metrics = self.metrics.clone();
            // Two task types, so a plain connection's task is not sized for a TLS one.
            match self.tls.clone() {
                None => {
                    let socket = SharedTcp::new(socket);
                    let conn = Connection::new(socket, (id, peer), config, shared, phase, started);
                    spawn_connection(conn.run(), metrics, slot, span);
                }
                Some(acceptor) => {
                    let run = async move {
                        match accept_tls(socket, &acceptor, &config).await {
                            // Made in place: a `Connection` in a local would stay in the
                            // task beside the one its `run` holds.
                            Ok(stream) => {
                                Connection::new(stream, (id, peer), config, shared, phase, started)
                                    .run()
                                    .await
                            }
                            Err(reason) => {
                                let label = match reason {
                                    CloseReason::WrongProtocol(_) => "wrong_protocol",
                                    CloseReason::HandshakeTimeout => "timeout",
                                    _ => "tls",
                                };
                                shared
                                    .1
                                    .handshake_failures
                                    .get_or_create(&ReasonLabel { reason: label })
                                    .inc();
                                reason
                            }
                        }
                    };
                    spawn_connection(run, metrics, slot, span);
                }
            }
        }
        drop(self.listener);
        info!(open = slots.open(), "draining: no new connections");
        // Every connection holds one permit; all back means all ended (with shared limits,
        // those of every listener sharing them).
        slots.all_free().await;
        info!("all RTMP connections ended");
    }
}

fn spawn_connection(
    run: impl Future<Output = CloseReason> + Send + 'static,
    metrics: RtmpMetrics,
    slot: Slot,
    span: tracing::Span,
) {
    tokio::spawn(connection_task(run, metrics, slot, span));
}

/// What a connection's task runs: `run`, then the bookkeeping of its end. A combinator rather
/// than an `async` block around `run.await`: that block would hold `run` twice (the captured
/// future and the one being awaited, rust-lang/rust#62958), doubling every client's task.
fn connection_task(
    run: impl Future<Output = CloseReason> + Send + 'static,
    metrics: RtmpMetrics,
    slot: Slot,
    span: tracing::Span,
) -> impl Future<Output = ()> + Send + 'static {
    run.map(move |reason| {
        info!(reason = %reason, "connection closed");
        metrics.connections_open.dec();
        drop(slot);
    })
    .instrument(span)
}

/// The TLS handshake of an RTMPS connection, within the RTMP handshake timeout. A client that
/// does not start with a TLS ClientHello (a plain RTMP C0 is 0x03) is turned away before
/// rustls sees it, with a reason that says so.
async fn accept_tls(
    socket: TcpStream,
    acceptor: &TlsAcceptor,
    config: &RtmpServerConfig,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, CloseReason> {
    let handshake = async {
        let mut first = [0u8; 1];
        match socket.peek(&mut first).await {
            Ok(0) => return Err(CloseReason::PeerClosed),
            Ok(_) if first[0] == TLS_HANDSHAKE => {}
            Ok(_) if first[0] == 3 => {
                return Err(CloseReason::WrongProtocol(
                    "plain RTMP client on the RTMPS port (use the plain RTMP port or rtmps://)",
                ));
            }
            Ok(_) => {
                return Err(CloseReason::WrongProtocol(
                    "not a TLS client on the RTMPS port",
                ));
            }
            Err(e) => return Err(CloseReason::Io(e)),
        }
        acceptor.accept(socket).await.map_err(CloseReason::Tls)
    };
    tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .unwrap_or(Err(CloseReason::HandshakeTimeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::tests::connection;

    /// Every client costs one task the size of this future for as long as it is connected:
    /// with thousands of players it was half their memory when it held the connection twice
    /// over (9 KiB).
    #[tokio::test]
    async fn a_clients_task_stays_small() {
        let (conn, _client) = connection().await;
        let slots = Slots::new(1, 1);
        let slot = slots.try_acquire([127, 0, 0, 1].into()).ok().unwrap();
        let task = connection_task(
            conn.run(),
            RtmpMetrics::default(),
            slot,
            tracing::Span::none(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 3 * 1024, "a connection's task is {size} bytes");
    }
}

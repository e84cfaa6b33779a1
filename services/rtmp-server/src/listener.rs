//! Accepting connections, within the connection limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use liverelay_hub::Hub;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, info, info_span, warn};

use crate::access::Access;
use crate::config::RtmpServerConfig;
use crate::connection::Connection;
use crate::drain::{Drain, Phase, reached};
use crate::policy::StreamPolicy;
use crate::sessions::Sessions;
use liverelay_metrics::{KindLabel, Metrics};

/// What every connection shares: where streams live, who may use them, and the role's say.
#[derive(Clone)]
pub struct Services {
    pub hub: Hub,
    pub policy: Arc<dyn StreamPolicy>,
    pub access: Arc<dyn Access>,
    pub sessions: Sessions,
    pub metrics: Arc<Metrics>,
}

pub struct RtmpServer {
    listener: TcpListener,
    config: Arc<RtmpServerConfig>,
    services: Services,
}

impl RtmpServer {
    pub async fn bind(
        addr: SocketAddr,
        config: RtmpServerConfig,
        services: Services,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            config: Arc::new(config),
            services,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `drain` leaves the running phase; then closes the listening
    /// socket (new connections are refused) and returns once every connection has ended.
    pub async fn run(self, drain: Drain) {
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let next_id = AtomicU64::new(1);
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
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                warn!(conn = id, %peer, limit = self.config.max_connections, "connection refused: limit reached");
                self.services
                    .metrics
                    .connections
                    .get_or_create(&KindLabel { kind: "refused" })
                    .inc();
                continue;
            };
            if let Err(e) = socket.set_nodelay(self.config.tcp_nodelay) {
                warn!(conn = id, %peer, error = %e, "set TCP_NODELAY failed");
            }
            let conn = Connection::new(
                socket,
                (id, peer),
                self.config.clone(),
                self.services.clone(),
                drain.watch(),
                started,
            );
            self.services
                .metrics
                .connections
                .get_or_create(&KindLabel { kind: "accepted" })
                .inc();
            self.services.metrics.connections_open.inc();
            let metrics = self.services.metrics.clone();
            let span = info_span!("rtmp", conn = id, %peer, app = tracing::field::Empty, stream = tracing::field::Empty);
            tokio::spawn(
                async move {
                    let reason = conn.run().await;
                    info!(reason = %reason, "connection closed");
                    metrics.connections_open.dec();
                    drop(slot);
                }
                .instrument(span),
            );
        }
        drop(self.listener);
        info!(
            open = self.config.max_connections - slots.available_permits(),
            "draining: no new connections"
        );
        // Every connection holds one permit; all back means all ended.
        let _ = slots.acquire_many(self.config.max_connections as u32).await;
        info!("all RTMP connections ended");
    }
}

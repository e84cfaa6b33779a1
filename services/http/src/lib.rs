//! The HTTP side of every role: `/healthz` (the process runs), `/readyz` (it accepts work) and
//! `GET /metrics` (Prometheus) and `GET /v1/streams` (what is live here); for roles that serve
//! viewers, HTTP-FLV playback ([`flv_router`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use liverelay_hub::Hub;
use liverelay_metrics::MetricsRegistry;
use liverelay_tls::rustls;
use liverelay_tls::tokio_rustls::TlsAcceptor;
use serde::Serialize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::{debug, warn};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

mod conn;
mod flv;
mod hls;
mod metrics;
mod reply;
mod viewers;
mod watch;

pub use flv::{FlvService, flv_router};
pub use hls::{HlsService, LiveCheck, TokenCheck, hls_router};
pub use metrics::{HlsRequestLabel, HttpMetrics};
pub use viewers::HlsViewers;
pub use watch::{WatchService, watch_router};

/// Whether the process should receive traffic; flipped on once listeners are up.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What `/healthz`, `/readyz` and `/metrics` read.
#[derive(Clone)]
struct Health {
    ready: Readiness,
    metrics: Arc<MetricsRegistry>,
}

#[derive(Serialize)]
struct StreamView {
    app: String,
    name: String,
    live: bool,
    viewers: u64,
    frames_in: u64,
    bytes_in: u64,
    frames_dropped: u64,
    bytes_out: u64,
    bitrate_bps: f64,
    frame_rate: f64,
}

/// A node's routes: [`health_router`] and `/v1/streams` (what is live in its hub).
pub fn router(ready: Readiness, hub: Hub, metrics: Arc<MetricsRegistry>) -> Router {
    health_router(ready, metrics).merge(
        Router::new()
            .route("/v1/streams", get(streams))
            .with_state(hub),
    )
}

/// `/healthz` (the process runs), `/readyz` (it accepts work) and `/metrics`: what every role
/// serves, control included.
pub fn health_router(ready: Readiness, metrics: Arc<MetricsRegistry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Health { ready, metrics })
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format else.
async fn metrics_text(State(s): State<Health>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = s.metrics.negotiate(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn readyz(State(s): State<Health>) -> (StatusCode, &'static str) {
    if s.ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn streams(State(hub): State<Hub>) -> Json<serde_json::Value> {
    let list: Vec<StreamView> = hub
        .streams()
        .into_iter()
        .map(|st| StreamView {
            app: st.key.app,
            name: st.key.name,
            live: st.live,
            viewers: st.viewers,
            frames_in: st.frames_in,
            bytes_in: st.bytes_in,
            frames_dropped: st.frames_dropped,
            bytes_out: st.bytes_out,
            bitrate_bps: st.rates.bitrate_bps,
            frame_rate: st.rates.frame_rate,
        })
        .collect();
    Json(serde_json::json!({ "streams": list }))
}

/// What one client may cost an HTTP listener (`http.*` settings).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_streams_per_connection: u32,
}

impl HttpLimits {
    pub fn from_settings(h: &liverelay_config::HttpSettings) -> Self {
        Self {
            max_connections: h.max_connections,
            header_read_timeout: Duration::from_secs(h.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(h.idle_timeout_secs),
            max_body_bytes: h.max_body_bytes,
            max_streams_per_connection: h.max_streams_per_connection,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::from_settings(&liverelay_config::HttpSettings::default())
    }
}

pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    metrics: HttpMetrics,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            router,
            tls: None,
            limits: HttpLimits::default(),
            metrics: HttpMetrics::default(),
        })
    }

    /// Serves HTTPS instead of HTTP.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts connections accepted and refused in these families.
    pub fn with_metrics(mut self, metrics: HttpMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until the task is dropped. A connection beyond `max_connections` is closed at
    /// once; each one is served (after its TLS handshake) with the header-read and idle
    /// timeouts, so a client that trickles or stalls costs one slot for a bounded time.
    pub async fn run(self) -> std::io::Result<()> {
        let limits = self.limits;
        let app = conn::limit_bodies(self.router, limits.max_body_bytes);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let tls = self.tls.map(TlsAcceptor::from);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams_per_connection);
        let builder = Arc::new(builder);
        let mut refusals = conn::Refusals::default();
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                self.metrics.count("refused");
                refusals.refused(peer, limits.max_connections);
                continue;
            };
            self.metrics.count("accepted");
            let _ = tcp.set_nodelay(true);
            let coalesce = conn::Coalesce::default();
            let io = conn::Idle::new(tcp, peer, limits.idle_timeout, coalesce.clone());
            let (app, builder, tls) = (app.clone(), builder.clone(), tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                // Handlers that admit clients (HTTP-FLV) know them by address.
                let app = app.map_request(move |mut req: axum::http::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    // Only an HTTP/1 answer has the connection to itself.
                    if req.version() <= axum::http::Version::HTTP_11 {
                        req.extensions_mut().insert(coalesce.clone());
                    }
                    req
                });
                let service = TowerToHyperService::new(app);
                let served = match tls {
                    None => builder.serve_connection(TokioIo::new(io), service).await,
                    Some(tls) => {
                        match tokio::time::timeout(limits.header_read_timeout, tls.accept(io)).await
                        {
                            Ok(Ok(io)) => builder.serve_connection(TokioIo::new(io), service).await,
                            Ok(Err(e)) => {
                                return debug!(%peer, error = %e, "HTTPS handshake failed");
                            }
                            Err(_) => return warn!(%peer, "HTTPS: TLS handshake timed out"),
                        }
                    }
                };
                if let Err(e) = served {
                    conn::log_end(peer, &*e, &limits);
                }
            });
        }
    }
}

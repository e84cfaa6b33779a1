//! The HTTP side of every role: `/healthz` (the process runs), `/readyz` (it accepts work) and
//! `GET /metrics` (Prometheus) and `GET /v1/streams` (what is live here).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use liverelay_hub::Hub;
use liverelay_metrics::Metrics;
use liverelay_tls::rustls;
use liverelay_tls::tls_incoming;
use liverelay_tls::tokio_rustls::server::TlsStream;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

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

#[derive(Clone)]
struct AppState {
    ready: Readiness,
    hub: Hub,
    metrics: Arc<Metrics>,
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

pub fn router(ready: Readiness, hub: Hub, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/streams", get(streams))
        .with_state(AppState {
            ready,
            hub,
            metrics,
        })
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format else.
async fn metrics_text(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = s.metrics.negotiate(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn streams(State(s): State<AppState>) -> Json<serde_json::Value> {
    let list: Vec<StreamView> = s
        .hub
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

pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            router,
            tls: None,
        })
    }

    /// Serves HTTPS instead of HTTP.
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        self.tls = tls;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self) -> std::io::Result<()> {
        match self.tls {
            None => axum::serve(self.listener, self.router).await,
            Some(tls) => {
                let addr = self.listener.local_addr()?;
                let incoming = tls_incoming(self.listener, tls, "HTTPS");
                axum::serve(TlsListener { incoming, addr }, self.router).await
            }
        }
    }
}

/// Connections whose TLS handshake succeeded, for axum.
struct TlsListener {
    incoming: ReceiverStream<std::io::Result<TlsStream<TcpStream>>>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr();
                    return (stream, peer.unwrap_or(self.addr));
                }
                Some(Err(_)) => continue,
                // The accept loop only ends with the listener.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

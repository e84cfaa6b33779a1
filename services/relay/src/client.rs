//! The edge side: open a subscription to the ingest that owns a stream.

use std::path::PathBuf;
use std::time::Duration;

use liverelay_proto::grpc_client_tls;
use liverelay_types::StreamId;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Streaming};

use crate::pb::relay_client::RelayClient;
use crate::pb::{RelayMessage, SubscribeRequest};
use liverelay_types::ClusterToken;

/// TLS towards the ingests: the CAs to trust and the name their certificates carry.
#[derive(Clone)]
pub struct RelayClientTls {
    pub ca_pem: Vec<u8>,
    pub domain: Option<String>,
    /// Certificate and key files shown to servers that check client certificates (mutual
    /// TLS); read at each connection, so a rotated certificate is used from the next one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl RelayClientTls {
    /// tonic's TLS settings for a connection now.
    pub fn config(&self) -> std::io::Result<ClientTlsConfig> {
        grpc_client_tls(
            Some(&self.ca_pem),
            self.domain.as_deref(),
            self.identity.as_ref(),
        )
    }
}

#[derive(Clone)]
pub struct RelayClientConfig {
    pub token: ClusterToken,
    /// `None`: plain HTTP/2 (inside a trusted network or a service mesh).
    pub tls: Option<RelayClientTls>,
    /// Pod id of this edge, for the ingest's logs.
    pub subscriber: String,
    pub connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("bad relay address {0}")]
    BadAddress(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("subscribe refused: {0}")]
    Refused(#[from] tonic::Status),
}

/// Subscribes to `key` on the ingest at `addr` (host:port).
pub async fn subscribe(
    addr: &str,
    key: &StreamId,
    config: &RelayClientConfig,
) -> Result<Streaming<RelayMessage>, RelayError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|_| RelayError::BadAddress(addr.to_owned()))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // A dead ingest (kill -9, lost node) must be noticed without waiting for TCP timeouts.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2));
    if let Some(tls) = &config.tls {
        let tls_config = tls
            .config()
            .map_err(|e| RelayError::Connect(addr.to_owned(), format!("TLS setup: {e}")))?;
        endpoint = endpoint
            .tls_config(tls_config)
            .map_err(|e| RelayError::Connect(addr.to_owned(), format!("TLS setup: {e}")))?;
    }
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|e| RelayError::Connect(addr.to_owned(), e.to_string()))?;
    let mut request = Request::new(SubscribeRequest {
        app: key.app.clone(),
        name: key.name.clone(),
        subscriber: config.subscriber.clone(),
    });
    liverelay_proto::token::attach(&config.token, &mut request)?;
    liverelay_telemetry::inject(&tracing::Span::current(), request.metadata_mut());
    Ok(RelayClient::new(channel)
        .subscribe(request)
        .await?
        .into_inner())
}

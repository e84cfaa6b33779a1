//! The edge side: subscriptions to the ingests that own streams. All the streams an edge pulls
//! from one ingest share one HTTP/2 connection, which lives as long as one of them does.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use liverelay_proto::grpc_client_tls;
use liverelay_types::{ClusterToken, StreamId};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Streaming};

use crate::convert::{RelayEvent, decode, message_limit};
use crate::pb::relay_client::RelayClient as GrpcClient;
use crate::pb::{RelayMessage, SubscribeRequest};

/// TLS towards the ingests: the CAs to trust and the name their certificates carry.
#[derive(Clone)]
pub struct RelayClientTls {
    pub ca_pem: Vec<u8>,
    pub domain: Option<String>,
    /// Certificate and key files shown to servers that check client certificates (mutual
    /// TLS); read whenever a connection to an ingest is set up, so a rotated certificate is
    /// used from the next one.
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
    /// The largest frame payload accepted: this pod's `rtmp.max_message_size`, so that every
    /// frame an ingest with the same setting accepted reaches the edge.
    pub max_payload: u32,
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

/// Subscribes to streams on ingests, one connection per ingest address.
pub struct RelayClient {
    config: RelayClientConfig,
    /// Open connections by ingest address; a connection closes when its last subscription ends.
    connections: Mutex<HashMap<String, Weak<Channel>>>,
}

impl RelayClient {
    pub fn new(config: RelayClientConfig) -> Self {
        Self {
            config,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Subscribes to `key` on the ingest at `addr` (host:port).
    pub async fn subscribe(&self, addr: &str, key: &StreamId) -> Result<Subscription, RelayError> {
        let channel = self.connection(addr)?;
        let mut request = Request::new(SubscribeRequest {
            app: key.app.clone(),
            name: key.name.clone(),
            subscriber: self.config.subscriber.clone(),
            max_payload: self.config.max_payload,
        });
        liverelay_proto::token::attach(&self.config.token, &mut request)?;
        liverelay_telemetry::inject(&tracing::Span::current(), request.metadata_mut());
        let messages = GrpcClient::new((*channel).clone())
            .max_decoding_message_size(message_limit(self.config.max_payload as usize))
            .subscribe(request)
            .await
            .map_err(|status| match status.code() {
                // The lazy connection could not be set up (or broke): not the ingest's answer.
                tonic::Code::Unavailable => {
                    RelayError::Connect(addr.to_owned(), status.message().to_owned())
                }
                _ => RelayError::Refused(status),
            })?
            .into_inner();
        Ok(Subscription {
            messages,
            _connection: channel,
        })
    }

    /// The connection to `addr`, shared with every other subscription there. It is set up
    /// lazily by the first request, so no lock is held while connecting; a broken one is
    /// re-established by the next request.
    fn connection(&self, addr: &str) -> Result<Arc<Channel>, RelayError> {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = connections.get(addr).and_then(Weak::upgrade) {
            return Ok(channel);
        }
        connections.retain(|_, c| c.strong_count() > 0);
        let channel = Arc::new(self.endpoint(addr)?.connect_lazy());
        connections.insert(addr.to_owned(), Arc::downgrade(&channel));
        Ok(channel)
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, RelayError> {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|_| RelayError::BadAddress(addr.to_owned()))?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            // A dead ingest (kill -9, lost node) must be noticed without waiting for TCP
            // timeouts, also while no frame flows.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.config.tls {
            let setup = |e: &dyn std::fmt::Display| {
                RelayError::Connect(addr.to_owned(), format!("TLS setup: {e}"))
            };
            let tls_config = tls.config().map_err(|e| setup(&e))?;
            endpoint = endpoint.tls_config(tls_config).map_err(|e| setup(&e))?;
        }
        Ok(endpoint)
    }

    /// Ingests this client holds a connection to.
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        let connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections
            .values()
            .filter(|c| c.strong_count() > 0)
            .count()
    }
}

/// One stream's subscription; keeps its ingest connection open.
pub struct Subscription {
    messages: Streaming<RelayMessage>,
    _connection: Arc<Channel>,
}

impl Subscription {
    /// The next event; `None` when the ingest closed the subscription without an end.
    pub async fn next(&mut self) -> Result<Option<RelayEvent>, tonic::Status> {
        loop {
            match self.messages.message().await? {
                None => return Ok(None),
                Some(message) => {
                    if let Some(event) = decode(message) {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }
}

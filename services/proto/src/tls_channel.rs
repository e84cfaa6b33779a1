//! A long-lived gRPC channel over TLS whose TLS settings are read at each connection.
//!
//! tonic's own TLS reads the client certificate once, when the endpoint is configured, and a
//! lazy channel reuses that for every reconnection: a rotated client certificate would never be
//! shown. This connector reads the CA, certificate and key files each time the channel opens a
//! connection (the first one, and after every broken one), so a certificate cert-manager
//! renewed is used from the next connection; connections already open keep theirs.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use liverelay_tls::CertFiles;
use liverelay_tls::rustls::ClientConfig;
use liverelay_tls::rustls::pki_types::ServerName;
use liverelay_tls::tokio_rustls::TlsConnector;
use liverelay_tls::tokio_rustls::client::TlsStream;
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

/// What a client's TLS is made of, as file paths read at each connection.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM CA bundle the server's certificate must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Name the server's certificate is checked against (and sent as SNI); default: the host.
    pub domain: Option<String>,
    /// Certificate and key shown to servers that require one (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The rustls settings of a connection made now (HTTP/2 by ALPN, as gRPC needs).
    pub fn client_config(&self) -> Result<ClientConfig, liverelay_tls::TlsError> {
        let identity = self.identity.as_ref().map(|(c, k)| CertFiles::new(c, k));
        let mut config = liverelay_tls::client_config_now(self.ca.as_deref(), identity.as_ref())?;
        config.alpn_protocols = vec![liverelay_tls::ALPN_H2.to_vec()];
        Ok(config)
    }
}

/// A lazy channel to `https_url` (`https://host:port`) that sets up TLS from `files` at each
/// connection. `endpoint` carries the other settings (timeouts, keep-alive); its URL is
/// replaced. Fails now if the URL is not `https://` or the files do not make a TLS setup, so a
/// misconfigured pod does not start.
pub fn tls_channel(
    https_url: &str,
    files: TlsFiles,
    endpoint: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, TlsChannelError> {
    let uri: Uri = https_url
        .parse()
        .map_err(|_| TlsChannelError::Url(https_url.to_owned()))?;
    let (Some("https"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(TlsChannelError::Url(https_url.to_owned()));
    };
    files.client_config()?;
    // tonic would insist on its own TLS for an https:// URL; the connector below does TLS, so
    // the channel is given the same address as http://.
    let plain = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| TlsChannelError::Url(https_url.to_owned()))?;
    Ok(endpoint(plain).connect_with_connector_lazy(Connector(Arc::new(files))))
}

#[derive(Debug, thiserror::Error)]
pub enum TlsChannelError {
    #[error("not an https://host:port URL: {0}")]
    Url(String),
    #[error(transparent)]
    Tls(#[from] liverelay_tls::TlsError),
}

/// Opens TCP then TLS to the URI's host and port, with settings read from the files now.
#[derive(Clone)]
struct Connector(Arc<TlsFiles>);

impl Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let files = self.0.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| io::Error::other(format!("no host in {uri}")))?;
            let port = uri.port_u16().unwrap_or(443);
            let config = files.client_config().map_err(io::Error::other)?;
            let name = files.domain.clone().unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod with a wrong control URL or unreadable TLS files fails at start, not at its
    /// first publish.
    #[tokio::test]
    async fn bad_urls_and_files_fail_at_once() {
        let files = TlsFiles::default();
        for url in ["http://control:50051", "https:///no-host", "not a url"] {
            let err = tls_channel(url, files.clone(), |e| e).unwrap_err();
            assert!(matches!(err, TlsChannelError::Url(_)), "{url}: {err}");
        }
        let missing = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = tls_channel("https://control:50051", missing, |e| e).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let half = TlsFiles {
            identity: Some(("/nonexistent/c.pem".into(), "/nonexistent/c.key".into())),
            ..TlsFiles::default()
        };
        assert!(tls_channel("https://control:50051", half, |e| e).is_err());
    }
}

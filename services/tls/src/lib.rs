//! TLS for every listener and hop, on rustls with the ring provider (the workspace's one crypto
//! provider).
//!
//! - [`ReloadingCert`]: a certificate chain and key read from PEM files and swapped in when the
//!   files change (a file watcher, plus a periodic check for file systems that do not report
//!   changes). Connections already open keep the certificate they started with; new handshakes
//!   get the new one. It is both a server and a client certificate resolver.
//! - [`server_config`]: a rustls server config on such a certificate, optionally requiring a
//!   client certificate signed by a given CA (mutual TLS).
//! - [`client_config`]: trust the system roots or a configured CA, optionally presenting a
//!   client certificate ([`client_config_now`]: one read from its files now).

mod incoming;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use incoming::tls_incoming;
pub use reload::{CertFiles, ReloadingCert};
pub use rustls;
pub use tokio_rustls;

/// TLS record's content type for a handshake: the first byte a TLS client sends.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("certificate {cert} and key {key} do not belong together: {why}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("no usable system root certificates: {0}")]
    NoSystemRoots(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The one crypto provider of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// gRPC's ALPN protocol: HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN protocol.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A server config that presents `cert` (reloaded as its files change); with `client_ca`,
/// every client must present a certificate signed by one of those CAs.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)?;
    let builder = match client_ca {
        Some(path) => {
            let roots = Arc::new(root_store(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(cert))
}

/// How often watched certificate files are read again in case no change was reported.
pub const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// A gRPC server's TLS (HTTP/2 by ALPN) when `cert` and `key` are given: the certificate,
/// reloaded as its files change; with `client_ca`, only clients with a certificate from that
/// CA get through. Needs a tokio runtime (the file watcher).
pub fn grpc_server_config(
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    watched_server_config(cert, key, client_ca, &[ALPN_H2])
}

/// An HTTPS server's TLS when `cert` and `key` are given, reloaded as the files change: HTTP/2
/// by ALPN for the clients that offer it (browsers: LL-HLS's many held requests share one
/// connection), else HTTP/1.1. Needs a tokio runtime.
pub fn https_server_config(
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    watched_server_config(cert, key, None, &[ALPN_H2, ALPN_HTTP1])
}

fn watched_server_config(
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let client_ca = client_ca.map(Path::new);
    let cert = ReloadingCert::load(CertFiles::new(cert, key))?;
    cert.watch(RELOAD_CHECK);
    let mut config = server_config(cert, client_ca)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(Arc::new(config)))
}

/// A client config trusting `ca` (PEM bundle) or, without one, the system's roots; presenting
/// `client_cert` when the server asks for one.
pub fn client_config(
    ca: Option<&Path>,
    client_cert: Option<Arc<ReloadingCert>>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => root_store(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_root_certificates(roots);
    Ok(match client_cert {
        Some(cert) => builder.with_client_cert_resolver(cert),
        None => builder.with_no_client_auth(),
    })
}

/// [`client_config`] with the client certificate read from `identity`'s files now (not
/// watched): for a connection made now, so that each new connection reads renewed files.
pub fn client_config_now(
    ca: Option<&Path>,
    identity: Option<&CertFiles>,
) -> Result<ClientConfig, TlsError> {
    let cert = identity
        .map(|files| ReloadingCert::load(files.clone()))
        .transpose()?;
    client_config(ca, cert)
}

/// The certificates of a PEM bundle, as trust anchors.
pub fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(path)?;
    let certs = parse_certs(path, &pem)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The operating system's trust store (`/etc/ssl/certs` on Debian; `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` override it).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::NoSystemRoots(why));
    }
    Ok(roots)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

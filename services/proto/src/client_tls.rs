//! TLS of a gRPC client calling another pod (an edge calling an ingest's relay, a pod calling
//! control).

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// TLS settings of a gRPC client: trust `ca_pem` (or, without it, the system's roots), check
/// the server's certificate against `domain` (default: the host of the URL), and show the
/// certificate in `identity` (certificate and key files) when the server asks for one.
pub fn grpc_client_tls(
    ca_pem: Option<&[u8]>,
    domain: Option<&str>,
    identity: Option<&(PathBuf, PathBuf)>,
) -> std::io::Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new();
    tls = match ca_pem {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_native_roots(),
    };
    if let Some(domain) = domain {
        tls = tls.domain_name(domain);
    }
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    }
    Ok(tls)
}

//! Redis over TLS (`rediss://`): which CA the server's certificate must chain to (the system's
//! roots when none is given) and, for servers that require one, the certificate this pod shows.
//! rustls with the ring provider, as everywhere else in the workspace.

use std::path::PathBuf;

use redis::{ClientTlsConfig, TlsCertificates};

use crate::RedisError;

/// PEM files for `rediss://` connections (`redis.tls_ca`, `redis.tls_client_cert`,
/// `redis.tls_client_key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA bundle the server's certificate must chain to; unset: the system's roots.
    pub ca: Option<PathBuf>,
    /// Certificate chain and key shown to a server that asks for one (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl RedisTls {
    /// The certificates the client is built with, or `None` when nothing is configured (the
    /// system's roots, no client certificate).
    pub(crate) fn certificates(&self) -> Result<Option<TlsCertificates>, RedisError> {
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert, "redis.tls_client_cert")?,
                client_key: read(key, "redis.tls_client_key")?,
            }),
            (None, None) => None,
            _ => {
                return Err(RedisError::unavailable(
                    "redis.tls_client_cert and redis.tls_client_key go together",
                ));
            }
        };
        let root_cert = self
            .ca
            .as_ref()
            .map(|ca| read(ca, "redis.tls_ca"))
            .transpose()?;
        if client_tls.is_none() && root_cert.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// A client for one URL: with the configured certificates when it is `rediss://`.
    pub(crate) fn client(&self, url: &str) -> Result<redis::Client, RedisError> {
        match self.certificates()? {
            Some(certs) if is_tls(url) => {
                redis::Client::build_with_tls(url, certs).map_err(RedisError::unavailable)
            }
            Some(_) => Err(not_tls(url)),
            None => redis::Client::open(url).map_err(RedisError::unavailable),
        }
    }

    /// Refuses certificates configured for plain `redis://` seeds: they would silently go
    /// unused and the operator would believe the link is encrypted.
    pub(crate) fn check_urls(&self, urls: &[String]) -> Result<(), RedisError> {
        if self.certificates()?.is_none() {
            return Ok(());
        }
        match urls.iter().find(|u| !is_tls(u)) {
            Some(url) => Err(not_tls(url)),
            None => Ok(()),
        }
    }
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

fn not_tls(url: &str) -> RedisError {
    let scheme = url.split("://").next().unwrap_or(url);
    RedisError::unavailable(format!(
        "redis.tls_* is set but a Redis URL uses {scheme}://, not rediss://"
    ))
}

fn read(path: &PathBuf, key: &str) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path)
        .map_err(|e| RedisError::unavailable(format!("reading {key} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_need_no_certificates_and_refuse_configured_ones() {
        let none = RedisTls::default();
        assert!(none.check_urls(&["redis://a:6379".into()]).is_ok());
        assert!(none.client("rediss://a:6379").is_ok());
        let half = RedisTls {
            client_cert: Some("/nonexistent.pem".into()),
            ..RedisTls::default()
        };
        assert!(
            half.certificates()
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
        let missing = RedisTls {
            ca: Some("/nonexistent/ca.pem".into()),
            ..RedisTls::default()
        };
        let e = missing.certificates().unwrap_err().to_string();
        assert!(
            e.contains("reading redis.tls_ca /nonexistent/ca.pem"),
            "{e}"
        );
    }
}

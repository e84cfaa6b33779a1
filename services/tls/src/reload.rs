//! A certificate and key from PEM files, swapped when the files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tracing::{info, warn};

use crate::{TlsError, parse_certs, provider, read};

/// After a change is reported, wait this long for the rest of it (a writer replacing the
/// certificate, then the key) before reading the files.
const SETTLE: Duration = Duration::from_millis(200);

/// Where a certificate chain and its private key live (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// The certificate handshakes present: the files' content when last read successfully.
#[derive(Debug)]
pub struct ReloadingCert {
    files: CertFiles,
    loaded: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The PEM it was made from: a reload that reads the same bytes changes nothing.
    pem: (Vec<u8>, Vec<u8>),
}

impl ReloadingCert {
    /// Reads the files; fails if they are missing, unparsable or do not match.
    pub fn load(files: CertFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = load(&files)?;
        Ok(Arc::new(Self {
            files,
            loaded: RwLock::new(loaded),
        }))
    }

    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.loaded.read().expect("not poisoned").key.clone()
    }

    /// Reads the files again and swaps the certificate in if they changed. A broken pair
    /// (half written, key and certificate not matching yet) is an error and changes nothing.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = (read(&self.files.cert)?, read(&self.files.key)?);
        if self.loaded.read().expect("not poisoned").pem == pem {
            return Ok(false);
        }
        let loaded = parse(&self.files, pem)?;
        *self.loaded.write().expect("not poisoned") = loaded;
        Ok(true)
    }

    /// Reloads whenever the files (or the directories holding them: Kubernetes swaps a
    /// mounted Secret's symlinks) change, and every `every` in case no change is reported.
    /// Runs on the current tokio runtime until this certificate is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let changed = Arc::new(tokio::sync::Notify::new());
        let watcher = {
            let changed = changed.clone();
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    changed.notify_one();
                }
            })
        };
        let watcher = match watcher {
            Ok(mut watcher) => {
                for dir in self.dirs() {
                    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        warn!(dir = %dir.display(), error = %e, "cannot watch certificate directory; relying on the periodic check");
                    }
                }
                Some(watcher)
            }
            Err(e) => {
                warn!(error = %e, "no file watcher; relying on the periodic check");
                None
            }
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            // Dropped with the task: the watcher lives as long as the certificate does.
            let _watcher = watcher;
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            tick.tick().await;
            loop {
                tokio::select! {
                    () = changed.notified() => tokio::time::sleep(SETTLE).await,
                    _ = tick.tick() => {}
                }
                if !reload_logged(&weak) {
                    return;
                }
            }
        });
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.files.cert, &self.files.key]
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    }
}

/// One reload attempt, logged; false once the certificate is gone.
fn reload_logged(weak: &Weak<ReloadingCert>) -> bool {
    let Some(cert) = weak.upgrade() else {
        return false;
    };
    match cert.reload() {
        Ok(true) => info!(cert = %cert.files.cert.display(), "TLS certificate reloaded"),
        Ok(false) => {}
        Err(e) => warn!(error = %e, "TLS certificate not reloaded; keeping the previous one"),
    }
    true
}

fn load(files: &CertFiles) -> Result<Loaded, TlsError> {
    parse(files, (read(&files.cert)?, read(&files.key)?))
}

fn parse(files: &CertFiles, pem: (Vec<u8>, Vec<u8>)) -> Result<Loaded, TlsError> {
    let chain = parse_certs(&files.cert, &pem.0)?;
    let key = parse_key(&files.key, &pem.1)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        why: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        pem,
    })
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        why: format!("no usable private key: {e}"),
    })
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

//! The connection under a client: plain TCP (`rtmp://`) or TLS over it (`rtmps://`).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{Error, Result};

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The TLS handshake on `tcp` for `host` (sent as SNI when it is a name, and what the
    /// server's certificate must be valid for); with no config, the system's roots are trusted.
    pub(crate) async fn tls(
        tcp: TcpStream,
        host: &str,
        config: Option<Arc<ClientConfig>>,
    ) -> Result<Self> {
        let config = match config {
            Some(config) => config,
            None => system_config()?,
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| Error::Tls(format!("'{host}' is no valid TLS server name: {e}")))?;
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls(format!("handshake with {host} failed: {e}")))?;
        Ok(Self::Tls(Box::new(stream)))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

/// System roots, read once per process.
fn system_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<std::result::Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            liverelay_tls::client_config(None, None)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(Error::Tls)
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Bytes written to the socket `fd` that its peer has not yet acknowledged (`SIOCOUTQ`):
/// while a write waits, this shrinking is the only sign that the peer is reading, since the
/// kernel wakes a blocked writer only once much of its send buffer is free. `None` if the
/// kernel would not say.
#[allow(
    unsafe_code,
    reason = "SIOCOUTQ has no safe wrapper in tokio or std: one ioctl call"
)]
pub(crate) fn unsent_bytes(fd: RawFd) -> Option<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: ioctl(SIOCOUTQ, which is TIOCOUTQ) on a valid fd writes one c_int to the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut value as *mut libc::c_int) };
    (rc == 0).then(|| value.max(0) as u32)
}

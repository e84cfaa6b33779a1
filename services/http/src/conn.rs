//! Bounds on what one HTTP client costs: an idle-connection timer under the protocol, request
//! body limits on every route, and the log lines that say why a connection ended. The socket
//! wrapper also switches Nagle on for a connection that turned into one long stream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::{debug, warn};

use crate::HttpLimits;

/// A socket that fails with `TimedOut` once no byte moved either way for `timeout`: covers
/// what hyper's header-read timer does not (HTTP/2, a stalled body, a reader that stopped).
/// It says so in the log itself: above it, HTTP/2 does not hand the I/O error back.
pub(crate) struct Idle {
    io: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    logged: bool,
    coalesce: Coalesce,
    /// Whether Nagle is on now (the connection starts with TCP_NODELAY).
    coalescing: bool,
}

/// Asks a connection's socket to let the kernel merge small writes (Nagle) while an HTTP/1.1
/// connection carries one endless answer (an HTTP-FLV viewer), as RTMP players' sockets do:
/// with TCP_NODELAY each frame's write became packets and a wakeup of the reader of its own,
/// which cost HTTP-FLV viewers a third more CPU than RTMP players. Requests and answers keep
/// TCP_NODELAY, so that no answer waits for the client's delayed ACK.
#[derive(Clone, Default)]
pub(crate) struct Coalesce(Arc<AtomicBool>);

/// Nagle stays on while this lives.
pub(crate) struct Coalescing(Coalesce);

impl Coalesce {
    pub(crate) fn start(&self) -> Coalescing {
        self.0.store(true, Ordering::Relaxed);
        Coalescing(self.clone())
    }
}

impl Drop for Coalescing {
    fn drop(&mut self) {
        (self.0).0.store(false, Ordering::Relaxed);
    }
}

impl Idle {
    pub(crate) fn new(
        io: TcpStream,
        peer: SocketAddr,
        timeout: Duration,
        coalesce: Coalesce,
    ) -> Self {
        Self {
            io,
            peer,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            logged: false,
            coalesce,
            coalescing: false,
        }
    }

    /// Follows the connection's [`Coalesce`] before a write.
    fn nagle(&mut self) {
        let wanted = self.coalesce.0.load(Ordering::Relaxed);
        if wanted != self.coalescing {
            self.coalescing = wanted;
            if let Err(e) = self.io.set_nodelay(!wanted) {
                debug!(peer = %self.peer, error = %e, "TCP_NODELAY not changed");
            }
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next.into());
    }

    /// A write's outcome: bytes written reset the idle timer; a wait is bounded by it.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx),
        }
    }

    /// The peer is waited for: Pending, or the error once it has been too long.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let idle = IdleTimeout(self.timeout);
                if !std::mem::replace(&mut self.logged, true) {
                    warn!(peer = %self.peer, "HTTP connection closed: idle ({idle})");
                }
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, idle)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[derive(Debug)]
struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no byte moved for {}s", self.0.as_secs())
    }
}

impl std::error::Error for IdleTimeout {}

impl AsyncRead for Idle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.waiting(cx),
        }
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.nagle();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, written)
    }

    /// Vectored, so that hyper queues a response body's buffers (an HTTP-FLV viewer's shared
    /// frames) and writes them with one `writev` instead of copying them into one buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.nagle();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.waiting(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Every route refuses a body over `max` with 413: a declared length at once, before the
/// handler runs; a chunked body when an extractor reads past the limit.
pub(crate) fn limit_bodies(router: Router, max: usize) -> Router {
    router
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| check_length(req, next, max),
        ))
        .layer(DefaultBodyLimit::max(max))
}

async fn check_length(req: Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {max} bytes\n"),
        )
            .into_response();
    }
    next.run(req).await
}

/// Connections closed at accept, logged at most once a second (a flood must not flood the log).
#[derive(Default)]
pub(crate) struct Refusals {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    pub(crate) fn refused(&mut self, peer: SocketAddr, limit: usize) {
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            warn!(%peer, limit, refused = self.unlogged, "HTTP connection refused: limit reached");
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// Why a connection ended, when the header-read timer ended it; other errors are the client
/// going away (or the idle timer, which logs itself).
pub(crate) fn log_end(
    peer: SocketAddr,
    error: &(dyn std::error::Error + 'static),
    limits: &HttpLimits,
) {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return warn!(
                %peer,
                "HTTP connection closed: request headers not received within {}s",
                limits.header_read_timeout.as_secs()
            );
        }
        if e.downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .is_some_and(|i| i.is::<IdleTimeout>())
        {
            return; // logged by Idle
        }
        cause = e.source();
    }
    debug!(%peer, %error, "HTTP connection ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn nagle_is_on_only_while_a_stream_asks_for_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let ((server, peer), _client) =
            tokio::join!(async { listener.accept().await.unwrap() }, async {
                client.await.unwrap()
            });
        server.set_nodelay(true).unwrap();
        let coalesce = Coalesce::default();
        let mut io = Idle::new(server, peer, Duration::from_secs(5), coalesce.clone());
        io.write_all(b"answer").await.unwrap();
        assert!(io.io.nodelay().unwrap(), "answers are sent at once");
        let streaming = coalesce.start();
        let written = io.write_vectored(&[io::IoSlice::new(b"tag")]).await;
        assert_eq!(written.unwrap(), 3);
        assert!(!io.io.nodelay().unwrap(), "a stream's writes are merged");
        drop(streaming);
        io.write_all(b"next answer").await.unwrap();
        assert!(io.io.nodelay().unwrap(), "after the stream, at once again");
    }
}

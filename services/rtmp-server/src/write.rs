//! Writing a queue of shared buffers with as few system calls as possible, on plain TCP or TLS.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Most iovecs one writev takes (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 512;

/// What a connection runs on: plain TCP, or TLS over it.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Encrypted: the bytes on the wire are TLS records.
    const ENCRYPTED: bool;

    /// Writes what the transport takes right now without waiting; `WouldBlock` when nothing.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Sends what the transport holds back (TLS records) without waiting; true when all went.
    fn try_flush(&mut self) -> io::Result<bool>;
}

impl Transport for TcpStream {
    const ENCRYPTED: bool = false;

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }
}

/// TLS: the plaintext is encrypted into rustls' buffer and as much as the socket takes is
/// written. Polled once without a waker; a later wait polls again with the task's own.
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for TlsStream<S> {
    const ENCRYPTED: bool = true;

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_write_vectored(&mut cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_flush(&mut cx) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }
}

/// Writes as much of `bufs` as the socket takes right now, without waiting (one `writev` per
/// round). Returns true when everything was written. This is the common case for a player
/// that keeps up, and it needs no timer and no task wakeup.
pub fn try_write_all_vectored<S: Transport>(
    socket: &mut S,
    bufs: &mut VecDeque<Bytes>,
) -> io::Result<bool> {
    while !bufs.is_empty() {
        let slices = iovecs(bufs);
        match socket.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    socket.try_flush()
}

/// Writes all of `bufs` (draining it), one `writev` per round, waiting for the socket.
pub async fn write_all_vectored<S: Transport>(
    socket: &mut S,
    bufs: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !bufs.is_empty() {
        let n = socket.write_vectored(&iovecs(bufs)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        consume(bufs, n);
    }
    if S::ENCRYPTED {
        socket.flush().await?;
    }
    Ok(())
}

fn iovecs(bufs: &VecDeque<Bytes>) -> Vec<IoSlice<'_>> {
    bufs.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect()
}

/// Drops the `written` bytes from the front of `bufs`.
fn consume(bufs: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let front = bufs.front_mut().expect("written bytes came from a buffer");
        if written >= front.len() {
            written -= front.len();
            bufs.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

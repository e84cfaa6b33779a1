//! Writing a queue of shared buffers with as few system calls as possible, on plain TCP or TLS.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
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

    /// The socket a stream's publisher may write a direct player's frames to: plain TCP only.
    fn direct(&self) -> Option<&Arc<TcpStream>> {
        None
    }
}

/// A plain TCP connection that the publisher of the stream its client plays may write to as
/// well ([`Transport::direct`]); never both at once (`connection::express`).
pub struct SharedTcp(Arc<TcpStream>);

impl SharedTcp {
    pub fn new(socket: TcpStream) -> Self {
        Self(Arc::new(socket))
    }
}

/// `sendmsg(2)` rather than tokio's `writev(2)`: the same gather write without the VFS layer's
/// work, which on a player's many small writes is a tenth of the kernel's path.
pub(crate) fn send_vectored(socket: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(socket).send_vectored(bufs)
    })
}

impl Transport for SharedTcp {
    const ENCRYPTED: bool = false;

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(&self.0, bufs)
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn direct(&self) -> Option<&Arc<TcpStream>> {
        Some(&self.0)
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // Into the unfilled part as it is: a publisher's 64 KiB reads are not zeroed first.
            match self.0.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match send_vectored(&self.0, bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use liverelay_tls::{CertFiles, ReloadingCert, client_config, server_config};
    use rustls_pki_types::ServerName;
    use tokio::io::AsyncReadExt;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    fn openssl(dir: &Path, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed (make test-deps)");
        assert!(status.success(), "openssl {args:?}");
    }

    /// A CA and a certificate for `localhost` it signed, in `dir`.
    fn certificates(dir: &Path) {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            dir,
            &[
                &["req", "-x509"],
                &ec[..],
                &["-subj", "/CN=ca", "-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                &["req"],
                &ec[..],
                &[
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "ext",
                "-out",
                "leaf.pem",
            ],
        );
    }

    /// A reader that is slower than the writer: the TLS records the socket did not take wait in
    /// rustls' buffer, and only the flush after the last write sends them. Every byte arrives.
    #[tokio::test]
    async fn tls_writes_reach_a_slow_reader_whole() {
        let dir = std::env::temp_dir().join(format!("liverelay-write-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        certificates(&dir);
        let cert = ReloadingCert::load(CertFiles::new(dir.join("leaf.pem"), dir.join("leaf.key")))
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server_config(cert, None).unwrap()));
        let connector = TlsConnector::from(Arc::new(
            client_config(Some(&dir.join("ca.pem")), None).unwrap(),
        ));
        std::fs::remove_dir_all(&dir).unwrap();

        // A 4 KiB pipe: the socket of a player that reads late.
        let (server_io, client_io) = tokio::io::duplex(4096);
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        );
        let (mut server, mut client) = (server.unwrap(), client.unwrap());

        let frames: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![i as u8; 1000 + i as usize]))
            .collect();
        let total: usize = frames.iter().map(Bytes::len).sum();
        let mut out: VecDeque<Bytes> = frames.iter().cloned().collect();
        assert!(
            !try_write_all_vectored(&mut server, &mut out).unwrap(),
            "the pipe is full at once"
        );
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; total];
            client.read_exact(&mut got).await.map(|_| got)
        });
        write_all_vectored(&mut server, &mut out).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("every byte arrives without a further write")
            .unwrap()
            .unwrap();
        assert_eq!(got, frames.concat());
    }
}

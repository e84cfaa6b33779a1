//! Writing a queue of shared buffers with as few system calls as possible.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most iovecs one writev takes (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 512;

/// Writes as much of `bufs` as the socket takes right now, without waiting (one `writev` per
/// round). Returns true when everything was written. This is the common case for a player
/// that keeps up, and it needs no timer and no task wakeup.
pub fn try_write_all_vectored(socket: &TcpStream, bufs: &mut VecDeque<Bytes>) -> io::Result<bool> {
    while !bufs.is_empty() {
        let slices = iovecs(bufs);
        match socket.try_write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `bufs` (draining it), one `writev` per round, waiting for the socket.
pub async fn write_all_vectored(
    socket: &mut TcpStream,
    bufs: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !bufs.is_empty() {
        let n = socket.write_vectored(&iovecs(bufs)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        consume(bufs, n);
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

//! Writing a queue of shared buffers with as few system calls as possible.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most iovecs one writev takes (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 512;

/// Writes all of `bufs` (draining it), one `writev` per round.
pub async fn write_all_vectored(
    socket: &mut TcpStream,
    bufs: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<IoSlice<'_>> = bufs.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
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
    Ok(())
}

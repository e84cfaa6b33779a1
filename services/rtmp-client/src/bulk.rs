use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClientStream;
use tokio::time::Instant;

/// How often a bulk reader acknowledges what it received: servers drop peers they heard
/// nothing from (liverelay after `idle_timeout`, nginx-rtmp after `ping` + `ping_timeout`).
const ACK_EVERY: Duration = Duration::from_secs(10);

/// A playing connection that is only counted, not decoded: reads in large batches and sends an
/// RTMP Acknowledgement now and then to stay alive. Cheap enough for thousands per core.
pub struct BulkReader {
    socket: ClientStream,
    buf: Vec<u8>,
    /// Bytes read from the socket over the connection's whole life.
    total: u64,
    next_ack: Instant,
}

impl BulkReader {
    pub(crate) fn new(socket: ClientStream, total: u64, _buffered: u64) -> Self {
        Self {
            socket,
            buf: vec![0; 128 * 1024],
            total,
            next_ack: Instant::now() + ACK_EVERY,
        }
    }

    /// Wakes the reader only once `bytes` are buffered in the kernel (`SO_RCVLOWAT`), so a
    /// read takes a batch of messages instead of one. Linux caps it at half the receive
    /// buffer.
    #[allow(
        unsafe_code,
        reason = "SO_RCVLOWAT has no safe wrapper in tokio or std: one setsockopt call"
    )]
    pub fn set_recv_lowat(&self, bytes: u32) -> std::io::Result<()> {
        let value = bytes.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: setsockopt with a valid fd, a pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Reads one batch; returns its size, 0 when the server closed. Cancel safe.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        let n = self.socket.read(&mut self.buf).await?;
        self.total += n as u64;
        if n > 0 && Instant::now() >= self.next_ack {
            self.next_ack = Instant::now() + ACK_EVERY;
            self.socket.write_all(&acknowledgement(self.total)).await?;
            self.socket.flush().await?;
        }
        Ok(n)
    }

    /// Bytes received over the connection's whole life (including the decoded part).
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Acknowledgement (type 3) with the received byte count, as a self-contained fmt 0 chunk on
/// the protocol control chunk stream (2), message stream 0.
fn acknowledgement(total: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = 0x02; // fmt 0, csid 2
    // timestamp 0 (bytes 1..4), length 4, type 3, stream id 0 (LE)
    out[6] = 4;
    out[7] = 3;
    out[12..16].copy_from_slice(&(total as u32).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits};

    #[test]
    fn acknowledgement_is_a_valid_chunk() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = bytes::BytesMut::from(&acknowledgement(0x1_0000_0005)[..]);
        let msg = dec.decode(&mut buf).unwrap().expect("one message");
        assert_eq!((msg.type_id, msg.stream_id), (3, 0));
        assert_eq!(&msg.payload[..], &5u32.to_be_bytes());
    }
}

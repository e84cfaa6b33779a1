//! HTTP-FLV players: one endless GET; the body's FLV tags are what an RTMP player's messages
//! are, so they are accounted the same way ([`Viewer::media`]). Unsampled players stop
//! decoding after the first video frame and only count bytes, as RTMP ones do.

use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use liverelay_rtmp_client::MediaKind;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::http1::{Conn, HttpUrl};
use crate::viewer::Viewer;

pub async fn player(
    url: String,
    mut viewer: Viewer,
    rcvlowat: u32,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let parsed = match HttpUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => return viewer.failed(format!("play {url}: {e}")),
    };
    let target = parsed.target.clone();
    let mut conn = Conn::new(parsed, timeout);
    let answer = tokio::select! {
        r = tokio::time::timeout(timeout, conn.get(&target)) => r,
        _ = stop.changed() => return,
    };
    let mut body = match answer {
        Ok(Ok((200, body))) => body,
        Ok(Ok((status, _))) => return viewer.failed(format!("play {url}: status {status}")),
        Ok(Err(e)) => return viewer.failed(format!("play {url}: {e}")),
        Err(_) => return viewer.failed(format!("play {url}: timed out")),
    };
    viewer.playing();
    let mut tags = FlvTags::default();
    while viewer.sampled || !viewer.has_frame() {
        let data = tokio::select! {
            r = conn.next(&mut body) => r,
            _ = stop.changed() => return,
        };
        match data {
            Ok(Some(data)) => tags.push(&data),
            Ok(None) => return viewer.ended(format!("play {url}: closed by server")),
            Err(e) => return viewer.ended(format!("play {url}: {e}")),
        }
        viewer.bytes(conn.received);
        while let Some((kind, payload)) = tags.next_tag() {
            viewer.media(kind, &payload);
        }
    }
    // Count the rest in bulk, chunk framing and all (as RTMP players count chunk headers).
    let total = conn.received;
    let Some((mut socket, _)) = conn.into_raw() else {
        return viewer.ended(format!("play {url}: closed by server"));
    };
    set_recv_lowat(&socket, rcvlowat);
    let mut total = total;
    let mut scratch = vec![0u8; 128 * 1024];
    loop {
        tokio::select! {
            r = socket.read(&mut scratch) => match r {
                Ok(0) => return viewer.ended(format!("play {url}: closed by server")),
                Ok(n) => {
                    total += n as u64;
                    viewer.bytes(total);
                }
                Err(e) => return viewer.ended(format!("play {url}: {e}")),
            },
            _ = stop.changed() => return,
        }
    }
}

/// Wakes the reader only once `bytes` are buffered (`SO_RCVLOWAT`), as RTMP bulk players do.
#[allow(
    unsafe_code,
    reason = "SO_RCVLOWAT has no safe wrapper in tokio or std: one setsockopt call"
)]
fn set_recv_lowat(socket: &tokio::net::TcpStream, bytes: u32) {
    let value = bytes.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: setsockopt with a valid fd, a pointer to a c_int and its size. Best effort: a
    // failure only means more wakeups.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Splits an FLV byte stream into tags, as the bytes arrive.
#[derive(Default)]
struct FlvTags {
    buf: BytesMut,
    /// The file header and the first PreviousTagSize were skipped.
    started: bool,
}

impl FlvTags {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete tag: its kind and payload (other tag types are skipped).
    fn next_tag(&mut self) -> Option<(MediaKind, Bytes)> {
        loop {
            if !self.started {
                let header = u32::from_be_bytes(self.buf.get(5..9)?.try_into().unwrap()) as usize;
                if self.buf.len() < header + 4 {
                    return None;
                }
                self.buf.advance(header + 4);
                self.started = true;
            }
            let head = self.buf.get(..11)?;
            let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            let kind = match head[0] & 0x1f {
                8 => Some(MediaKind::Audio),
                9 => Some(MediaKind::Video),
                18 => Some(MediaKind::Metadata),
                _ => None,
            };
            if self.buf.len() < 11 + size + 4 {
                return None;
            }
            let mut tag = self.buf.split_to(11 + size + 4);
            tag.advance(11);
            tag.truncate(size);
            if let Some(kind) = kind {
                return Some((kind, tag.freeze()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&[0; 7]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(body.len() as u32 + 11).to_be_bytes());
        t
    }

    #[test]
    fn tags_split_across_reads() {
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        stream.extend(tag(9, &[0x17, 0, 0, 0, 0, 1]));
        stream.extend(tag(20, &[1, 2])); // not media: skipped
        stream.extend(tag(8, &[0xaf, 1, 5]));
        let mut t = FlvTags::default();
        let mut got = Vec::new();
        for piece in stream.chunks(5) {
            t.push(piece);
            while let Some((k, p)) = t.next_tag() {
                got.push((k, p.to_vec()));
            }
        }
        assert_eq!(
            got,
            [
                (MediaKind::Video, vec![0x17, 0, 0, 0, 0, 1]),
                (MediaKind::Audio, vec![0xaf, 1, 5]),
            ]
        );
    }
}

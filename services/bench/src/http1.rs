//! A minimal HTTP/1.1 client for the HTTP players: GETs over one keep-alive connection,
//! bodies framed by Content-Length, chunked, or the connection's end. It does no more than
//! liverelay's and nginx's answers need, and costs little enough for thousands of clients on
//! one core (no per-request task, no header map).

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `http://host:port/path?query`, split.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUrl {
    /// `host:port`, what we connect to and send as `Host`.
    pub authority: String,
    /// Path and query.
    pub target: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> io::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid(format!("not an http:// URL: {url}")))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            target: target.to_owned(),
        })
    }

    /// `uri` as written in a playlist, resolved against this URL: absolute path, or relative
    /// to this URL's directory.
    pub fn resolve(&self, uri: &str) -> String {
        if let Some(u) = uri.strip_prefix("http://") {
            return u.find('/').map_or("/".into(), |i| u[i..].to_owned());
        }
        if uri.starts_with('/') {
            return uri.to_owned();
        }
        let path = self.target.split('?').next().unwrap_or("/");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{uri}")
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// How the current answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Body {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of the chunk are left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer,
}

/// One connection; requests go one after the other (no pipelining).
pub struct Conn {
    url: HttpUrl,
    stream: Option<TcpStream>,
    buf: BytesMut,
    /// Socket bytes read over the connection's life, headers and framing included.
    pub received: u64,
    timeout: Duration,
    /// The server closes the connection after the current answer.
    close_after: bool,
}

impl Conn {
    pub fn new(url: HttpUrl, timeout: Duration) -> Self {
        Self {
            url,
            stream: None,
            buf: BytesMut::with_capacity(64 * 1024),
            received: 0,
            timeout,
            close_after: false,
        }
    }

    /// Sends `GET target` (connecting first if no connection is open) and reads the answer's
    /// head: its status and how its body ends.
    pub async fn get(&mut self, target: &str) -> io::Result<(u16, Body)> {
        let reused = self.stream.is_some();
        match self.try_get(target).await {
            // A kept-alive connection the server closed meanwhile: once more on a new one.
            Err(_) if reused => {
                self.stream = None;
                self.try_get(target).await
            }
            r => r,
        }
    }

    async fn try_get(&mut self, target: &str) -> io::Result<(u16, Body)> {
        if self.stream.is_none() {
            let s = tokio::time::timeout(self.timeout, TcpStream::connect(&self.url.authority))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: liverelay-bench\r\n\r\n",
            self.url.authority
        );
        open(&mut self.stream)?
            .write_all(request.as_bytes())
            .await?;
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = self.buf.split_to(end);
        let (status, body, close) = parse_head(&head)?;
        // If so, this answer is read to its end, then the next request reconnects.
        self.close_after = close;
        Ok((status, body))
    }

    /// Reads more from the socket into the buffer; the end of the stream is an error.
    async fn fill(&mut self) -> io::Result<usize> {
        let n = open(&mut self.stream)?.read_buf(&mut self.buf).await?;
        if n == 0 {
            self.stream = None;
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.received += n as u64;
        Ok(n)
    }

    /// The next piece of the body (whatever has arrived), `None` at its end.
    pub async fn next(&mut self, body: &mut Body) -> io::Result<Option<Bytes>> {
        loop {
            match body {
                Body::Done => {
                    if self.close_after {
                        self.close_after = false;
                        self.stream = None;
                    }
                    return Ok(None);
                }
                Body::Length(0) => *body = Body::Done,
                Body::Length(left) => {
                    if self.buf.is_empty() {
                        self.fill().await?;
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    return Ok(Some(self.buf.split_to(n as usize).freeze()));
                }
                Body::UntilClose => {
                    if self.buf.is_empty() {
                        match self.fill().await {
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                                *body = Body::Done;
                                continue;
                            }
                            r => r?,
                        };
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Body::Chunked(Chunk::Data(left)) => {
                    if self.buf.is_empty() {
                        self.fill().await?;
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        *body = Body::Chunked(Chunk::DataEnd);
                    }
                    return Ok(Some(self.buf.split_to(n as usize).freeze()));
                }
                Body::Chunked(Chunk::DataEnd) => {
                    while self.buf.len() < 2 {
                        self.fill().await?;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(invalid("chunk not followed by CRLF".into()));
                    }
                    self.buf.advance(2);
                    *body = Body::Chunked(Chunk::Size);
                }
                Body::Chunked(state) => {
                    let line = loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            break self.buf.split_to(i + 2);
                        }
                        self.fill().await?;
                    };
                    let line = &line[..line.len() - 2];
                    *body = if *state == Chunk::Trailer {
                        if line.is_empty() {
                            Body::Done
                        } else {
                            Body::Chunked(Chunk::Trailer)
                        }
                    } else {
                        let hex = std::str::from_utf8(line)
                            .ok()
                            .and_then(|l| l.split(';').next())
                            .map(str::trim)
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                            .ok_or_else(|| invalid("bad chunk size".into()))?;
                        Body::Chunked(if hex == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data(hex)
                        })
                    };
                }
            }
        }
    }

    /// The whole body.
    pub async fn body(&mut self, mut body: Body) -> io::Result<BytesMut> {
        let mut all = BytesMut::new();
        while let Some(b) = self.next(&mut body).await? {
            all.extend_from_slice(&b);
        }
        Ok(all)
    }

    /// Reads the body to its end without keeping it; its length.
    pub async fn drain(&mut self, mut body: Body) -> io::Result<u64> {
        let mut n = 0;
        while let Some(b) = self.next(&mut body).await? {
            n += b.len() as u64;
        }
        Ok(n)
    }

    /// The socket for reading the rest in bulk (undecoded), and the bytes already buffered.
    pub fn into_raw(self) -> Option<(TcpStream, usize)> {
        Some((self.stream?, self.buf.len()))
    }
}

fn open(stream: &mut Option<TcpStream>) -> io::Result<&mut TcpStream> {
    stream
        .as_mut()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
}

/// Where `needle` (a line end) first occurs: found by its first byte, then compared, since a
/// comparison at every offset cost thousands of clients more than their parsing.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Status, body framing and whether the server closes the connection after this answer.
fn parse_head(head: &[u8]) -> io::Result<(u16, Body, bool)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("answer head not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line}")))?;
    let mut body = Body::UntilClose;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") && body == Body::UntilClose {
            body = Body::Length(value.parse().map_err(|_| invalid("bad length".into()))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            body = Body::Chunked(Chunk::Size);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    if status == 204 || status == 304 {
        body = Body::Done;
    }
    if body == Body::UntilClose {
        close = true;
    }
    Ok((status, body, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_ends() {
        assert_eq!(
            find(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody", b"\r\n\r\n"),
            Some(21)
        );
        assert_eq!(find(b"5\r\nhello", b"\r\n"), Some(1));
        assert_eq!(find(b"\r\r\n", b"\r\n"), Some(1));
        assert_eq!(find(b"no end\r", b"\r\n"), None);
        assert_eq!(find(b"", b"\r\n"), None);
    }
}

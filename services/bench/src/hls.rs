//! HLS clients, each on one keep-alive connection, requesting what a player would:
//!
//! - Low-Latency HLS, as hls.js in low-latency mode: a blocking playlist reload for the next
//!   part (`?_HLS_msn=N&_HLS_part=P`), then that part; every part listed and not yet fetched
//!   is fetched before the next reload. A client starts at the live edge (the part the
//!   playlist hints at next).
//! - Regular HLS: the playlist every target duration (half of it when nothing new came, as
//!   hls.js does), then each new complete segment. A client starts at the newest segment.
//!
//! Quality is whether the client would keep playing ([`Pace`]): it may fall behind real time
//! by 2 part targets (LL-HLS) or 1 target duration (HLS), no more.

use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::http1::{Conn, HttpUrl};
use crate::viewer::{Pace, Viewer};

/// A media playlist, as far as clients need it.
#[derive(Debug, Default, PartialEq)]
pub struct Playlist {
    pub target_duration: f64,
    pub part_target: Option<f64>,
    /// Complete segments: media sequence number, URI, duration.
    pub segments: Vec<(u64, String, f64)>,
    /// Parts: (media sequence number, index in its segment), URI, duration, independent.
    pub parts: Vec<((u64, usize), String, f64, bool)>,
    /// The sequence number of the segment after the last complete one (being made).
    pub open: u64,
}

impl Playlist {
    pub fn parse(text: &str) -> Self {
        let mut p = Playlist::default();
        let mut msn = 0u64;
        let mut part = 0usize;
        let mut extinf = None;
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                p.part_target = attr(v, "PART-TARGET").and_then(|t| t.parse().ok());
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                if let (Some(uri), Some(d)) = (attr(v, "URI"), attr(v, "DURATION")) {
                    let independent = attr(v, "INDEPENDENT") == Some("YES");
                    let d = d.parse().unwrap_or(0.0);
                    p.parts.push(((msn, part), uri.to_owned(), d, independent));
                    part += 1;
                }
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                extinf = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
            } else if !line.is_empty() && !line.starts_with('#') {
                p.segments
                    .push((msn, line.to_owned(), extinf.take().unwrap_or(0.0)));
                msn += 1;
                part = 0;
            }
        }
        p.open = msn;
        p
    }

    /// The part to ask for after the last one listed (what EXT-X-PRELOAD-HINT names).
    pub fn next_part(&self) -> (u64, usize) {
        match self.parts.last() {
            Some(((m, i), ..)) if *m == self.open => (self.open, i + 1),
            _ => (self.open, 0),
        }
    }

    fn part(&self, at: (u64, usize)) -> Option<(&str, f64, bool)> {
        self.parts
            .iter()
            .find(|p| p.0 == at)
            .map(|p| (p.1.as_str(), p.2, p.3))
    }

    fn complete(&self, msn: u64) -> bool {
        self.segments.iter().any(|s| s.0 == msn)
    }
}

/// `NAME=value` or `NAME="value"` from an attribute list.
fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

pub async fn client(
    url: String,
    mut viewer: Viewer,
    low_latency: bool,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let parsed = match HttpUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => return viewer.failed(format!("play {url}: {e}")),
    };
    let mut session = Session {
        conn: Conn::new(parsed.clone(), timeout),
        url: parsed,
        timeout,
    };
    let first = tokio::select! {
        r = session.playlist(None) => r,
        _ = stop.changed() => return,
    };
    let playlist = match first {
        Ok(p) => p,
        Err(e) => return viewer.failed(format!("play {url}: {e}")),
    };
    viewer.playing();
    let run = async {
        if low_latency {
            session.low_latency(&mut viewer, playlist).await
        } else {
            session.regular(&mut viewer, playlist).await
        }
    };
    let why = tokio::select! {
        e = run => e,
        _ = stop.changed() => return,
    };
    viewer.ended(format!("play {url}: {why}"));
}

struct Session {
    conn: Conn,
    url: HttpUrl,
    timeout: Duration,
}

impl Session {
    /// The playlist, blocking until part `(msn, part)` exists if given.
    async fn playlist(&mut self, block: Option<(u64, usize)>) -> Result<Playlist, String> {
        let target = match block {
            None => self.url.target.clone(),
            Some((m, p)) => {
                let sep = if self.url.target.contains('?') {
                    '&'
                } else {
                    '?'
                };
                format!("{}{sep}_HLS_msn={m}&_HLS_part={p}", self.url.target)
            }
        };
        let body = self.fetch(&target, true).await?.unwrap_or_default();
        Ok(Playlist::parse(&String::from_utf8_lossy(&body)))
    }

    /// A whole answer's body (`None` if `keep` is false: read and dropped, as unsampled
    /// clients need no more than its bytes counted); anything but 200 is an error.
    async fn fetch(&mut self, target: &str, keep: bool) -> Result<Option<BytesMut>, String> {
        let conn = &mut self.conn;
        let get = async {
            let (status, body) = conn.get(target).await.map_err(|e| e.to_string())?;
            let bytes = if keep {
                Some(conn.body(body).await.map_err(|e| e.to_string())?)
            } else {
                conn.drain(body).await.map_err(|e| e.to_string())?;
                None
            };
            if status != 200 {
                return Err(format!("{target}: status {status}"));
            }
            Ok(bytes)
        };
        tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| format!("{target}: timed out"))?
    }

    /// One fetched part or segment: bytes, first frame, latency of its stamps, pace.
    async fn media(
        &mut self,
        viewer: &mut Viewer,
        pace: &mut Pace,
        uri: &str,
        duration: f64,
        independent: bool,
    ) -> Result<(), String> {
        let target = self.url.resolve(uri);
        let data = self.fetch(&target, viewer.sampled).await?;
        viewer.bytes(self.conn.received);
        viewer.first_frame(independent);
        if let Some(data) = data {
            viewer.stamps_in(&data);
        }
        if pace.arrived(Instant::now(), duration) {
            viewer.stalled();
        }
        Ok(())
    }

    async fn low_latency(&mut self, viewer: &mut Viewer, first: Playlist) -> String {
        let part_target = first.part_target.unwrap_or(0.2);
        let mut pace = Pace::new(Duration::from_secs_f64(2.0 * part_target));
        let mut want = first.next_part();
        loop {
            let playlist = match self.playlist(Some(want)).await {
                Ok(p) => p,
                Err(e) => return e,
            };
            // Everything listed from the wanted part on; a segment that ended before the
            // wanted index continues with the next segment's first part.
            loop {
                if let Some((uri, duration, independent)) = playlist.part(want) {
                    let uri = uri.to_owned();
                    if let Err(e) = self
                        .media(viewer, &mut pace, &uri, duration, independent)
                        .await
                    {
                        return e;
                    }
                    want.1 += 1;
                } else if playlist.complete(want.0) {
                    want = (want.0 + 1, 0);
                } else {
                    break;
                }
            }
            // Fell off the playlist (parts are listed for a few target durations only).
            let newest = playlist.next_part();
            if want.0 + 2 < newest.0 {
                want = newest;
            }
        }
    }

    async fn regular(&mut self, viewer: &mut Viewer, first: Playlist) -> String {
        let target = Duration::from_secs_f64(first.target_duration.max(0.1));
        let mut pace = Pace::new(target);
        // Start with the newest complete segment.
        let mut next = first.segments.last().map_or(0, |s| s.0);
        let mut playlist = first;
        loop {
            let polled = Instant::now();
            let mut new = false;
            for (msn, uri, duration) in &playlist.segments {
                if *msn >= next {
                    if let Err(e) = self.media(viewer, &mut pace, uri, *duration, true).await {
                        return e;
                    }
                    next = msn + 1;
                    new = true;
                }
            }
            // Fell off the playlist: resume at its newest segment.
            if playlist.segments.first().is_some_and(|s| s.0 > next) {
                next = playlist.segments.last().map_or(next, |s| s.0);
            }
            sleep_until(polled + if new { target } else { target / 2 }).await;
            playlist = match self.playlist(None).await {
                Ok(p) => p,
                Err(e) => return e,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-VERSION:9\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
        #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:10\n\
        #EXT-X-MAP:URI=\"init-ab.mp4\"\n#EXTINF:2.000,\n10.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"11.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"11.1.m4s\"\n#EXTINF:0.4,\n11.m4s\n\
        #EXT-X-PART:DURATION=0.2,URI=\"12.0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"12.1.m4s\"\n";

    #[test]
    fn parses_low_latency_playlists() {
        let p = Playlist::parse(LL);
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(
            p.segments,
            [
                (10, "10.m4s".to_owned(), 2.0),
                (11, "11.m4s".to_owned(), 0.4)
            ]
        );
        assert_eq!(p.part((11, 1)), Some(("11.1.m4s", 0.2, false)));
        assert_eq!(p.part((12, 0)), Some(("12.0.m4s", 0.2, true)));
        // The hint's position.
        assert_eq!(p.next_part(), (12, 1));
        assert!(p.complete(11) && !p.complete(12));
        // A playlist ending with a complete segment: the next segment's first part.
        let cut = LL
            .split("#EXT-X-PART:DURATION=0.2,URI=\"12.0")
            .next()
            .unwrap();
        assert_eq!(Playlist::parse(cut).next_part(), (12, 0));
        // No complete segment yet: the open one is the media sequence's.
        let head = LL.split("#EXT-X-MAP").next().unwrap();
        assert_eq!(Playlist::parse(head).next_part(), (10, 0));
        let fresh = format!("{head}#EXT-X-PART:DURATION=0.2,URI=\"10.0.m4s\",INDEPENDENT=YES\n");
        assert_eq!(Playlist::parse(&fresh).next_part(), (10, 1));
    }

    #[test]
    fn parses_regular_playlists_and_resolves_uris() {
        let p = Playlist::parse(
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n\
             #EXTINF:1.000,\ns-7.ts\n#EXTINF:0.960,\ns-8.ts\n",
        );
        assert_eq!(p.segments[1], (8, "s-8.ts".to_owned(), 0.96));
        assert_eq!((p.target_duration, p.part_target), (1.0, None));
        let u = HttpUrl::parse("http://127.0.0.1:8080/hls/live/s/index.m3u8?token=x").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.resolve("3.1.m4s?token=x"), "/hls/live/s/3.1.m4s?token=x");
        assert_eq!(u.resolve("/other/a.ts"), "/other/a.ts");
        assert_eq!(attr("A=1,URI=\"x,y\",B=YES", "B"), Some("YES"));
        assert_eq!(attr("A=1,URI=\"x,y\",B=YES", "URI"), Some("x,y"));
    }
}

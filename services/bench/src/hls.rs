//! HLS clients, each on one keep-alive connection, requesting what a player would:
//!
//! - Low-Latency HLS, as hls.js in low-latency mode: a blocking playlist reload for the next
//!   part (`?_HLS_msn=N&_HLS_part=P`, with `&_HLS_skip=YES` for a delta update when the
//!   server offers `CAN-SKIP-UNTIL`, as hls.js asks), then that part; every part listed and not
//!   yet fetched is fetched before the next reload. A client starts at the live edge (the part
//!   the playlist hints at next).
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

/// A media playlist, as far as clients need it, borrowing the answer's text (thousands of
/// clients parse one ten times a second: no allocation per entry).
#[derive(Debug, Default, PartialEq)]
pub struct Playlist<'a> {
    pub target_duration: f64,
    pub part_target: Option<f64>,
    /// The server takes delta updates (`CAN-SKIP-UNTIL`).
    pub can_skip: bool,
    /// Complete segments: media sequence number, URI, duration.
    pub segments: Vec<(u64, &'a str, f64)>,
    /// Parts: (media sequence number, index in its segment), URI, duration, independent.
    pub parts: Vec<((u64, usize), &'a str, f64, bool)>,
    /// The sequence number of the segment after the last complete one (being made).
    pub open: u64,
}

impl<'a> Playlist<'a> {
    pub fn parse(text: &'a str) -> Self {
        let mut p = Playlist::default();
        let mut msn = 0u64;
        let mut part = 0usize;
        let mut extinf = None;
        for line in text.lines().map(str::trim) {
            let Some(tag) = line.strip_prefix('#') else {
                if !line.is_empty() {
                    p.segments.push((msn, line, extinf.take().unwrap_or(0.0)));
                    msn += 1;
                    part = 0;
                }
                continue;
            };
            let (name, v) = tag.split_once(':').unwrap_or((tag, ""));
            match name {
                "EXT-X-TARGETDURATION" => p.target_duration = v.parse().unwrap_or(0.0),
                "EXT-X-MEDIA-SEQUENCE" => msn = v.parse().unwrap_or(0),
                // A delta update: the skipped segments keep their numbers.
                "EXT-X-SKIP" => {
                    msn += attr(v, "SKIPPED-SEGMENTS")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                "EXT-X-SERVER-CONTROL" => p.can_skip = attr(v, "CAN-SKIP-UNTIL").is_some(),
                "EXT-X-PART-INF" => {
                    p.part_target = attr(v, "PART-TARGET").and_then(|t| t.parse().ok());
                }
                "EXT-X-PART" => {
                    let (mut uri, mut duration, mut independent) = (None, None, false);
                    for (key, value) in attrs(v) {
                        match key {
                            "URI" => uri = Some(value),
                            "DURATION" => duration = value.parse().ok(),
                            "INDEPENDENT" => independent = value == "YES",
                            _ => {}
                        }
                    }
                    if let (Some(uri), Some(d)) = (uri, duration) {
                        p.parts.push(((msn, part), uri, d, independent));
                        part += 1;
                    }
                }
                "EXTINF" => extinf = v.split(',').next().and_then(|d| d.parse::<f64>().ok()),
                _ => {}
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

    fn part(&self, at: (u64, usize)) -> Option<(&'a str, f64, bool)> {
        self.parts
            .iter()
            .find(|p| p.0 == at)
            .map(|p| (p.1, p.2, p.3))
    }

    fn complete(&self, msn: u64) -> bool {
        self.segments.iter().any(|s| s.0 == msn)
    }
}

/// `NAME=value` or `NAME="value"` from an attribute list.
fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    attrs(list)
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The attributes of a list, in one pass.
fn attrs(list: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        rest = next;
        Some((key.trim(), value))
    })
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
        r = session.playlist(None, false) => r,
        _ = stop.changed() => return,
    };
    let first = match first {
        Ok(p) => p,
        Err(e) => return viewer.failed(format!("play {url}: {e}")),
    };
    viewer.playing();
    let run = async {
        if low_latency {
            session.low_latency(&mut viewer, first).await
        } else {
            session.regular(&mut viewer, first).await
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

/// A playlist's text, to be parsed by [`Playlist::parse`].
struct Text(BytesMut);

impl Text {
    fn parse(&self) -> Result<Playlist<'_>, String> {
        std::str::from_utf8(&self.0)
            .map(Playlist::parse)
            .map_err(|_| "playlist not UTF-8".to_owned())
    }
}

impl Session {
    /// The playlist, blocking until part `(msn, part)` exists if given; a delta update if
    /// `skip`.
    async fn playlist(&mut self, block: Option<(u64, usize)>, skip: bool) -> Result<Text, String> {
        let mut target = self.url.target.clone();
        let mut sep = if target.contains('?') { '&' } else { '?' };
        if let Some((m, p)) = block {
            target.push_str(&format!("{sep}_HLS_msn={m}&_HLS_part={p}"));
            sep = '&';
        }
        if skip {
            target.push_str(&format!("{sep}_HLS_skip=YES"));
        }
        let body = self.fetch(&target, true).await?.unwrap_or_default();
        Ok(Text(body))
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

    /// As hls.js in low-latency mode: blocking reloads, delta updates when the server takes
    /// them (`CAN-SKIP-UNTIL`; the parts asked for are never among the skipped segments).
    async fn low_latency(&mut self, viewer: &mut Viewer, first: Text) -> String {
        let (part_target, skip, mut want) = match first.parse() {
            Ok(p) => (p.part_target.unwrap_or(0.2), p.can_skip, p.next_part()),
            Err(e) => return e,
        };
        let mut pace = Pace::new(Duration::from_secs_f64(2.0 * part_target));
        loop {
            let text = match self.playlist(Some(want), skip).await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let playlist = match text.parse() {
                Ok(p) => p,
                Err(e) => return e,
            };
            // Everything listed from the wanted part on; a segment that ended before the
            // wanted index continues with the next segment's first part.
            loop {
                if let Some((uri, duration, independent)) = playlist.part(want) {
                    if let Err(e) = self
                        .media(viewer, &mut pace, uri, duration, independent)
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

    async fn regular(&mut self, viewer: &mut Viewer, first: Text) -> String {
        let (target, mut next) = match first.parse() {
            // Start with the newest complete segment.
            Ok(p) => (p.target_duration, p.segments.last().map_or(0, |s| s.0)),
            Err(e) => return e,
        };
        let target = Duration::from_secs_f64(target.max(0.1));
        let mut pace = Pace::new(target);
        let mut text = first;
        loop {
            let polled = Instant::now();
            let mut new = false;
            let playlist = match text.parse() {
                Ok(p) => p,
                Err(e) => return e,
            };
            for &(msn, uri, duration) in &playlist.segments {
                if msn >= next {
                    if let Err(e) = self.media(viewer, &mut pace, uri, duration, true).await {
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
            text = match self.playlist(None, false).await {
                Ok(t) => t,
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
        assert_eq!(p.segments, [(10, "10.m4s", 2.0), (11, "11.m4s", 0.4)]);
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
    fn delta_updates_keep_the_skipped_segments_numbers() {
        let delta = LL.replace(
            "#EXT-X-MAP:URI=\"init-ab.mp4\"\n#EXTINF:2.000,\n10.m4s\n",
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        );
        assert_ne!(delta, LL);
        let (full, delta) = (Playlist::parse(LL), Playlist::parse(&delta));
        assert_eq!(delta.segments, [(11, "11.m4s", 0.4)]);
        assert_eq!(delta.parts, full.parts);
        assert_eq!(delta.next_part(), full.next_part());
        assert!(!full.can_skip, "no CAN-SKIP-UNTIL in this playlist");
        let skippable = LL.replace("PART-HOLD-BACK", "CAN-SKIP-UNTIL=12,PART-HOLD-BACK");
        assert!(Playlist::parse(&skippable).can_skip);
    }

    #[test]
    fn parses_regular_playlists_and_resolves_uris() {
        let p = Playlist::parse(
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:1\n\
             #EXTINF:1.000,\ns-7.ts\n#EXTINF:0.960,\ns-8.ts\n",
        );
        assert_eq!(p.segments[1], (8, "s-8.ts", 0.96));
        assert_eq!((p.target_duration, p.part_target), (1.0, None));
        let u = HttpUrl::parse("http://127.0.0.1:8080/hls/live/s/index.m3u8?token=x").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.resolve("3.1.m4s?token=x"), "/hls/live/s/3.1.m4s?token=x");
        assert_eq!(u.resolve("/other/a.ts"), "/other/a.ts");
        assert_eq!(attr("A=1,URI=\"x,y\",B=YES", "B"), Some("YES"));
        assert_eq!(attr("A=1,URI=\"x,y\",B=YES", "URI"), Some("x,y"));
    }
}

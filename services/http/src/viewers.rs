//! HLS viewers, counted as sessions: an HLS player holds no connection a server could count
//! (its requests may even go to different edges), so a session is a client (its address and
//! `User-Agent`) that fetched something of a stream within a sliding window. The bytes of the
//! answers are counted as they are written.
//!
//! The table is bounded: at most `cap` sessions, the least recently seen evicted first, so a
//! flood of requests from made-up clients costs a fixed amount of memory (and makes the count
//! meaningless while it lasts, which no table could avoid). Only answered requests (2xx) count:
//! requests for streams that do not exist never enter the table.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use liverelay_metrics::ViewerMetrics;
use liverelay_types::StreamId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// How often sessions past their window are dropped (and the gauge follows) without requests.
const SWEEP: Duration = Duration::from_secs(1);

/// The HLS sessions of a process; clones share the table.
#[derive(Clone)]
pub struct HlsViewers {
    table: Arc<Mutex<Table>>,
    /// Hashes a client's identity with a per-process key: no one can aim two clients at one
    /// entry.
    hasher: RandomState,
    bytes: Counter,
}

struct Table {
    window: Duration,
    cap: usize,
    /// A session (stream and client, hashed) → when it was last seen and its recency stamp.
    sessions: HashMap<u64, Session>,
    /// Recency stamp → session: the first is the least recently seen.
    by_age: BTreeMap<u64, u64>,
    next_stamp: u64,
    per_stream: HashMap<Arc<StreamId>, u64>,
    gauge: Gauge,
}

struct Session {
    stamp: u64,
    seen: Instant,
    stream: Arc<StreamId>,
}

impl HlsViewers {
    /// Sessions last `window` after their last request; at most `cap` are kept. Needs a tokio
    /// runtime (the table is swept every second until the last clone is gone).
    pub fn new(window: Duration, cap: usize, metrics: &ViewerMetrics) -> Self {
        let table = Arc::new(Mutex::new(Table {
            window,
            cap: cap.max(1),
            sessions: HashMap::new(),
            by_age: BTreeMap::new(),
            next_stamp: 0,
            per_stream: HashMap::new(),
            gauge: metrics.gauge("hls"),
        }));
        tokio::spawn(sweep(Arc::downgrade(&table)));
        Self {
            table,
            hasher: RandomState::new(),
            bytes: metrics.bytes("hls"),
        }
    }

    /// Counts an answer to a request for `stream` from `client` (with this `User-Agent`): its
    /// session, when it succeeded, and its bytes as they are written.
    pub fn answered(
        &self,
        stream: &StreamId,
        client: IpAddr,
        agent: Option<&HeaderValue>,
        response: Response,
    ) -> Response {
        if !response.status().is_success() {
            return response;
        }
        let id = self
            .hasher
            .hash_one((stream, client, agent.map(HeaderValue::as_bytes)));
        self.lock().seen(id, stream, Instant::now());
        let bytes = self.bytes.clone();
        response.map(|inner| Body::new(Counted { inner, bytes }))
    }

    /// Sessions now, per stream (for the node's load reports).
    pub fn per_stream(&self) -> Vec<(StreamId, u64)> {
        let mut table = self.lock();
        table.expire(Instant::now());
        table
            .per_stream
            .iter()
            .map(|(key, n)| ((**key).clone(), *n))
            .collect()
    }

    /// Sessions now, all streams.
    pub fn count(&self) -> usize {
        let mut table = self.lock();
        table.expire(Instant::now());
        table.sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn sweep(table: Weak<Mutex<Table>>) {
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tick.tick().await;
        let Some(table) = table.upgrade() else { return };
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        table.expire(Instant::now());
    }
}

impl Table {
    fn seen(&mut self, id: u64, stream: &StreamId, now: Instant) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        match self.sessions.get_mut(&id) {
            Some(session) => {
                self.by_age.remove(&session.stamp);
                session.stamp = stamp;
                session.seen = now;
            }
            None => {
                let stream = match self.per_stream.get_key_value(stream) {
                    Some((key, _)) => key.clone(),
                    None => Arc::new(stream.clone()),
                };
                *self.per_stream.entry(stream.clone()).or_default() += 1;
                let seen = now;
                self.sessions.insert(
                    id,
                    Session {
                        stamp,
                        seen,
                        stream,
                    },
                );
            }
        }
        self.by_age.insert(stamp, id);
        self.expire(now);
    }

    /// Drops the sessions not seen within the window, and the least recently seen beyond the
    /// cap.
    fn expire(&mut self, now: Instant) {
        while let Some((&stamp, &id)) = self.by_age.first_key_value() {
            let session = &self.sessions[&id];
            let stale = now.saturating_duration_since(session.seen) >= self.window;
            if !stale && self.sessions.len() <= self.cap {
                break;
            }
            self.by_age.remove(&stamp);
            if let Some(session) = self.sessions.remove(&id)
                && let Some(n) = self.per_stream.get_mut(&session.stream)
            {
                *n -= 1;
                if *n == 0 {
                    self.per_stream.remove(&session.stream);
                }
            }
        }
        self.gauge.set(self.sessions.len() as i64);
    }
}

/// A response body that counts its bytes as they are written; its length stays known (a
/// playlist keeps its `Content-Length`).
struct Counted {
    inner: Body,
    bytes: Counter,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn ok() -> Response {
        "#EXTM3U\n".into_response()
    }

    #[tokio::test]
    async fn sessions_are_clients_per_stream_within_the_window() {
        let metrics = ViewerMetrics::default();
        let viewers = HlsViewers::new(Duration::from_secs(60), 100, &metrics);
        let (a, b) = (StreamId::new("live", "a"), StreamId::new("live", "b"));
        let safari = HeaderValue::from_static("Safari");
        let chrome = HeaderValue::from_static("Chrome");
        for _ in 0..3 {
            viewers.answered(&a, ip(1), Some(&safari), ok());
        }
        viewers.answered(&a, ip(1), Some(&chrome), ok());
        viewers.answered(&a, ip(2), Some(&safari), ok());
        viewers.answered(&b, ip(1), Some(&safari), ok());
        // Refused requests are nobody's session.
        let missing = StatusCode::NOT_FOUND.into_response();
        viewers.answered(&a, ip(3), None, missing);
        let mut per_stream = viewers.per_stream();
        per_stream.sort();
        assert_eq!(per_stream, vec![(a, 3), (b, 1)]);
        assert_eq!(metrics.gauge("hls").get(), 4);
    }

    #[tokio::test]
    async fn sessions_end_after_the_window() {
        let metrics = ViewerMetrics::default();
        let viewers = HlsViewers::new(Duration::from_secs(10), 100, &metrics);
        let start = Instant::now();
        let mut table = viewers.lock();
        let a = StreamId::new("live", "a");
        table.seen(1, &a, start);
        table.seen(2, &a, start + Duration::from_secs(6));
        table.expire(start + Duration::from_secs(9));
        assert_eq!(table.sessions.len(), 2);
        // The first is seen again: it stays past its first window.
        table.seen(1, &a, start + Duration::from_secs(9));
        table.expire(start + Duration::from_secs(16));
        assert_eq!(table.sessions.len(), 1, "the second lapsed at 16 s");
        table.expire(start + Duration::from_secs(19));
        assert!(table.sessions.is_empty());
        assert!(table.per_stream.is_empty(), "no stream kept for no session");
        assert_eq!(metrics.gauge("hls").get(), 0);
    }

    #[tokio::test]
    async fn a_flood_of_clients_keeps_the_table_at_its_cap() {
        let metrics = ViewerMetrics::default();
        let viewers = HlsViewers::new(Duration::from_secs(60), 1000, &metrics);
        let stream = StreamId::new("live", "a");
        let agent = HeaderValue::from_static("player");
        // A real viewer, then a flood of made-up ones while it keeps watching.
        for i in 0..50_000u32 {
            if i % 100 == 0 {
                viewers.answered(&stream, ip(1), Some(&agent), ok());
            }
            viewers.answered(&stream, IpAddr::from(i.to_be_bytes()), None, ok());
        }
        let table = viewers.lock();
        assert_eq!(table.sessions.len(), 1000);
        assert_eq!(table.by_age.len(), 1000);
        assert_eq!(table.per_stream.values().sum::<u64>(), 1000);
        drop(table);
        assert_eq!(metrics.gauge("hls").get(), 1000);
    }

    #[tokio::test]
    async fn answers_are_counted_as_written_and_keep_their_length() {
        let metrics = ViewerMetrics::default();
        let viewers = HlsViewers::new(Duration::from_secs(60), 10, &metrics);
        let stream = StreamId::new("live", "a");
        let response = viewers.answered(&stream, ip(1), None, ok());
        assert_eq!(response.body().size_hint().exact(), Some(8));
        assert_eq!(metrics.bytes("hls").get(), 0, "nothing written yet");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        assert_eq!(&body.unwrap()[..], b"#EXTM3U\n");
        assert_eq!(metrics.bytes("hls").get(), 8);
    }
}

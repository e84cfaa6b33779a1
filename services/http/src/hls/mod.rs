//! Low-Latency HLS playback: `GET /hls/{app}/{stream}/index.m3u8` (the media playlist) and the
//! files it names: `init-{H}.mp4` (an init section, named by the hex hash of its bytes), `{N}.m4s`
//! (segment N) and `{N}.{P}.m4s` (part P of segment N).
//!
//! Packaging is in `liverelay-hls`; here are the requests. A stream is packaged while it has
//! viewers of any protocol or HLS requests ([`packaged`]). The first request for a stream that
//! is live here or anywhere in the cluster starts its packaging (an edge pulls it) and waits
//! for the first part; a stream live nowhere is 404 at once. Blocking playlist reloads and requests
//! for the parts about to come are held until they can be answered (at most three target
//! durations: then 503), and a client address holds at most `hls.max_held_per_client` at once
//! (then 429). A play token (`?token=`), when play tokens are on, is checked on every request,
//! statelessly, so that a CDN can forward requests to any edge; the playlist carries it into
//! the URIs it lists.

mod held;
mod packaged;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use liverelay_admission::Gate;
use liverelay_hls::{
    Packager, PackagerConfig, PlaylistQuery, Readiness, part_ready, playlist, playlist_ready,
    segment_ready,
};
use liverelay_rtmp::name::check_name;
use liverelay_types::StreamId;
use tracing::{debug, info};

use crate::metrics::HttpMetrics;
use crate::reply::{answer, refuse};
use crate::viewers::HlsViewers;
use held::HeldRequests;
use packaged::{Packaged, Packagings};

/// Whether a play token lets this request see this stream: `Err` says why not.
pub type TokenCheck = Arc<dyn Fn(&StreamId, Option<&str>) -> Result<(), String> + Send + Sync>;

/// Whether a stream is live here or anywhere in the cluster (an edge asks the registry).
pub type LiveCheck = Arc<dyn Fn(StreamId) -> BoxFuture<'static, bool> + Send + Sync>;

/// What the HLS routes need.
pub struct HlsService {
    /// Admits each stream's packaging as a play (an edge starts pulling).
    pub gate: Arc<Gate>,
    pub max_name_len: usize,
    pub packaging: PackagerConfig,
    /// How long the first request waits for the first part.
    pub wait: Duration,
    /// Packaging stops this long after a stream's last request.
    pub idle: Duration,
    pub max_held_per_client: usize,
    pub tokens: Option<TokenCheck>,
    pub live: LiveCheck,
    pub metrics: HttpMetrics,
    /// Counts the sessions (viewers) and the bytes of the answers.
    pub viewers: HlsViewers,
}

struct Hls {
    service: HlsService,
    packagings: Arc<Packagings>,
    held: HeldRequests,
}

/// `GET /hls/{app}/{stream}/{file}`.
pub fn hls_router(service: HlsService) -> Router {
    let packagings = Packagings::new(service.gate.clone(), service.packaging, service.idle);
    tokio::spawn(Packagings::keep_watched_packaged(Arc::downgrade(
        &packagings,
    )));
    let held = HeldRequests::new(
        service.max_held_per_client,
        service.metrics.hls_held.clone(),
    );
    Router::new()
        .route("/hls/{app}/{stream}/{file}", get(hls_get))
        .with_state(Arc::new(Hls {
            service,
            packagings,
            held,
        }))
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Playlist,
    Init(u64),
    Segment(u64),
    Part(u64, usize),
}

impl Asked {
    fn parse(file: &str) -> Option<Self> {
        let number = |s: &str| {
            (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        if file == "index.m3u8" {
            return Some(Self::Playlist);
        }
        if let Some(h) = file
            .strip_prefix("init-")
            .and_then(|f| f.strip_suffix(".mp4"))
        {
            // The hex hash the playlist names it by.
            return (h.len() == 16)
                .then(|| u64::from_str_radix(h, 16).ok())
                .flatten()
                .map(Self::Init);
        }
        let stem = file.strip_suffix(".m4s")?;
        match stem.split_once('.') {
            None => number(stem).map(Self::Segment),
            Some((n, p)) => Some(Self::Part(number(n)?, usize::try_from(number(p)?).ok()?)),
        }
    }

    /// The metrics label.
    fn kind(self) -> &'static str {
        match self {
            Self::Playlist => "playlist",
            Self::Init(_) => "init",
            Self::Segment(_) => "segment",
            Self::Part(..) => "part",
        }
    }
}

async fn hls_get(
    State(hls): State<Arc<Hls>>,
    Path((app, stream, file)): Path<(String, String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    UserAgent(agent): UserAgent,
) -> Response {
    let asked = Asked::parse(&file);
    let kind = asked.map_or("unknown", Asked::kind);
    let started = Instant::now();
    let key = StreamId::new(app, stream);
    let response = match asked {
        None => answer(StatusCode::NOT_FOUND, "no such HLS file"),
        Some(asked) => serve(&hls, peer, key.clone(), asked, query).await,
    };
    hls.service
        .metrics
        .hls_request(kind, response.status(), started.elapsed());
    hls.service
        .viewers
        .answered(&key, peer.ip(), agent.as_ref(), response)
}

/// The request's `User-Agent` (part of a session's identity), without copying every header
/// as the `HeaderMap` extractor does.
struct UserAgent(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::USER_AGENT).cloned()))
    }
}

async fn serve(
    hls: &Hls,
    peer: SocketAddr,
    key: StreamId,
    asked: Asked,
    query: Option<String>,
) -> Response {
    let s = &hls.service;
    if let Err(e) = check_name(&key.app, s.max_name_len).and(check_name(&key.name, s.max_name_len))
    {
        return answer(StatusCode::BAD_REQUEST, &format!("bad stream name: {e}"));
    }
    let token = match token_of(query.as_deref()) {
        Ok(token) => token,
        Err(why) => return answer(StatusCode::BAD_REQUEST, why),
    };
    if let Some(check) = &s.tokens
        && let Err(why) = check(&key, token)
    {
        debug!(%peer, stream = %key, "HLS request refused: {why}");
        return answer(StatusCode::FORBIDDEN, &why);
    }
    let playlist_query = match asked {
        Asked::Playlist => match PlaylistQuery::parse(query.as_deref()) {
            Ok(q) => q,
            Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
        },
        _ => PlaylistQuery::default(),
    };
    let (packaged, first) = match hls.packagings.get(&key) {
        Some(p) => (p, false),
        None => {
            if !(s.live)(key.clone()).await {
                return answer(StatusCode::NOT_FOUND, "stream not live");
            }
            match hls.packagings.get_or_start(&key).await {
                Ok(p) => (p, true),
                Err(refused) => return refuse(peer, "HLS", &refused),
            }
        }
    };
    let target_secs = playlist::Targets::of(&packaged.lock()).target_duration_secs;
    // A stream just started waits for its first part; a held request, three target
    // durations (the spec's bound).
    let limit = if packaged.lock().last_part().is_none() {
        s.wait
    } else {
        Duration::from_secs(3 * target_secs)
    };
    let ready = |p: &Packager| match asked {
        Asked::Playlist => match playlist_query.block {
            Some((msn, part)) => playlist_ready(p, msn, part),
            None if p.last_part().is_some() => Readiness::Ready,
            None => Readiness::Wait,
        },
        Asked::Init(n) => match p.init(n) {
            Some(_) => Readiness::Ready,
            None if p.segments().is_empty() => Readiness::Wait,
            None => Readiness::Refused,
        },
        Asked::Segment(n) => segment_ready(p, n),
        Asked::Part(n, i) => part_ready(p, n, i),
    };
    match wait(hls, peer, &packaged, ready, limit).await {
        Waited::Ready => {}
        Waited::Refused if asked == Asked::Playlist => {
            return answer(StatusCode::BAD_REQUEST, "_HLS_msn/_HLS_part too far ahead");
        }
        Waited::Refused => return answer(StatusCode::NOT_FOUND, "no such segment or part"),
        Waited::TimedOut if first => {
            info!(%peer, stream = %key, "HLS: no part came in time");
            return answer(StatusCode::NOT_FOUND, "stream not live");
        }
        Waited::TimedOut => return answer(StatusCode::SERVICE_UNAVAILABLE, "not there in time"),
        Waited::TooManyHeld => {
            return answer(
                StatusCode::TOO_MANY_REQUESTS,
                "too many held HLS requests from this address",
            );
        }
    }
    let packager = packaged.lock();
    match asked {
        Asked::Playlist => {
            let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
            let text = packaged.playlist(&packager, playlist_query.skip, &query);
            let cache = if playlist_query.block.is_some() {
                // The answer to a blocking request is final for its URL.
                HeaderValue::from_str(&format!("public, max-age={}", 6 * target_secs))
                    .unwrap_or(HeaderValue::from_static("public, max-age=1"))
            } else {
                HeaderValue::from_static("public, max-age=1")
            };
            media("application/vnd.apple.mpegurl", cache, Body::from(text))
        }
        Asked::Init(n) => {
            let init = packager.init(n).cloned().unwrap_or_default();
            media("video/mp4", immutable(), Body::from(init))
        }
        Asked::Segment(n) => {
            let chunks = packager
                .segment(n)
                .map(|s| {
                    s.parts
                        .iter()
                        .flat_map(|p| p.fragment.chunks.iter().cloned())
                        .collect()
                })
                .unwrap_or_default();
            media("video/iso.segment", immutable(), Fragments::body(chunks))
        }
        Asked::Part(n, i) => {
            let chunks = packager
                .segment(n)
                .and_then(|s| s.parts.get(i))
                .map(|p| p.fragment.chunks.iter().cloned().collect())
                .unwrap_or_default();
            media("video/iso.segment", immutable(), Fragments::body(chunks))
        }
    }
}

/// Segments, parts and init sections never change once they exist, and their names are
/// never reused (numbers start at the wall clock).
fn immutable() -> HeaderValue {
    HeaderValue::from_static("public, max-age=86400, immutable")
}

/// A segment's or part's shared buffers as the body, written vectored, never copied, with
/// its length known (`Content-Length`, not chunked: a CDN can tell a whole answer from a cut
/// one, and the client reads no chunk framing).
struct Fragments {
    chunks: VecDeque<Bytes>,
    left: u64,
}

impl Fragments {
    fn body(chunks: VecDeque<Bytes>) -> Body {
        let left = chunks.iter().map(|c| c.len() as u64).sum();
        Body::new(Self { chunks, left })
    }
}

impl HttpBody for Fragments {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|chunk| {
            this.left -= chunk.len() as u64;
            Ok(Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn media(content_type: &'static str, cache: HeaderValue, body: Body) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The request's play token, as given: it goes back into the playlist's URIs, so only
/// characters that are safe there are accepted.
fn token_of(query: Option<&str>) -> Result<Option<&str>, &'static str> {
    let Some(token) = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
    else {
        return Ok(None);
    };
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-._~%".contains(&b);
    if token.len() > 512 || !token.bytes().all(safe) {
        return Err("malformed token");
    }
    Ok(Some(token))
}

enum Waited {
    Ready,
    Refused,
    TimedOut,
    TooManyHeld,
}

/// Waits until `ready` says yes or no, at most `limit`; a request that has to wait counts
/// against its client's held requests.
async fn wait(
    hls: &Hls,
    peer: SocketAddr,
    packaged: &Packaged,
    ready: impl Fn(&Packager) -> Readiness,
    limit: Duration,
) -> Waited {
    let mut changes = packaged.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    let mut held = None;
    loop {
        changes.borrow_and_update();
        match ready(&packaged.lock()) {
            Readiness::Ready => return Waited::Ready,
            Readiness::Refused => return Waited::Refused,
            Readiness::Wait => {}
        }
        if held.is_none() {
            match hls.held.hold(peer.ip()) {
                Some(h) => held = Some(h),
                None => return Waited::TooManyHeld,
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Waited::TimedOut;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
        }
    }
}

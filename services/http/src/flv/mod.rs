//! HTTP-FLV playback: `GET /flv/{app}/{stream}.flv` answers with the stream as an endless FLV
//! file (chunked on HTTP/1.1), for browser players (flv.js, mpegts.js) and ffmpeg.
//!
//! An HTTP-FLV viewer is admitted like an RTMP player, through the same [`Gate`]: the name
//! rule, access (play tokens in `?token=`, the `on_connect` and `on_play` callbacks, which see
//! the request's query as the connect and play arguments), the role's policy (an edge starts
//! pulling the stream), the hub. It then is a hub viewer like any other: it starts at the
//! cached GOP, and one that reads too slowly is skipped to a keyframe.
//!
//! A stream that is not live yet is waited for, as an RTMP play waits, but only for
//! `http.flv_wait_secs` (the answer's status must come first, and the FLV header says whether
//! the stream has audio and video): then 404. On an edge the wait covers the pull from the
//! ingest. The answer ends when the publisher leaves (a player reconnects for the next one);
//! an edge's switch to another ingest is no leave.

mod play;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use liverelay_admission::{Asker, ClientAsk, ClientInfo, Gate, PlayArgs};
use liverelay_metrics::ViewerMetrics;
use liverelay_rtmp::name::check_name;
use liverelay_types::unix_ms;
use tracing::{Instrument, info, warn};

use crate::conn::Coalesce;
use crate::reply::{answer, refuse};
use play::{FlvPlay, NotStarted};

/// What the HTTP-FLV route needs.
pub struct FlvService {
    /// Admits viewers as it admits RTMP players (the same access and sessions).
    pub gate: Arc<Gate>,
    /// The longest app or stream name (`rtmp.max_name_len`, the rule RTMP names follow).
    pub max_name_len: usize,
    /// How long a viewer of a stream that is not live waits before 404.
    pub wait: Duration,
    /// Counts the viewers (`protocol="flv"`) and the bytes sent to them.
    pub viewers: ViewerMetrics,
    /// Viewers' sockets send each write at once (`rtmp.tcp_nodelay`, as for RTMP players);
    /// otherwise an HTTP/1 viewer's socket lets the kernel merge them (Nagle).
    pub nodelay: bool,
}

/// `GET /flv/{app}/{stream}.flv`.
pub fn flv_router(service: FlvService) -> Router {
    Router::new()
        .route("/flv/{app}/{file}", get(flv_play))
        .with_state(Arc::new(service))
}

async fn flv_play(
    State(s): State<Arc<FlvService>>,
    Path((app, file)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    coalesce: Option<Extension<Coalesce>>,
    headers: HeaderMap,
) -> Response {
    let Some(name) = file.strip_suffix(".flv") else {
        return answer(StatusCode::NOT_FOUND, "HTTP-FLV URLs end in .flv");
    };
    if let Err(e) = check_name(&app, s.max_name_len).and(check_name(name, s.max_name_len)) {
        return answer(StatusCode::BAD_REQUEST, &format!("bad stream name: {e}"));
    }
    let header = |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let client = Arc::new(ClientInfo {
        id: ClientInfo::next_id(),
        addr: peer,
        app: app.clone(),
        // The one query there is stands for both the connect's and the play's.
        connect_query: query.clone(),
        flash_ver: header(header::USER_AGENT),
        swf_url: None,
        tc_url: header(header::HOST).map(|host| format!("http://{host}/flv/{app}")),
        page_url: header(header::REFERER),
        connected_at_ms: unix_ms(),
    });
    // As for an RTMP client: its connect first (which may move it to another app), then its
    // play.
    let client = match s.gate.connect(client.clone()).await {
        Ok(None) => client,
        Ok(Some(app)) => Arc::new(ClientInfo {
            app,
            ..(*client).clone()
        }),
        Err(refusal) => {
            warn!(%peer, "HTTP-FLV connect refused: {}", refusal.description);
            return answer(StatusCode::FORBIDDEN, &refusal.description);
        }
    };
    let asker = Asker::Client(ClientAsk {
        client: Some(client),
        name: name.to_owned(),
        args: query,
        plays: None,
    });
    let viewer = match s.gate.play(asker, PlayArgs::default()).await {
        Ok(viewer) => viewer,
        Err(refused) => return refuse(peer, "HTTP-FLV", &refused),
    };
    let span = viewer.span().clone();
    async move {
        let mut play = FlvPlay::new(viewer);
        match tokio::time::timeout(s.wait, play.start()).await {
            Ok(Ok(())) => {}
            Ok(Err(NotStarted::Withdrawn(why))) => {
                info!(%peer, reason = %why, "HTTP-FLV play withdrawn before it started");
                return answer(StatusCode::FORBIDDEN, &why);
            }
            Err(_) => {
                info!(%peer, wait_secs = s.wait.as_secs(), "HTTP-FLV play: stream not live");
                return answer(StatusCode::NOT_FOUND, "stream not live");
            }
        }
        info!(%peer, "HTTP-FLV play started");
        let coalescing = coalesce
            .filter(|_| !s.nodelay)
            .map(|Extension(c)| c.start());
        (
            [
                (header::CONTENT_TYPE, "video/x-flv"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            Body::from_stream(play.into_body(s.viewers.watching("flv"), coalescing)),
        )
            .into_response()
    }
    .instrument(span)
    .await
}

//! The player page: `GET /watch/{app}/{stream}` answers a small self-contained page that plays
//! the stream in a browser, LL-HLS with hls.js in low-latency mode (Safari without Media
//! Source Extensions plays HLS itself) or, with `?proto=flv`, HTTP-FLV with mpegts.js, and
//! shows the live latency. A `?token=` goes on to the media URLs.
//!
//! The JavaScript players are not part of this crate: `make player` installs them from npm
//! (pinned in `player/package-lock.json`) and copies the served files with their licences into
//! `http.player_dir`, which `GET /player/{file}` reads. A file that is not there is a 404 with
//! a logged reason, and the page says that its player is missing.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use liverelay_rtmp::name::check_name;
use serde::Deserialize;
use tracing::warn;

use crate::reply::answer;

/// The page; it finds the app, stream, protocol and token in its own URL.
const PAGE: &str = include_str!("page.html");

/// What `/player/{file}` serves from the player directory, and as what. Only these names are
/// looked up, so a request never names another file.
const ASSETS: [(&str, &str); 5] = [
    ("hls.min.js", "text/javascript; charset=utf-8"),
    ("hls.js.LICENSE", "text/plain; charset=utf-8"),
    ("mpegts.js", "text/javascript; charset=utf-8"),
    ("mpegts.js.LICENSE", "text/plain; charset=utf-8"),
    // The licences of what mpegts.js bundles.
    ("mpegts.js.LICENSE.txt", "text/plain; charset=utf-8"),
];

/// What the player page and its assets need.
pub struct WatchService {
    /// The longest app or stream name (`rtmp.max_name_len`): the page of a stream that could
    /// never be played is a 400, as its HTTP-FLV URL is.
    pub max_name_len: usize,
    /// Where the player scripts are (`http.player_dir`; relative to the working directory).
    pub player_dir: PathBuf,
}

/// `GET /watch/{app}/{stream}` and `GET /player/{file}`.
pub fn watch_router(service: WatchService) -> Router {
    Router::new()
        .route("/watch/{app}/{stream}", get(page))
        .route("/player/{file}", get(asset))
        .with_state(Arc::new(service))
}

#[derive(Deserialize)]
struct PageQuery {
    proto: Option<String>,
}

async fn page(
    State(s): State<Arc<WatchService>>,
    Path((app, stream)): Path<(String, String)>,
    // Other parameters (the token) are the page's to read.
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Err(e) = check_name(&app, s.max_name_len).and(check_name(&stream, s.max_name_len)) {
        return answer(StatusCode::BAD_REQUEST, &format!("bad stream name: {e}"));
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("malformed query: {e}")),
    };
    if let Some(proto) = query
        .proto
        .as_deref()
        .filter(|p| !matches!(*p, "hls" | "flv"))
    {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("proto is hls or flv, not {proto:?}"),
        );
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn asset(State(s): State<Arc<WatchService>>, Path(file): Path<String>) -> Response {
    let Some((name, content_type)) = ASSETS.iter().find(|(name, _)| *name == file) else {
        return answer(StatusCode::NOT_FOUND, "no such player file");
    };
    let path = s.player_dir.join(name);
    match tokio::fs::read(&path).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // The names carry no version: a cached copy is checked after an hour.
                (header::CACHE_CONTROL, "public, max-age=3600"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            warn!(
                path = %path.display(),
                error = %e,
                "player file missing: set http.player_dir to where `make player` put the players"
            );
            answer(StatusCode::NOT_FOUND, "player file missing on this server")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    fn router(player_dir: PathBuf) -> Router {
        watch_router(WatchService {
            max_name_len: 16,
            player_dir,
        })
    }

    async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn page_for_good_names_and_protocols_only() {
        let r = router(PathBuf::from("/nonexistent"));
        for uri in [
            "/watch/live/cam",
            "/watch/live/cam?proto=flv",
            "/watch/live/cam?proto=hls&token=abc",
        ] {
            let (status, body) = get(&r, uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert!(body.contains("liverelayStats"), "{uri}: the page");
        }
        for uri in [
            "/watch/live/waytoolongstreamname",
            "/watch/live/a%26b",
            "/watch/live/a%0Ab",
            "/watch/live/cam?proto=rtmp",
            "/watch/live/cam?proto=%ZZ",
        ] {
            assert_eq!(get(&r, uri).await.0, StatusCode::BAD_REQUEST, "{uri}");
        }
    }

    #[tokio::test]
    async fn assets_from_the_player_dir_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("liverelay-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mpegts.js"), "var mpegts;").unwrap();
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let r = router(dir.clone());
        assert_eq!(
            get(&r, "/player/mpegts.js").await,
            (StatusCode::OK, "var mpegts;".into())
        );
        // Missing from the directory, or not a player file.
        assert_eq!(get(&r, "/player/hls.min.js").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&r, "/player/secret.txt").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            get(&r, "/player/..%2Fsecret.txt").await.0,
            StatusCode::NOT_FOUND
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! The JSON HTTP API. Admin routes need `Authorization: Bearer <admin token>`; the route
//! lookup for players, health and metrics are open.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/keys` | create a stream key (secret shown once) |
//! | `GET /v1/keys`, `GET /v1/keys/{id}` | list / show keys (never the secret) |
//! | `POST /v1/keys/{id}/rotate` | new secret; the old one dies with its publish |
//! | `DELETE /v1/keys/{id}` | revoke; its publish ends |
//! | `GET`/`POST /v1/keys/{id}/targets`, `DELETE .../targets/{target}` | restream targets of a key |
//! | `POST /v1/play-tokens` | a signed playback token |
//! | `GET /v1/streams` | live streams with owner, codecs, bitrate, viewers per edge |
//! | `GET /v1/streams/{app}/{stream}/route` | the edge a new viewer should use (open; cached 500 ms per stream) |
//! | `POST /v1/streams/{app}/{stream}/drop` | end a stream's publisher or viewers |
//! | `GET /v1/relays` | static relays (config, restream targets, `Relay` resources): owner, state, errors |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use liverelay_auth::play_token;
use liverelay_control_api::{BodyError, DropRequest, NewKey, NewPlayToken, NewTarget};
use liverelay_http::Readiness;
use liverelay_metrics::MetricsRegistry;
use liverelay_redis::ClusterCommand;
use liverelay_static_relay::{RelaySpec, RelayStatus};
use liverelay_types::{TokenRejected, unix_secs, verify_bearer};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use crate::core::Core;
use crate::keys::{KeyError, KeyRecord};
use crate::live;

#[derive(Clone)]
struct Api {
    core: Arc<Core>,
    admin_token: Arc<str>,
    routes: Arc<RouteCache>,
}

/// How long a route answer is reused: the open route endpoint costs Redis round trips, so a
/// flood of lookups costs one per stream per this; short, so a draining edge leaves routing at
/// once (well within the report interval).
const ROUTE_TTL: Duration = Duration::from_millis(500);
/// Streams whose answer is kept at once; made-up names cannot grow it beyond.
const ROUTE_CACHE_MAX: usize = 10_000;

type RouteAnswer = Result<serde_json::Value, (StatusCode, String)>;

/// Route answers by stream (a Redis failure is not kept).
#[derive(Default)]
struct RouteCache(Mutex<HashMap<(String, String), (Instant, RouteAnswer)>>);

impl RouteCache {
    fn get(&self, key: &(String, String)) -> Option<RouteAnswer> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ROUTE_TTL)
            .map(|(_, answer)| answer.clone())
    }

    fn put(&self, key: (String, String), answer: RouteAnswer) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ROUTE_CACHE_MAX {
            map.retain(|_, (at, _)| at.elapsed() < ROUTE_TTL);
            if map.len() >= ROUTE_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), answer));
    }
}

/// An API failure as a status and `{"error": ...}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A body the API cannot take.
impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        Self(StatusCode::BAD_REQUEST, e.0)
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound => Self(StatusCode::NOT_FOUND, "no such key".into()),
            KeyError::Store(e) => {
                warn!(error = %e, "key store failed");
                Self(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    warn!(error = %e, "registry read failed");
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

type ApiResult = Result<Response, ApiError>;

/// Taking this as a handler's argument makes its route admin-only: the request must carry
/// `Authorization: Bearer <admin token>` (compared in constant time), else 401.
struct Admin;

impl FromRequestParts<Api> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verify_bearer(given, &api.admin_token)
            .map(|()| Admin)
            .map_err(|e| {
                let why = match e {
                    TokenRejected::Missing => "admin token required (Authorization: Bearer ...)",
                    TokenRejected::Wrong => "wrong admin token",
                };
                ApiError(StatusCode::UNAUTHORIZED, why.into())
            })
    }
}

pub fn router(
    core: Arc<Core>,
    admin_token: &str,
    ready: Readiness,
    metrics: Arc<MetricsRegistry>,
) -> Router {
    let api = Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", get(get_key).delete(revoke_key))
        .route("/v1/keys/{id}/rotate", post(rotate_key))
        .route("/v1/keys/{id}/targets", get(list_targets).post(add_target))
        .route("/v1/keys/{id}/targets/{target}", delete(remove_target))
        .route("/v1/relays", get(relays))
        .route("/v1/play-tokens", post(play_token))
        .route("/v1/streams", get(streams))
        .route("/v1/streams/{app}/{stream}/route", get(route))
        .route("/v1/streams/{app}/{stream}/drop", post(drop_sessions))
        .with_state(Api {
            core,
            admin_token: admin_token.into(),
            routes: Arc::default(),
        });
    liverelay_http::health_router(ready, metrics).merge(api)
}

/// A key as the API shows it: everything but the secret and its hash.
fn key_json(record: &KeyRecord) -> serde_json::Value {
    json!({
        "id": record.id,
        "app": record.app,
        "stream": record.stream,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "rotated_at": record.rotated_at,
        "revoked": record.revoked,
        "metadata": record.metadata,
    })
}

fn with_secret(record: &KeyRecord, secret: String) -> serde_json::Value {
    let mut body = key_json(record);
    body["key"] = json!(secret);
    body
}

async fn create_key(State(api): State<Api>, _: Admin, body: axum::body::Bytes) -> ApiResult {
    let new = NewKey::parse(&body, unix_secs())?;
    let expires_at = new.expires_at();
    let (record, secret) = api
        .core
        .create_key(&new.app, &new.stream, expires_at, new.metadata)
        .await?;
    Ok((StatusCode::CREATED, Json(with_secret(&record, secret))).into_response())
}

async fn list_keys(State(api): State<Api>, _: Admin) -> ApiResult {
    let keys: Vec<_> = api.core.keys.list().await?.iter().map(key_json).collect();
    Ok(Json(json!({ "keys": keys })).into_response())
}

async fn get_key(State(api): State<Api>, _: Admin, Path(id): Path<String>) -> ApiResult {
    Ok(Json(key_json(&api.core.keys.get(&id).await?)).into_response())
}

async fn rotate_key(State(api): State<Api>, _: Admin, Path(id): Path<String>) -> ApiResult {
    let (record, secret) = api.core.rotate_key(&id).await?;
    Ok(Json(with_secret(&record, secret)).into_response())
}

async fn revoke_key(State(api): State<Api>, _: Admin, Path(id): Path<String>) -> ApiResult {
    Ok(Json(key_json(&api.core.revoke_key(&id).await?)).into_response())
}

async fn play_token(State(api): State<Api>, _: Admin, body: axum::body::Bytes) -> ApiResult {
    let req = NewPlayToken::parse(&body)?;
    let Some(secret) = api.core.play_token_secret.as_deref() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "auth.play_token_secret is not configured on control".into(),
        ));
    };
    let max = api.core.play_token_max_ttl_secs;
    let ttl = req.ttl_secs();
    let Some(expires_at) = play_token::expiry(unix_secs(), ttl, max) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("ttl_secs {ttl} exceeds auth.play_token_max_ttl_secs ({max})"),
        ));
    };
    let token = play_token::sign(secret.as_bytes(), &req.app, &req.stream, expires_at);
    Ok(
        Json(
            json!({ "token": token, "expires_at": expires_at, "query": format!("token={token}") }),
        )
        .into_response(),
    )
}

async fn streams(State(api): State<Api>, _: Admin) -> ApiResult {
    let records = api.core.registry.list().await.map_err(unavailable)?;
    let reports = api.core.nodes.list().await.map_err(unavailable)?;
    Ok(Json(json!({ "streams": live::streams(records, &reports) })).into_response())
}

async fn route(State(api): State<Api>, Path((app, stream)): Path<(String, String)>) -> ApiResult {
    let key = (app, stream);
    let answer = match api.routes.get(&key) {
        Some(answer) => answer,
        None => {
            let answer = find_route(&api, &key.0, &key.1).await?;
            api.routes.put(key, answer.clone());
            answer
        }
    };
    match answer {
        Ok(route) => Ok(Json(route).into_response()),
        Err((status, why)) => Err(ApiError(status, why)),
    }
}

/// The answer for a viewer of `app/stream` from Redis; `Err` only when Redis failed.
async fn find_route(api: &Api, app: &str, stream: &str) -> Result<RouteAnswer, ApiError> {
    let key = liverelay_types::StreamId::new(app.to_owned(), stream.to_owned());
    if api
        .core
        .registry
        .lookup(&key)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Ok(Err((StatusCode::NOT_FOUND, format!("{key} is not live"))));
    }
    let reports = api.core.nodes.list().await.map_err(unavailable)?;
    Ok(match live::route(&reports, app, stream) {
        Some(route) => Ok(json!(route)),
        None => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "no edge is available".into(),
        )),
    })
}

async fn drop_sessions(
    State(api): State<Api>,
    _: Admin,
    Path((app, stream)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let req = DropRequest::parse(&body)?;
    let command = ClusterCommand::Drop {
        app,
        name: stream,
        target: req.target(),
        pod: req.pod,
        client_id: req.client_id,
    };
    let pods = api
        .core
        .commands
        .send(&command)
        .await
        .map_err(unavailable)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "sent_to_pods": pods }))).into_response())
}

fn target_json(source: &str, spec: &RelaySpec) -> serde_json::Value {
    json!({
        "id": source.rsplit('/').next().unwrap_or_default(),
        "url": spec.display_url(),
        "relay_id": spec.id,
    })
}

async fn list_targets(State(api): State<Api>, _: Admin, Path(id): Path<String>) -> ApiResult {
    api.core.keys.get(&id).await?;
    let targets: Vec<_> = api
        .core
        .targets(&id)
        .await?
        .iter()
        .filter_map(|(source, config)| {
            let spec = RelaySpec::parse(0, config).ok()?;
            Some(target_json(source, &spec))
        })
        .collect();
    Ok(Json(json!({ "targets": targets })).into_response())
}

async fn add_target(
    State(api): State<Api>,
    _: Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let new = NewTarget::parse(&body)?;
    let key = api.core.keys.get(&id).await?;
    if key.revoked {
        return Err(ApiError(StatusCode::CONFLICT, "the key is revoked".into()));
    }
    match api.core.add_target(&key, &new).await? {
        Ok((source, spec)) => {
            Ok((StatusCode::CREATED, Json(target_json(&source, &spec))).into_response())
        }
        Err(problem) => Err(ApiError(StatusCode::BAD_REQUEST, problem)),
    }
}

async fn remove_target(
    State(api): State<Api>,
    _: Admin,
    Path((id, target)): Path<(String, String)>,
) -> ApiResult {
    if api.core.remove_target(&id, &target).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "no such target".into()))
    }
}

/// A row of `GET /v1/relays`: what a pod holding the relay last stored, or a declared relay no
/// pod has taken yet.
#[derive(Serialize)]
#[serde(untagged)]
enum RelayRow {
    Held(RelayStatus),
    Pending(PendingRelay),
}

/// A declared relay no pod holds: a [`RelayStatus`]'s fields with no owner, state `pending`,
/// nothing tried or moved yet, and no `updated_at_ms`.
#[derive(Serialize)]
struct PendingRelay {
    id: String,
    kind: &'static str,
    url: String,
    stream: String,
    mode: &'static str,
    owner: Option<String>,
    state: &'static str,
    last_error: Option<String>,
    attempts: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl PendingRelay {
    fn new(spec: RelaySpec) -> Self {
        Self {
            url: spec.display_url(),
            stream: spec.stream.to_string(),
            kind: spec.kind.as_str(),
            mode: spec.mode.as_str(),
            id: spec.id,
            owner: None,
            state: "pending",
            last_error: None,
            attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }
}

/// What the pods report for every relay they hold, plus declared relays no pod has taken yet.
async fn relays(State(api): State<Api>, _: Admin) -> ApiResult {
    let held = api.core.relay_statuses.list().await.map_err(unavailable)?;
    let declared = api.core.declared.list().await.map_err(unavailable)?;
    let pending: Vec<PendingRelay> = declared
        .iter()
        .filter_map(|(_, config)| RelaySpec::parse(0, config).ok())
        .filter(|spec| held.iter().all(|s| s.id != spec.id))
        .map(PendingRelay::new)
        .collect();
    let rows: Vec<RelayRow> = held
        .into_iter()
        .map(RelayRow::Held)
        .chain(pending.into_iter().map(RelayRow::Pending))
        .collect();
    Ok(Json(json!({ "relays": rows })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_relay_row_is_a_status_row_without_a_holder() {
        let config = serde_json::from_value(json!({
            "kind": "pull",
            "url": "rtmp://origin.example/live/cam",
            "stream": "live/cam",
            "mode": "on-demand",
        }))
        .unwrap();
        let spec = RelaySpec::parse(0, &config).unwrap();
        let id = spec.id.clone();
        assert_eq!(
            json!(RelayRow::Pending(PendingRelay::new(spec))),
            json!({
                "id": id,
                "kind": "pull",
                "url": "rtmp://origin.example:1935/live/cam",
                "stream": "live/cam",
                "mode": "on-demand",
                "owner": null,
                "state": "pending",
                "last_error": null,
                "attempts": 0,
                "bytes_in": 0,
                "bytes_out": 0,
            })
        );
    }
}

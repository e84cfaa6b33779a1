//! `GET /v1/relays`: every configured relay with its owner, state, last error, attempts and
//! bytes. In a cluster the holder's status comes from Redis (any pod answers for all).
//! Relay URLs and remote servers' errors are not for anyone on the network: the route needs
//! the admin token (`control.admin_token`, `--admin-token`), and without one configured on the
//! pod it answers nobody.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use liverelay_types::{TokenRejected, verify_bearer};

use crate::StaticRelays;
use crate::status::RelayStatus;

#[derive(Clone)]
struct Api {
    relays: StaticRelays,
    admin_token: Option<Arc<str>>,
}

pub fn router(relays: StaticRelays, admin_token: Option<&str>) -> Router {
    Router::new()
        .route("/v1/relays", get(list))
        .with_state(Api {
            relays,
            admin_token: admin_token.map(Into::into),
        })
}

/// `Authorization: Bearer <admin token>`, or why not.
fn admitted(headers: &HeaderMap, token: Option<&str>) -> Result<(), &'static str> {
    let Some(token) = token else {
        return Err("relay details need an admin token: set control.admin_token on this pod");
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    verify_bearer(given, token).map_err(|e| match e {
        TokenRejected::Missing => "admin token required (Authorization: Bearer ...)",
        TokenRejected::Wrong => "wrong admin token",
    })
}

async fn list(State(api): State<Api>, headers: HeaderMap) -> (StatusCode, Json<serde_json::Value>) {
    if let Err(why) = admitted(&headers, api.admin_token.as_deref()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": why })),
        );
    }
    let relays = api.relays;
    let mut rows = relays.local_statuses();
    if let Some(shared) = relays.shared_status() {
        match shared.list().await {
            Ok(held) => merge(&mut rows, held),
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({ "error": e.to_string() })),
                );
            }
        }
    }
    (StatusCode::OK, Json(serde_json::json!({ "relays": rows })))
}

/// A relay this pod holds is reported from here (freshest); the others as their holder last
/// stored them; relays only other pods know of (a different config) are listed too.
fn merge(rows: &mut Vec<RelayStatus>, held: Vec<RelayStatus>) {
    for status in held {
        match rows.iter_mut().find(|r| r.id == status.id) {
            Some(row) if row.owner.is_none() => *row = status,
            Some(_) => {}
            None => rows.push(status),
        }
    }
}

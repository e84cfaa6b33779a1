//! `GET /v1/relays`: every configured relay with its owner, state, last error, attempts and
//! bytes. In a cluster the holder's status comes from Redis (any pod answers for all).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::StaticRelays;
use crate::status::RelayStatus;

pub fn router(relays: StaticRelays) -> Router {
    Router::new()
        .route("/v1/relays", get(list))
        .with_state(relays)
}

async fn list(State(relays): State<StaticRelays>) -> (StatusCode, Json<serde_json::Value>) {
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

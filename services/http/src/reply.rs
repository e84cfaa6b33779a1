//! How the playback routes answer when they cannot play: a short text readable from another
//! origin (a player page shows why), and the status for each reason admission refuses.

use std::net::SocketAddr;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use liverelay_admission::{Reason, Refused};
use liverelay_hub::HubError;
use tracing::warn;

/// The status for a refused play: as the RTMP player is refused, in HTTP's words.
pub(crate) fn refuse(peer: SocketAddr, protocol: &str, refused: &Refused) -> Response {
    let status = match refused.reason() {
        Reason::NoPublishers(_) | Reason::NotConnected | Reason::Access(_) => StatusCode::FORBIDDEN,
        Reason::TooManyPlays(_) => StatusCode::TOO_MANY_REQUESTS,
        Reason::InvalidName(_) => StatusCode::BAD_REQUEST,
        // Stream limits, the registry, the edge's upstream limit: another node, or later.
        Reason::Hub(HubError::TooManyStreams(_) | HubError::TooManyWaiting(_))
        | Reason::Hub(HubError::AlreadyPublishing(_))
        | Reason::Policy(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let description = refused.status().description;
    let shown = refused.stream().map(ToString::to_string);
    warn!(
        %peer,
        stream = shown.as_deref().unwrap_or("-"),
        status = status.as_u16(),
        "{protocol} play refused: {description}"
    );
    answer(status, &description)
}

/// A short text answer, readable from another origin too (a player page shows why).
pub(crate) fn answer(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        format!("{text}\n"),
    )
        .into_response()
}

//! Fuzz target for the request bodies of control's HTTP API (`liverelay-control-api`): what
//! an admin client, or anyone holding a leaked admin token, sends to `POST /v1/keys`,
//! `/v1/play-tokens`, `/v1/keys/{id}/targets` and `/v1/streams/{app}/{stream}/drop`.
//!
//! Input: the first byte picks the route (mod 4), the rest is the body. Beyond "no panic", the
//! target checks that:
//! - a refusal's text is bounded ([`BodyError::MAX_LEN`]) whatever the body quotes;
//! - an accepted key or token request names a stream by the one name rule, a key's metadata is
//!   an object and its expiry (made Unix seconds) is after now;
//! - an accepted request written back as JSON is accepted again as the same request.

use liverelay_control_api::{BodyError, DropRequest, NewKey, NewPlayToken, NewTarget, valid_names};
use serde::Serialize;

/// The "now" key requests are checked against.
pub const NOW: u64 = 1_700_000_000;

/// The routes, by the input's first byte.
pub const ROUTES: [&str; 4] = ["keys", "play-tokens", "targets", "drop"];

pub fn fuzz(data: &[u8]) {
    run(data);
}

/// Runs the checks; whether the body was accepted.
pub fn run(data: &[u8]) -> bool {
    let Some((&route, body)) = data.split_first() else {
        return false;
    };
    match route % 4 {
        0 => check(body, |b| NewKey::parse(b, NOW), key_is_valid, key_fields),
        1 => check(
            body,
            NewPlayToken::parse,
            |t| assert!(valid_names(&t.app, &t.stream), "{t:?}"),
            Clone::clone,
        ),
        2 => check(body, NewTarget::parse, |_| {}, Clone::clone),
        _ => check(body, DropRequest::parse, |_| {}, Clone::clone),
    }
}

/// Parses `body`; checks a refusal's size, or an acceptance with `valid` and by its round trip
/// (compared through `same`, which keeps what must survive it).
fn check<T, S>(
    body: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    valid: impl Fn(&T),
    same: impl Fn(&T) -> S,
) -> bool
where
    T: Serialize + std::fmt::Debug,
    S: PartialEq + std::fmt::Debug,
{
    match parse(body) {
        Err(e) => {
            assert!(
                e.0.len() <= BodyError::MAX_LEN,
                "{} bytes of error text: {e}",
                e.0.len()
            );
            false
        }
        Ok(request) => {
            valid(&request);
            let again = serde_json::to_vec(&request).expect("a request serializes");
            match parse(&again) {
                Ok(reparsed) => assert_eq!(same(&reparsed), same(&request)),
                Err(e) => panic!("{request:?} written back is refused: {e}"),
            }
            true
        }
    }
}

fn key_is_valid(key: &NewKey) {
    assert!(valid_names(&key.app, &key.stream), "{key:?}");
    assert!(
        key.metadata.as_ref().is_none_or(|m| m.is_object()),
        "{key:?}"
    );
    if key.expires_at.is_some() {
        assert!(key.expires_at().is_some_and(|t| t > NOW), "{key:?}");
    }
}

/// A key request without its metadata's values: JSON numbers need not survive a round trip
/// bit for bit (serde_json parses floats fast, not exactly), the object's keys must.
fn key_fields(key: &NewKey) -> (String, String, Option<u64>, Option<Vec<String>>) {
    let metadata = key
        .metadata
        .as_ref()
        .and_then(|m| m.as_object())
        .map(|o| o.keys().cloned().collect());
    (
        key.app.clone(),
        key.stream.clone(),
        key.expires_at(),
        metadata,
    )
}

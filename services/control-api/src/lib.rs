//! What a client may send in the body of a control API request, and the checks that need no
//! state: JSON shape (unknown fields refused), names by the one name rule, times. Each
//! `parse` gives the request or a [`BodyError`], which control answers with 400. Control
//! applies what needs its state or settings (the key store, the token lifetime cap, a target
//! URL's relay spec) after this.
//!
//! Kept apart from control, whose dependencies (Kubernetes, gRPC, Redis) are too heavy for a
//! sanitizer build: `liverelay-fuzz` runs these parsers on arbitrary bytes.

#![forbid(unsafe_code)]

use liverelay_rtmp::name::{DEFAULT_MAX_NAME_LEN, check_name};
use liverelay_types::DropTarget;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a body was refused: the text of the 400 answer, at most [`BodyError::MAX_LEN`] bytes
/// whatever the body held (a parser's message may quote it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

impl BodyError {
    pub const MAX_LEN: usize = 256;

    fn new(mut text: String) -> Self {
        if text.len() > Self::MAX_LEN {
            let mut end = Self::MAX_LEN - '…'.len_utf8();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        Self(text)
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub const INVALID_NAMES: &str =
    "app and stream must be non-empty names without '/', '?', '&' or '#'";

/// Whether `app/stream` may be named by the API: the one name rule (`liverelay_rtmp::name`),
/// so no key or token is made for a name a client could never use.
pub fn valid_names(app: &str, stream: &str) -> bool {
    [app, stream]
        .iter()
        .all(|name| check_name(name, DEFAULT_MAX_NAME_LEN).is_ok())
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::new(format!("invalid request body: {e}")))
}

/// Unix seconds or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Time {
    Unix(u64),
    Text(String),
}

impl Time {
    pub fn unix(&self) -> Result<u64, BodyError> {
        match self {
            Self::Unix(t) => Ok(*t),
            Self::Text(s) => humantime::parse_rfc3339_weak(s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .ok_or_else(|| BodyError::new(format!("expires_at: not a time: {s}"))),
        }
    }
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub app: String,
    pub stream: String,
    /// Unix seconds once parsed (the body may give RFC 3339), after `now`.
    pub expires_at: Option<Time>,
    /// A JSON object, kept with the key.
    pub metadata: Option<serde_json::Value>,
}

impl NewKey {
    /// The body as a key request at `now` (Unix seconds): names valid, metadata an object,
    /// expiry (made [`Time::Unix`]) in the future.
    pub fn parse(body: &[u8], now: u64) -> Result<Self, BodyError> {
        let mut new: Self = parse_json(body)?;
        if !valid_names(&new.app, &new.stream) {
            return Err(BodyError(INVALID_NAMES.into()));
        }
        if new.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(BodyError("metadata must be a JSON object".into()));
        }
        if let Some(time) = &new.expires_at {
            let at = time.unix()?;
            if at <= now {
                return Err(BodyError("expires_at is in the past".into()));
            }
            new.expires_at = Some(Time::Unix(at));
        }
        Ok(new)
    }

    /// The expiry in Unix seconds (what [`parse`](Self::parse) left).
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at.as_ref().and_then(|t| t.unix().ok())
    }
}

/// `POST /v1/play-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlayToken {
    pub app: String,
    pub stream: String,
    /// Default one hour; control caps it at `auth.play_token_max_ttl_secs`.
    pub ttl_secs: Option<u64>,
}

impl NewPlayToken {
    pub const DEFAULT_TTL_SECS: u64 = 3600;

    /// The body as a token request; the names follow the name rule (a token for a name no
    /// player can use would be useless).
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let new: Self = parse_json(body)?;
        if !valid_names(&new.app, &new.stream) {
            return Err(BodyError(INVALID_NAMES.into()));
        }
        Ok(new)
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs.unwrap_or(Self::DEFAULT_TTL_SECS)
    }
}

/// `POST /v1/keys/{id}/targets`; control checks the URL as a push relay's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub url: String,
    /// `rtmps://` targets: PEM files on the ingests, as a relay's `tls_ca`, `tls_client_cert`
    /// and `tls_client_key` (the CA the target's certificate is checked against; a client
    /// certificate for a target that requires one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<String>,
}

impl NewTarget {
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        parse_json(body)
    }
}

/// `POST /v1/streams/{app}/{stream}/drop`; an empty body drops the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropRequest {
    pub target: Option<DropTarget>,
    pub pod: Option<String>,
    pub client_id: Option<u64>,
}

impl DropRequest {
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        if body.is_empty() {
            Ok(Self::default())
        } else {
            parse_json(body)
        }
    }

    pub fn target(&self) -> DropTarget {
        self.target.unwrap_or(DropTarget::Publisher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_requests_are_checked() {
        let now = 1_000;
        let ok = NewKey::parse(br#"{"app":"live","stream":"cam","expires_at":2000}"#, now).unwrap();
        assert_eq!(ok.expires_at(), Some(2000));
        let text = NewKey::parse(
            br#"{"app":"live","stream":"cam","expires_at":"2100-01-01T00:00:00Z"}"#,
            now,
        )
        .unwrap();
        assert_eq!(text.expires_at, Some(Time::Unix(4_102_444_800)));
        for (body, why) in [
            (&br#"{"app":"live","stream":"a/b"}"#[..], INVALID_NAMES),
            (
                br#"{"app":"live","stream":"cam","metadata":[1]}"#,
                "metadata must be a JSON object",
            ),
            (
                br#"{"app":"live","stream":"cam","expires_at":999}"#,
                "expires_at is in the past",
            ),
        ] {
            assert_eq!(NewKey::parse(body, now), Err(BodyError(why.into())));
        }
        assert!(NewKey::parse(br#"{"app":"live","stream":"cam","x":1}"#, now).is_err());
        let long = format!(
            r#"{{"app":"a","stream":"b","expires_at":"{}"}}"#,
            "z".repeat(5000)
        );
        let refused = NewKey::parse(long.as_bytes(), now).unwrap_err();
        assert!(refused.0.len() <= BodyError::MAX_LEN, "{refused}");
        assert!(
            refused.0.starts_with("expires_at: not a time: zzz"),
            "{refused}"
        );
        let unknown = format!(r#"{{"app":"a","stream":"b","{}":1}}"#, "é".repeat(5000));
        let refused = NewKey::parse(unknown.as_bytes(), now).unwrap_err();
        assert!(refused.0.len() <= BodyError::MAX_LEN, "{refused}");
    }

    #[test]
    fn token_requests_and_drops_are_checked() {
        assert_eq!(
            NewPlayToken::parse(br#"{"app":"live","stream":"cam"}"#).map(|t| t.ttl_secs()),
            Ok(3600)
        );
        assert!(NewPlayToken::parse(br#"{"app":"live","stream":"c\u0001"}"#).is_err());
        assert_eq!(
            DropRequest::parse(b"").map(|d| d.target()),
            Ok(DropTarget::Publisher)
        );
        assert_eq!(
            DropRequest::parse(br#"{"target":"all"}"#).map(|d| d.target()),
            Ok(DropTarget::All)
        );
        assert!(DropRequest::parse(br#"{"target":"everyone"}"#).is_err());
    }
}

//! Signed playback tokens: `token=<expires>.<signature>` in the play URL's query, where
//! `expires` is Unix seconds in decimal and the signature is the hex HMAC-SHA256 of
//! [`signed_message`]. An edge checks one with the shared secret alone, without a round trip;
//! control hands them out, for at most `auth.play_token_max_ttl_secs`, and a pod refuses one
//! that expires later than that from now (a token signed elsewhere with the secret, or by a
//! control with a larger cap, cannot be good for years).

use std::sync::Arc;

use futures::future::BoxFuture;
use liverelay_admission::{Access, Admission, StreamAttempt};
use liverelay_metrics::OutcomeLabel;
use liverelay_rtmp::command::code;
use liverelay_types::{Refusal, unix_secs};
use tracing::warn;

use crate::AuthMetrics;
use crate::signing::{sign_hex, verify_hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no playback token")]
    Missing,
    #[error("malformed playback token")]
    Malformed,
    #[error("playback token expired")]
    Expired,
    #[error("playback token signature does not match")]
    Forged,
    #[error("playback token lives longer than auth.play_token_max_ttl_secs")]
    TooLong,
}

/// How far a token's expiry may pass `now + max_ttl_secs`: control's clock may run ahead of
/// the checking pod's by this much without refusing the longest tokens it gives.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Names the encoding, so that a later one can never verify as this one.
const VERSION: &[u8] = b"liverelay-play-token-v2\n";

/// What a token signs: [`VERSION`], then the app and the stream name each preceded by its
/// length in bytes (8 bytes, big-endian), then the expiry as sent. Unlike `app/stream`, no
/// two different (app, stream, expiry) share it, whatever the names contain (`a/b` + `c` is
/// not `a` + `b/c`).
pub fn signed_message(app: &str, stream: &str, expires: &str) -> Vec<u8> {
    let mut message = VERSION.to_vec();
    for field in [app, stream] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message.extend_from_slice(expires.as_bytes());
    message
}

/// A token for `app/stream` valid until `expires_at` (Unix seconds).
pub fn sign(secret: &[u8], app: &str, stream: &str, expires_at: u64) -> String {
    let expires = expires_at.to_string();
    let signature = sign_hex(secret, &[&signed_message(app, stream, &expires)]);
    format!("{expires}.{signature}")
}

/// When a token asked for at `now` for `ttl_secs` expires; `None` beyond `max_ttl_secs` (or
/// past the end of time).
pub fn expiry(now: u64, ttl_secs: u64, max_ttl_secs: u64) -> Option<u64> {
    (ttl_secs <= max_ttl_secs)
        .then(|| now.checked_add(ttl_secs))
        .flatten()
}

/// Checks a token for `app/stream` at `now`; a valid signature is not enough if the expiry is
/// past `now + max_ttl_secs` (give or take [`CLOCK_SKEW_SECS`]).
pub fn verify(
    secret: &[u8],
    app: &str,
    stream: &str,
    token: &str,
    now: u64,
    max_ttl_secs: u64,
) -> Result<(), TokenError> {
    let (expires, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expires_at: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if !verify_hex(secret, &[&signed_message(app, stream, expires)], signature) {
        return Err(TokenError::Forged);
    }
    if expires_at <= now {
        return Err(TokenError::Expired);
    }
    let latest = now
        .saturating_add(max_ttl_secs)
        .saturating_add(CLOCK_SKEW_SECS);
    if expires_at > latest {
        return Err(TokenError::TooLong);
    }
    Ok(())
}

/// Requires a valid token on every play.
pub struct PlayTokens {
    secret: Arc<[u8]>,
    max_ttl_secs: u64,
    metrics: AuthMetrics,
}

impl PlayTokens {
    pub fn new(secret: &str, max_ttl_secs: u64, metrics: AuthMetrics) -> Self {
        Self {
            secret: secret.as_bytes().into(),
            max_ttl_secs,
            metrics,
        }
    }
}

impl Access for PlayTokens {
    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        let checked = if attempt.action.is_publish() {
            Ok(())
        } else {
            attempt
                .param("token")
                .ok_or(TokenError::Missing)
                .and_then(|t| {
                    let (app, name) = (&attempt.app, &attempt.name);
                    verify(&self.secret, app, name, &t, unix_secs(), self.max_ttl_secs)
                })
        };
        let result = match &checked {
            Ok(()) => "allow",
            Err(_) => "deny",
        };
        if !attempt.action.is_publish() {
            self.metrics
                .decisions
                .get_or_create(&OutcomeLabel {
                    action: "play_token",
                    result,
                })
                .inc();
        }
        Box::pin(async move {
            match checked {
                Ok(()) => Ok(Admission::unchanged(&attempt)),
                Err(e) => {
                    warn!(app = %attempt.app, stream = %attempt.name, client = attempt.client.id, "play refused: {e}");
                    Err(Refusal {
                        code: code::PLAY_FAILED,
                        description: format!("unauthorized: {e}"),
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn tokens_are_bound_to_stream_secret_and_time() {
        let t = sign(b"s3cret", "live", "cam", 1000);
        assert_eq!(verify(b"s3cret", "live", "cam", &t, 999, DAY), Ok(()));
        assert_eq!(
            verify(b"s3cret", "live", "cam", &t, 1000, DAY),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(b"other", "live", "cam", &t, 999, DAY),
            Err(TokenError::Forged)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam2", &t, 999, DAY),
            Err(TokenError::Forged)
        );
        let later = t.replacen("1000.", "9999.", 1);
        assert_eq!(
            verify(b"s3cret", "live", "cam", &later, 999, DAY),
            Err(TokenError::Forged)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam", "junk", 0, DAY),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam", "x.zz", 0, DAY),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn the_signed_names_cannot_be_regrouped() {
        // Under the old `app/stream` encoding these two signed the same bytes.
        let t = sign(b"s3cret", "a/b", "c", 1000);
        assert_eq!(verify(b"s3cret", "a/b", "c", &t, 0, DAY), Ok(()));
        assert_eq!(
            verify(b"s3cret", "a", "b/c", &t, 0, DAY),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn the_lifetime_is_capped_without_overflow() {
        assert_eq!(expiry(1000, 60, 86_400), Some(1060));
        assert_eq!(expiry(1000, 86_400, 86_400), Some(87_400));
        assert_eq!(expiry(1000, 86_401, 86_400), None);
        assert_eq!(expiry(1000, u64::MAX, 86_400), None);
        assert_eq!(expiry(u64::MAX, 1, u64::MAX), None);
    }

    #[test]
    fn a_token_outliving_the_cap_is_refused_whoever_signed_it() {
        let now = 1_000_000;
        let at_cap = sign(b"s3cret", "live", "cam", now + DAY + CLOCK_SKEW_SECS);
        assert_eq!(verify(b"s3cret", "live", "cam", &at_cap, now, DAY), Ok(()));
        let beyond = sign(b"s3cret", "live", "cam", now + DAY + CLOCK_SKEW_SECS + 1);
        assert_eq!(
            verify(b"s3cret", "live", "cam", &beyond, now, DAY),
            Err(TokenError::TooLong)
        );
        let forever = sign(b"s3cret", "live", "cam", u64::MAX);
        assert_eq!(
            verify(b"s3cret", "live", "cam", &forever, now, DAY),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam", &forever, now, u64::MAX),
            Ok(())
        );
    }
}

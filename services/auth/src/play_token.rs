//! Signed playback tokens: `token=<expires>.<signature>` in the play URL's query, where the
//! signature is HMAC-SHA256 over `app/stream` and the expiry (Unix seconds). An edge checks one
//! with the shared secret alone, without a round trip; control hands them out.

use std::sync::Arc;

use futures::future::BoxFuture;
use liverelay_metrics::{Metrics, OutcomeLabel};
use liverelay_rtmp::command::code;
use liverelay_rtmp_server::{Access, Admission, Refusal, StreamAttempt};
use tracing::warn;

use crate::signing::{sign_hex, verify_hex};
use crate::unix_now;

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
}

fn signed_parts<'a>(stream: &'a str, expires: &'a str) -> [&'a [u8]; 3] {
    [stream.as_bytes(), b"\n", expires.as_bytes()]
}

/// A token for `app/stream` valid until `expires_at` (Unix seconds).
pub fn sign(secret: &[u8], app: &str, stream: &str, expires_at: u64) -> String {
    let path = format!("{app}/{stream}");
    let expires = expires_at.to_string();
    format!(
        "{expires}.{}",
        sign_hex(secret, &signed_parts(&path, &expires))
    )
}

pub fn verify(
    secret: &[u8],
    app: &str,
    stream: &str,
    token: &str,
    now: u64,
) -> Result<(), TokenError> {
    let (expires, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expires_at: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let path = format!("{app}/{stream}");
    if !verify_hex(secret, &signed_parts(&path, expires), signature) {
        return Err(TokenError::Forged);
    }
    if expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Requires a valid token on every play.
pub struct PlayTokens {
    secret: Arc<[u8]>,
    metrics: Arc<Metrics>,
}

impl PlayTokens {
    pub fn new(secret: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            secret: secret.as_bytes().into(),
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
                .and_then(|t| verify(&self.secret, &attempt.app, &attempt.name, &t, unix_now()))
        };
        let result = match &checked {
            Ok(()) => "allow",
            Err(_) => "deny",
        };
        if !attempt.action.is_publish() {
            self.metrics
                .auth_decisions
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

    #[test]
    fn tokens_are_bound_to_stream_secret_and_time() {
        let t = sign(b"s3cret", "live", "cam", 1000);
        assert_eq!(verify(b"s3cret", "live", "cam", &t, 999), Ok(()));
        assert_eq!(
            verify(b"s3cret", "live", "cam", &t, 1000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(b"other", "live", "cam", &t, 999),
            Err(TokenError::Forged)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam2", &t, 999),
            Err(TokenError::Forged)
        );
        let later = t.replacen("1000.", "9999.", 1);
        assert_eq!(
            verify(b"s3cret", "live", "cam", &later, 999),
            Err(TokenError::Forged)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam", "junk", 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify(b"s3cret", "live", "cam", "x.zz", 0),
            Err(TokenError::Malformed)
        );
    }
}

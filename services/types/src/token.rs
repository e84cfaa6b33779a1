//! The shared cluster token: every pod-to-pod call (relay, control) carries it as
//! `authorization: Bearer <token>`. The transport crates attach and check the header; the
//! comparison lives here so every check is constant-time.

use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

/// Why a presented token was not accepted (the wording callers log and return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejected {
    Missing,
    Wrong,
}

impl fmt::Display for TokenRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing cluster token",
            Self::Wrong => "wrong cluster token",
        })
    }
}

impl std::error::Error for TokenRejected {}

impl ClusterToken {
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// The `authorization` header value that presents this token.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Checks an `authorization` header value, in constant time.
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<(), TokenRejected> {
        verify_bearer(header, &self.0)
    }
}

/// Checks an `authorization` header value against `Bearer <token>`, in constant time: the
/// cluster token's check, and the admin token's on the HTTP APIs.
pub fn verify_bearer(header: Option<&str>, token: &str) -> Result<(), TokenRejected> {
    let given = header
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(TokenRejected::Missing)?;
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(TokenRejected::Wrong)
    }
}

/// Never prints the secret.
impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(..)")
    }
}

/// Equal contents, compared in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_right_token() {
        let token = ClusterToken::new("s3cret");
        assert_eq!(token.verify_bearer(Some(&token.bearer())), Ok(()));
        let wrong = ClusterToken::new("s3creT").bearer();
        assert_eq!(token.verify_bearer(Some(&wrong)), Err(TokenRejected::Wrong));
        assert_eq!(
            token.verify_bearer(Some("s3cret")),
            Err(TokenRejected::Missing)
        );
        assert_eq!(token.verify_bearer(None), Err(TokenRejected::Missing));
    }

    #[test]
    fn compares_whole_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}

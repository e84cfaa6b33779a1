//! The shared cluster token, sent as `authorization: Bearer <token>` on every relay call.

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl ClusterToken {
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// Adds the token to an outgoing request.
    pub fn attach<T>(&self, request: &mut Request<T>) -> Result<(), Status> {
        let value = MetadataValue::try_from(format!("Bearer {}", self.0))
            .map_err(|_| Status::internal("cluster token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(())
    }

    /// Checks an incoming request's token, in constant time.
    pub fn verify<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing cluster token"))?;
        if constant_time_eq(given.as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong cluster token"))
        }
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
        let mut ok = Request::new(());
        token.attach(&mut ok).unwrap();
        assert!(token.verify(&ok).is_ok());
        let mut wrong = Request::new(());
        ClusterToken::new("s3creT").attach(&mut wrong).unwrap();
        assert_eq!(
            token.verify(&wrong).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            token.verify(&Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}

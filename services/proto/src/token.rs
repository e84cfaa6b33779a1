//! How a gRPC call between pods carries the cluster token: `authorization: Bearer <token>`.

use liverelay_types::ClusterToken;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Adds the token to an outgoing request.
pub fn attach<T>(token: &ClusterToken, request: &mut Request<T>) -> Result<(), Status> {
    let value = MetadataValue::try_from(token.bearer())
        .map_err(|_| Status::internal("cluster token is not a valid header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

/// Checks an incoming request's token (in constant time).
pub fn verify<T>(token: &ClusterToken, request: &Request<T>) -> Result<(), Status> {
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    token
        .verify_bearer(header)
        .map_err(|why| Status::unauthenticated(why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_right_token() {
        let token = ClusterToken::new("s3cret");
        let mut ok = Request::new(());
        attach(&token, &mut ok).unwrap();
        assert!(verify(&token, &ok).is_ok());
        let mut wrong = Request::new(());
        attach(&ClusterToken::new("s3creT"), &mut wrong).unwrap();
        let refused = verify(&token, &wrong).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert_eq!(refused.message(), "wrong cluster token");
        let missing = verify(&token, &Request::new(())).unwrap_err();
        assert_eq!(missing.message(), "missing cluster token");
    }
}

//! The gRPC API: publish authorization for ingests (cluster token) and the key operations of
//! the HTTP API (admin token).

use std::sync::Arc;

use liverelay_auth::AuthMetrics;
use liverelay_metrics::OutcomeLabel;
use liverelay_proto::control::v1::control_server::Control;
use liverelay_proto::control::v1::{
    AuthorizePublishRequest, AuthorizePublishResponse, CreateKeyRequest, CreatedKey, KeyRef,
    ListKeysRequest, ListKeysResponse, StreamKey,
};
use liverelay_types::ClusterToken;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span, warn};

use crate::core::{self, Core};
use crate::keys::{KeyError, KeyRecord, Verdict};

pub struct ControlService {
    core: Arc<Core>,
    cluster: ClusterToken,
    admin: ClusterToken,
    metrics: AuthMetrics,
}

impl ControlService {
    pub fn new(
        core: Arc<Core>,
        cluster: ClusterToken,
        admin: ClusterToken,
        metrics: AuthMetrics,
    ) -> Self {
        Self {
            core,
            cluster,
            admin,
            metrics,
        }
    }
}

fn status(e: KeyError) -> Status {
    match e {
        KeyError::NotFound => Status::not_found("no such key"),
        KeyError::Store(e) => Status::unavailable(e.to_string()),
    }
}

fn to_pb(r: &KeyRecord) -> StreamKey {
    StreamKey {
        id: r.id.clone(),
        app: r.app.clone(),
        stream: r.stream.clone(),
        created_at: r.created_at as i64,
        expires_at: r.expires_at.unwrap_or(0) as i64,
        rotated_at: r.rotated_at.unwrap_or(0) as i64,
        revoked: r.revoked,
        metadata_json: r
            .metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    }
}

fn created((record, secret): (KeyRecord, String)) -> Response<CreatedKey> {
    Response::new(CreatedKey {
        key: Some(to_pb(&record)),
        secret,
    })
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn authorize_publish(
        &self,
        request: Request<AuthorizePublishRequest>,
    ) -> Result<Response<AuthorizePublishResponse>, Status> {
        liverelay_proto::token::verify(&self.cluster, &request)?;
        let span = info_span!("authorize_publish", app = %request.get_ref().app, pod = %request.get_ref().pod);
        liverelay_telemetry::set_remote_parent(&span, request.metadata());
        let req = request.into_inner();
        let verdict = self
            .core
            .authorize(&req.app, &req.key)
            .instrument(span.clone())
            .await
            .map_err(status)?;
        let _enter = span.enter();
        let (result, response) = match verdict {
            Verdict::Allowed(r) => (
                "allow",
                AuthorizePublishResponse {
                    allowed: true,
                    app: r.app,
                    stream: r.stream,
                    key_id: r.id,
                    reason: String::new(),
                },
            ),
            Verdict::Refused(reason) => {
                warn!(app = %req.app, client = %req.client_addr, pod = %req.pod, reason, "publish key refused");
                (
                    "deny",
                    AuthorizePublishResponse {
                        reason: reason.into(),
                        ..Default::default()
                    },
                )
            }
        };
        self.metrics
            .decisions
            .get_or_create(&OutcomeLabel {
                action: "publish_key",
                result,
            })
            .inc();
        Ok(Response::new(response))
    }

    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreatedKey>, Status> {
        liverelay_proto::token::verify(&self.admin, &request)?;
        let req = request.into_inner();
        let metadata = match req.metadata_json.as_str() {
            "" => None,
            json => Some(
                serde_json::from_str::<serde_json::Value>(json)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| {
                        Status::invalid_argument("metadata_json must be a JSON object")
                    })?,
            ),
        };
        if !core::valid_names(&req.app, &req.stream) {
            return Err(Status::invalid_argument(core::INVALID_NAMES));
        }
        let expires_at = (req.expires_at > 0).then_some(req.expires_at as u64);
        self.core
            .create_key(&req.app, &req.stream, expires_at, metadata)
            .await
            .map(created)
            .map_err(status)
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        liverelay_proto::token::verify(&self.admin, &request)?;
        let keys = self.core.keys.list().await.map_err(status)?;
        Ok(Response::new(ListKeysResponse {
            keys: keys.iter().map(to_pb).collect(),
        }))
    }

    async fn get_key(&self, request: Request<KeyRef>) -> Result<Response<StreamKey>, Status> {
        liverelay_proto::token::verify(&self.admin, &request)?;
        let record = self
            .core
            .keys
            .get(&request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_pb(&record)))
    }

    async fn rotate_key(&self, request: Request<KeyRef>) -> Result<Response<CreatedKey>, Status> {
        liverelay_proto::token::verify(&self.admin, &request)?;
        self.core
            .rotate_key(&request.get_ref().id)
            .await
            .map(created)
            .map_err(status)
    }

    async fn revoke_key(&self, request: Request<KeyRef>) -> Result<Response<StreamKey>, Status> {
        liverelay_proto::token::verify(&self.admin, &request)?;
        let record = self
            .core
            .revoke_key(&request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_pb(&record)))
    }
}

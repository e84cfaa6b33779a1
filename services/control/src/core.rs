//! The operations behind both APIs (HTTP and gRPC), so they behave the same: a rotated or
//! revoked key's live publish is ended through the cluster command channel, and platforms hear
//! of it by webhook.

use liverelay_auth::unix_now;
use liverelay_registry::{ClusterCommand, CommandBus, NodeReports, StreamRegistry};
use std::sync::Arc;
use tracing::{info, warn};

use crate::keys::{KeyError, KeyRecord, KeyStore, Verdict, random_hex};
use crate::webhooks::{Event, Webhooks};

pub struct Core {
    pub keys: KeyStore,
    pub commands: CommandBus,
    pub registry: Arc<dyn StreamRegistry>,
    pub nodes: NodeReports,
    pub webhooks: Webhooks,
    /// HMAC key of playback tokens, when control hands them out.
    pub play_token_secret: Option<String>,
}

impl Core {
    pub async fn create_key(
        &self,
        app: &str,
        stream: &str,
        expires_at: Option<u64>,
        metadata: Option<serde_json::Value>,
    ) -> Result<(KeyRecord, String), KeyError> {
        let created = self
            .keys
            .create(app, stream, expires_at, metadata, unix_now())
            .await?;
        info!(key_id = %created.0.id, app, stream, "stream key created");
        Ok(created)
    }

    pub async fn rotate_key(&self, id: &str) -> Result<(KeyRecord, String), KeyError> {
        let rotated = self.keys.rotate(id, unix_now()).await?;
        info!(key_id = id, "stream key rotated");
        self.end_publishes(id).await;
        self.webhooks.emit(key_event("key.rotated", &rotated.0));
        Ok(rotated)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let record = self.keys.revoke(id).await?;
        info!(key_id = id, "stream key revoked");
        self.end_publishes(id).await;
        self.webhooks.emit(key_event("key.revoked", &record));
        Ok(record)
    }

    async fn end_publishes(&self, id: &str) {
        let command = ClusterCommand::KeyRevoked {
            key_id: id.to_string(),
        };
        match self.commands.send(&command).await {
            Ok(pods) => info!(
                key_id = id,
                pods, "asked the cluster to end the key's publishes"
            ),
            // The ingest re-checks nothing later: say loudly that a publish may go on.
            Err(e) => {
                warn!(key_id = id, error = %e, "could not tell the cluster to end the key's publishes")
            }
        }
    }

    pub async fn authorize(&self, app: &str, secret: &str) -> Result<Verdict, KeyError> {
        self.keys.authorize(app, secret, unix_now()).await
    }
}

fn key_event(kind: &'static str, record: &KeyRecord) -> Event {
    Event::new(
        kind,
        format!("{kind}:{}:{}", record.id, random_hex(8)),
        serde_json::json!({ "key_id": record.id, "app": record.app, "stream": record.stream }),
    )
}

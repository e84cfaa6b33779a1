//! The operations behind both APIs (HTTP and gRPC), so they behave the same: a rotated or
//! revoked key's live publish is ended through the cluster command channel, and platforms hear
//! of it by webhook.

use liverelay_control_api::NewTarget;
use liverelay_redis::{ClusterCommand, CommandBus, NodeReports};
use liverelay_registry::StreamRegistry;
use liverelay_types::unix_secs;
use std::sync::Arc;
use tracing::{info, warn};

use liverelay_static_relay::{DeclaredRelays, RedisRelayStatus, RelayConfig, RelaySpec};

use crate::keys::{KeyError, KeyRecord, KeyStore, Verdict, random_hex};
use crate::webhooks::{Event, Webhooks};

/// Why a key's names are refused, and the check, as both APIs say and apply them.
pub use liverelay_control_api::{INVALID_NAMES, valid_names};

pub struct Core {
    pub keys: KeyStore,
    pub commands: CommandBus,
    pub registry: Arc<dyn StreamRegistry>,
    pub nodes: NodeReports,
    pub webhooks: Webhooks,
    /// HMAC key of playback tokens, when control hands them out.
    pub play_token_secret: Option<String>,
    /// The longest `ttl_secs` a playback token is given for.
    pub play_token_max_ttl_secs: u64,
    /// Relays declared at run time (restream targets, `Relay` resources).
    pub declared: DeclaredRelays,
    pub relay_statuses: RedisRelayStatus,
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
            .create(app, stream, expires_at, metadata, unix_secs())
            .await?;
        info!(key_id = %created.0.id, app, stream, "stream key created");
        Ok(created)
    }

    pub async fn rotate_key(&self, id: &str) -> Result<(KeyRecord, String), KeyError> {
        let rotated = self.keys.rotate(id, unix_secs()).await?;
        info!(key_id = id, "stream key rotated");
        self.end_publishes(id).await;
        self.webhooks
            .emit(id, key_event("key.rotated", &rotated.0))
            .await;
        Ok(rotated)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let record = self.keys.revoke(id).await?;
        info!(key_id = id, "stream key revoked");
        for (source, _) in self.targets(id).await? {
            self.declared.remove(&source).await?;
        }
        self.end_publishes(id).await;
        self.webhooks
            .emit(id, key_event("key.revoked", &record))
            .await;
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

    /// Restream targets of a key: push relays of its stream, declared for the pods to run.
    pub async fn targets(&self, key_id: &str) -> Result<Vec<(String, RelayConfig)>, KeyError> {
        let prefix = target_source(key_id, "");
        let all = self.declared.list().await?;
        Ok(all
            .into_iter()
            .filter(|(s, _)| s.starts_with(&prefix))
            .collect())
    }

    /// Adds a restream target; returns its source name and parsed relay.
    pub async fn add_target(
        &self,
        key: &KeyRecord,
        target: &NewTarget,
    ) -> Result<Result<(String, RelaySpec), String>, KeyError> {
        // Through the config entry's own parser, so its defaults apply.
        let mut entry = serde_json::json!({
            "kind": "push",
            "url": target.url,
            "stream": format!("{}/{}", key.app, key.stream),
        });
        let tls = [
            ("tls_ca", &target.tls_ca),
            ("tls_client_cert", &target.tls_client_cert),
            ("tls_client_key", &target.tls_client_key),
        ];
        for (field, value) in tls {
            if let Some(path) = value {
                entry[field] = path.as_str().into();
            }
        }
        let config: RelayConfig = match serde_json::from_value(entry) {
            Ok(config) => config,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let spec = match RelaySpec::parse(0, &config) {
            Ok(spec) => spec,
            Err(e) => return Ok(Err(e.problem)),
        };
        let source = target_source(&key.id, &random_hex(6));
        self.declared.put(&source, &config).await?;
        info!(key_id = %key.id, relay = %spec.id, "restream target added");
        Ok(Ok((source, spec)))
    }

    pub async fn remove_target(&self, key_id: &str, target: &str) -> Result<bool, KeyError> {
        let source = target_source(key_id, target);
        let known = self
            .targets(key_id)
            .await?
            .iter()
            .any(|(s, _)| *s == source);
        if known {
            self.declared.remove(&source).await?;
        }
        Ok(known)
    }

    pub async fn authorize(&self, app: &str, secret: &str) -> Result<Verdict, KeyError> {
        self.keys.authorize(app, secret, unix_secs()).await
    }
}

fn key_event(kind: &'static str, record: &KeyRecord) -> Event {
    Event::new(
        kind,
        format!("{kind}:{}:{}", record.id, random_hex(8)),
        serde_json::json!({ "key_id": record.id, "app": record.app, "stream": record.stream }),
    )
}

/// Declared-relay source of a key's restream target.
fn target_source(key_id: &str, target: &str) -> String {
    format!("key/{key_id}/{target}")
}

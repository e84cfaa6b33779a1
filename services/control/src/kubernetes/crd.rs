//! The `Relay` custom resource: a static pull or push (as a `[[relays]]` entry) declared with
//! `kubectl apply`. The CRD YAML shipped in the chart is generated from this type
//! (`liverelay crd`) and a test keeps the two equal.

use kube::CustomResource;
use liverelay_static_relay::RelayConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "liverelay.io",
    version = "v1alpha1",
    kind = "Relay",
    namespaced,
    status = "RelayStatus",
    shortname = "rly",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Stream","type":"string","jsonPath":".spec.stream"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".status.owner"}"#,
    printcolumn = r#"{"name":"Attempts","type":"integer","jsonPath":".status.attempts"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RelaySpec {
    /// `pull` brings `url` in as `stream`; `push` sends `stream` out to `url`.
    pub kind: Kind,
    /// `rtmp://host[:port]/app/name`.
    pub url: String,
    /// `app/name` inside liverelay.
    pub stream: String,
    /// Pulls only: `static` (always on) or `on-demand` (while watched, plus the linger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<Reconnect>,
    /// On-demand pulls: how long to keep pulling after the last viewer left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_secs: Option<u64>,
    /// `rtmps://` URLs: the CA the peer's certificate is checked against and a client
    /// certificate to show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

/// Paths of PEM files on the pods that run relays (mounted there, e.g. from a Secret); read at
/// every connection attempt, so renewed files are used without touching the resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// CA bundle the peer's certificate must chain to; unset: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Certificate and key shown to a peer that requires one (mutual TLS); both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Pull,
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Static,
    OnDemand,
}

/// Retry policy after a failure (refused, reset, unpublished, stalled).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Reconnect {
    /// First delay; doubles per failure (jittered) up to `maxBackoffMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// No media (or no progress connecting) for this long counts as a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout_ms: Option<u64>,
    /// Failures in a row before giving up; unset: retry forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// What the pod running the relay reports, copied here by control.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    /// The relay's id inside liverelay (as in `GET /v1/relays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_id: Option<String>,
    /// `pending` (no pod runs it yet), `invalid` (see `lastError`), or the running pod's
    /// state: `connecting`, `live`, `backing_off`, `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub attempts: u64,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl RelaySpec {
    /// The `[[relays]]` entry this resource stands for; unset fields take the config file's
    /// defaults.
    pub fn to_config(&self) -> RelayConfig {
        let r = self.reconnect.clone().unwrap_or_default();
        let tls = self.tls.clone().unwrap_or_default();
        let mut entry = serde_json::json!({
            "kind": self.kind,
            "url": self.url,
            "stream": self.stream,
        });
        let optional = [
            ("mode", self.mode.map(|m| serde_json::json!(m))),
            ("linger_secs", self.linger_secs.map(Into::into)),
            ("initial_backoff_ms", r.initial_backoff_ms.map(Into::into)),
            ("max_backoff_ms", r.max_backoff_ms.map(Into::into)),
            ("stall_timeout_ms", r.stall_timeout_ms.map(Into::into)),
            ("max_attempts", r.max_attempts.map(Into::into)),
            ("tls_ca", tls.ca.map(Into::into)),
            ("tls_client_cert", tls.client_cert.map(Into::into)),
            ("tls_client_key", tls.client_key.map(Into::into)),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                entry[key] = value;
            }
        }
        serde_json::from_value(entry).expect("every field has the config entry's shape")
    }
}

/// The CRD as YAML, as shipped in the chart.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&Relay::crd()).expect("the CRD serializes");
    format!(
        "# Generated by `liverelay crd` from services/control/src/kubernetes/crd.rs; do not edit.\n{yaml}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart ships the CRD; regenerate it with `liverelay crd > charts/liverelay/crds/relay.yaml`.
    #[test]
    fn the_shipped_crd_is_the_generated_one() {
        let shipped = include_str!("../../../../charts/liverelay/crds/relay.yaml");
        assert_eq!(
            shipped,
            crd_yaml(),
            "charts/liverelay/crds/relay.yaml is stale"
        );
    }

    #[test]
    fn a_resource_becomes_the_config_entry_with_its_defaults() {
        let spec: RelaySpec = serde_json::from_value(serde_json::json!({
            "kind": "pull",
            "url": "rtmp://up/app/name",
            "stream": "live/foo",
            "mode": "on-demand",
            "reconnect": {"maxAttempts": 3},
        }))
        .unwrap();
        let config = spec.to_config();
        assert_eq!(config.tls_ca, None);
        let defaults: RelayConfig = serde_json::from_value(serde_json::json!({
            "kind": "pull", "url": "rtmp://up/app/name", "stream": "live/foo", "mode": "on-demand",
        }))
        .unwrap();
        assert_eq!(config.max_attempts, Some(3));
        assert_eq!(
            RelayConfig {
                max_attempts: None,
                ..config
            },
            defaults
        );
    }

    #[test]
    fn a_resources_tls_files_reach_the_config_entry() {
        let spec: RelaySpec = serde_json::from_value(serde_json::json!({
            "kind": "push",
            "url": "rtmps://up/app/name",
            "stream": "live/foo",
            "tls": {
                "ca": "/tls/ca.crt",
                "clientCert": "/tls/tls.crt",
                "clientKey": "/tls/tls.key",
            },
        }))
        .unwrap();
        let config = spec.to_config();
        assert_eq!(config.tls_ca.as_deref(), Some("/tls/ca.crt"));
        assert_eq!(config.tls_client_cert.as_deref(), Some("/tls/tls.crt"));
        assert_eq!(config.tls_client_key.as_deref(), Some("/tls/tls.key"));
    }
}

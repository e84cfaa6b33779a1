//! Settings of who may publish and play (`[auth]`), the nginx-rtmp style HTTP callbacks
//! (`[[notify]]`), and the control service (`[control]`).

use serde::{Deserialize, Serialize};

/// How publishes are authorized.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PublishAuth {
    /// Anyone may publish any name (the hub's one-publisher-per-name rule still holds).
    Open,
    /// The publisher gives a stream key that control maps to the public stream name.
    Key,
}

/// How plays are authorized (beyond an `on_play` callback, which applies either way).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PlayAuth {
    #[default]
    Open,
    /// A signed playback token (`?token=`) is required, checked locally.
    Token,
}

/// What a publish gets while control cannot be asked.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ControlUnavailable {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Control's gRPC endpoint, `http://HOST:PORT` (`--control-url`).
    pub control_url: Option<String>,
    /// Unset: `key` when `control_url` is set, else `open`.
    pub publish: Option<PublishAuth>,
    pub on_control_unavailable: ControlUnavailable,
    /// How long control's answer about a key is reused (0: ask every time).
    pub cache_secs: u64,
    pub control_timeout_ms: u64,
    pub play: PlayAuth,
    /// HMAC key of playback tokens (edges and control share it).
    #[serde(serialize_with = "crate::redact::secret")]
    pub play_token_secret: Option<String>,
    /// The longest lifetime control gives a playback token (`ttl_secs` beyond it: 400), and
    /// the longest a pod accepts (a token expiring later than this from now is refused).
    pub play_token_max_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            control_url: None,
            publish: None,
            on_control_unavailable: ControlUnavailable::Deny,
            cache_secs: 5,
            control_timeout_ms: 2000,
            play: PlayAuth::Open,
            play_token_secret: None,
            play_token_max_ttl_secs: 86_400,
        }
    }
}

impl AuthSettings {
    pub fn publish(&self) -> PublishAuth {
        self.publish.unwrap_or(if self.control_url.is_some() {
            PublishAuth::Key
        } else {
            PublishAuth::Open
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NotifyMethod {
    #[default]
    Post,
    Get,
}

/// nginx-rtmp's notify directives for one application (`app` unset or `*`: every app). Names
/// are nginx-rtmp's, so an existing configuration carries over line by line.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    pub app: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_connect: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_publish: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_play: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_publish_done: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_play_done: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_done: Option<String>,
    #[serde(serialize_with = "crate::redact::optional_url")]
    pub on_update: Option<String>,
    pub notify_method: NotifyMethod,
    /// Interval of `on_update` calls.
    pub notify_update_timeout_secs: u64,
    /// `on_update`: a failed call (no answer, timeout) ends the session too, not only a non-2xx.
    pub notify_update_strict: bool,
    /// A callback that has not answered within this long denies.
    pub timeout_ms: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            app: None,
            on_connect: None,
            on_publish: None,
            on_play: None,
            on_publish_done: None,
            on_play_done: None,
            on_done: None,
            on_update: None,
            notify_method: NotifyMethod::Post,
            notify_update_timeout_secs: 30,
            notify_update_strict: false,
            timeout_ms: 10_000,
        }
    }
}

impl NotifySettings {
    pub fn applies_to(&self, app: &str) -> bool {
        self.app.as_deref().is_none_or(|a| a == "*" || a == app)
    }
}

/// A platform's JSON event endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde(serialize_with = "crate::redact::url")]
    pub url: String,
    /// HMAC-SHA256 key of the `X-Liverelay-Signature` header.
    #[serde(serialize_with = "crate::redact::secret")]
    pub secret: Option<String>,
    /// Event types sent (empty: all).
    pub events: Vec<String>,
    /// Deliveries tried before an event is given up (logged and counted).
    pub max_attempts: u32,
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: None,
            events: Vec::new(),
            max_attempts: 6,
            timeout_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Bearer token of the admin API (`--admin-token`, `LIVERELAY_ADMIN_TOKEN`).
    #[serde(serialize_with = "crate::redact::secret")]
    pub admin_token: Option<String>,
    pub webhooks: Vec<WebhookSettings>,
    /// A queued webhook event a control replica has held this long without delivering it
    /// (the replica died) is taken over by another.
    pub webhook_takeover_secs: u64,
    /// Reconcile `Relay` custom resources in the pod's namespace (needs the chart's RBAC).
    pub relay_resources: bool,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            admin_token: None,
            webhooks: Vec::new(),
            webhook_takeover_secs: 30,
            relay_resources: false,
        }
    }
}

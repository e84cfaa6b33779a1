//! Who may connect, publish and play, as [`Access`] checks the admission gate asks before the hub:
//! stream keys checked with the control service ([`PublishKeys`]), nginx-rtmp style HTTP
//! callbacks ([`Notify`]), and signed playback tokens ([`play_token`]). [`build`] chains what
//! the settings turn on; with nothing configured everyone may do everything.

mod metrics;
mod notify;
pub mod play_token;
mod publish_keys;
mod signing;

use std::sync::Arc;
use std::time::Duration;

use liverelay_admission::{Access, Chain, OpenAccess, Sessions};
use liverelay_config::{PlayAuth, PublishAuth, Settings};
use liverelay_types::{ClusterToken, Role};

pub use metrics::AuthMetrics;
pub use notify::Notify;
pub use publish_keys::{PublishKeys, PublishKeysConfig, control_tls};
pub use signing::{sha256_hex, sign_hex, verify_hex};

/// The access checks a node runs, and the stream-key check (to forget revoked keys) if on.
pub struct Built {
    pub access: Arc<dyn Access>,
    pub stream_keys: Option<PublishKeys>,
}

/// Chains the checks `settings` turn on for `role`: stream keys (publishing roles), playback
/// tokens, then callbacks (which so see the public name, never a stream key).
pub fn build(
    settings: &Settings,
    role: Role,
    metrics: AuthMetrics,
    sessions: Sessions,
) -> anyhow::Result<Built> {
    let auth = &settings.auth;
    let mut stages: Vec<Arc<dyn Access>> = Vec::new();
    let mut stream_keys = None;
    if auth.publish() == PublishAuth::Key && role != Role::Edge {
        let control_url = auth.control_url.clone().ok_or_else(|| {
            anyhow::anyhow!("auth.publish = \"key\" needs auth.control_url (--control-url)")
        })?;
        let token = settings.cluster.token.clone().unwrap_or_default();
        let keys = PublishKeys::new(
            PublishKeysConfig {
                tls: control_tls(&settings.cluster, &control_url),
                control_url,
                token: ClusterToken::new(&token),
                pod: settings.cluster.pod_id(),
                timeout: Duration::from_millis(auth.control_timeout_ms),
                cache_for: Duration::from_secs(auth.cache_secs),
                on_unavailable: auth.on_control_unavailable,
            },
            metrics.clone(),
        )?;
        stages.push(Arc::new(keys.clone()));
        stream_keys = Some(keys);
    }
    if auth.play == PlayAuth::Token {
        let secret = auth
            .play_token_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow::anyhow!("auth.play = \"token\" needs auth.play_token_secret"))?;
        stages.push(Arc::new(play_token::PlayTokens::new(
            secret,
            auth.play_token_max_ttl_secs,
            metrics.clone(),
        )));
    }
    if !settings.notify.is_empty() {
        stages.push(Arc::new(Notify::new(
            settings.notify.clone(),
            metrics,
            sessions,
        )?));
    }
    let access: Arc<dyn Access> = match stages.len() {
        0 => Arc::new(OpenAccess),
        1 => stages.pop().expect("one stage"),
        _ => Arc::new(Chain(stages)),
    };
    Ok(Built {
        access,
        stream_keys,
    })
}

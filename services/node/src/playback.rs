//! The HTTP playback routes a viewer-serving role adds: HLS, with what it needs from the rest
//! of the node (the per-request play-token check, and where to ask whether a stream is live).

use std::sync::Arc;
use std::time::Duration;

use liverelay_admission::Gate;
use liverelay_config::{PlayAuth, Settings};
use liverelay_hls::PackagerConfig;
use liverelay_http::{HlsService, HlsViewers, HttpMetrics, LiveCheck, TokenCheck, hls_router};
use liverelay_hub::Hub;
use liverelay_registry::{RedisRegistry, StreamRegistry};
use liverelay_types::{StreamPolicy, unix_secs};

/// HLS sessions counted at most: past it the least recently seen go (a flood of made-up
/// clients costs a bounded table, some 100 bytes a session).
const MAX_HLS_SESSIONS: usize = 100_000;

/// An HLS session lasts this long after its last request, at least: three target durations
/// (a player that only reloads the playlist asks at least once per target duration).
const MIN_HLS_SESSION_WINDOW: Duration = Duration::from_secs(10);

/// The HLS viewers' sessions, when `hls.enabled`.
pub(crate) fn hls_viewers(settings: &Settings, metrics: &HttpMetrics) -> Option<HlsViewers> {
    let h = &settings.hls;
    let window = (Duration::from_millis(h.segment_duration_ms) * 3).max(MIN_HLS_SESSION_WINDOW);
    h.enabled
        .then(|| HlsViewers::new(window, MAX_HLS_SESSIONS, &metrics.viewers))
}

/// `GET /hls/...`, when `hls.enabled` (`viewers` then is there).
pub(crate) fn hls(
    settings: &Settings,
    hub: &Hub,
    policy: Arc<dyn StreamPolicy>,
    redis: Option<Arc<RedisRegistry>>,
    metrics: HttpMetrics,
    viewers: Option<HlsViewers>,
) -> Option<axum::Router> {
    let h = &settings.hls;
    let viewers = viewers.filter(|_| h.enabled)?;
    Some(hls_router(HlsService {
        gate: Arc::new(Gate::new(hub.clone(), policy)),
        max_name_len: settings.rtmp.max_name_len,
        packaging: PackagerConfig {
            segment_ms: h.segment_duration_ms,
            part_ms: h.part_duration_ms,
            window_segments: h.window_segments,
        },
        wait: Duration::from_secs(h.wait_secs),
        idle: Duration::from_secs(h.idle_secs),
        max_held_per_client: h.max_held_per_client,
        tokens: token_check(settings),
        live: live_check(hub.clone(), redis),
        metrics,
        viewers,
    }))
}

/// Play tokens, checked on every HLS request on their own: no callbacks, no session, so that
/// a CDN may send a viewer's requests to any edge.
fn token_check(settings: &Settings) -> Option<TokenCheck> {
    let auth = &settings.auth;
    if auth.play != PlayAuth::Token {
        return None;
    }
    let secret: Arc<[u8]> = auth.play_token_secret.as_deref()?.as_bytes().into();
    let max_ttl = auth.play_token_max_ttl_secs;
    Some(Arc::new(move |key, token| {
        let token = token.ok_or("no playback token")?;
        liverelay_auth::play_token::verify(
            &secret,
            &key.app,
            &key.name,
            token,
            unix_secs(),
            max_ttl,
        )
        .map_err(|e| e.to_string())
    }))
}

/// Live in this hub, or (in a cluster) owned by an ingest.
fn live_check(hub: Hub, redis: Option<Arc<RedisRegistry>>) -> LiveCheck {
    Arc::new(move |key| {
        let (hub, redis) = (hub.clone(), redis.clone());
        Box::pin(async move {
            if hub.is_live(&key) {
                return true;
            }
            match redis {
                Some(registry) => matches!(registry.lookup(&key).await, Ok(Some(_))),
                None => false,
            }
        })
    })
}

//! Access metrics: decisions of the checks (stream keys, playback tokens, and control's answers
//! to stream-key checks) and nginx-rtmp style callbacks.

use liverelay_metrics::{OutcomeLabel, Registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    /// Access decisions by action (connect, publish, play, ...) and result (allow, deny, error).
    pub decisions: Family<OutcomeLabel, Counter>,
    /// nginx-rtmp style callbacks by call and result (allow, redirect, deny, error).
    pub notify_calls: Family<OutcomeLabel, Counter>,
}

impl AuthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_auth_decisions",
            "Connect, publish and play decisions by result (allow, deny, error)",
            m.decisions.clone(),
        );
        registry.register(
            "liverelay_notify_calls",
            "nginx-rtmp style HTTP callbacks by call and result",
            m.notify_calls.clone(),
        );
        m
    }
}

//! The reconnect loop shared by pulls and pushes: run an attempt, and when it fails, count and
//! log why, back off (exponential, jittered, capped) and try again, forever unless the relay
//! has `max_attempts`. An attempt that got media flowing resets the backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use liverelay_backoff::Backoff;
use liverelay_rtmp_client::{ClientOptions, Error as ClientError, RtmpClient};
use liverelay_tls::TlsError;
use liverelay_tls::rustls::ClientConfig;
use tracing::{info, warn};

use crate::metrics::{RelayReasonLabel, StaticRelayMetrics};
use crate::spec::RelaySpec;
use crate::status::{RelayState, StatusCell};

/// Why an attempt ended badly; `reason` is the metric label.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let reason = match &e {
            ClientError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
            ClientError::Io(_) => "io",
            ClientError::Protocol(_) | ClientError::BadUrl(_) => "protocol",
            ClientError::Closed => "closed",
            ClientError::Timeout(_) => "timeout",
            ClientError::Tls(_) => "tls",
            ClientError::ConnectRefused(_) | ClientError::Refused { .. } => "rejected",
        };
        Self::new(reason, e.to_string())
    }
}

/// One connection to the peer.
pub(crate) trait Attempt {
    /// Runs until the connection fails, or ends cleanly (`Ok`: a push's stream ended).
    async fn run(&mut self, progress: &Progress) -> Result<(), Failure>;
}

/// What an attempt reports while it runs.
pub(crate) struct Progress {
    status: StatusCell,
    live: AtomicBool,
    /// Client byte totals already added to the status.
    seen_in: AtomicU64,
    seen_out: AtomicU64,
    reported: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(status: StatusCell) -> Self {
        Self {
            status,
            live: AtomicBool::new(false),
            seen_in: AtomicU64::new(0),
            seen_out: AtomicU64::new(0),
            reported: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Media flows: the relay is live and the next failure starts backing off from the start.
    pub fn went_live(&self) {
        if !self.live.swap(true, Ordering::Relaxed) {
            self.status.set_state(RelayState::Live);
        }
    }

    /// Adds the client's traffic to the status, at most once a second unless `now`.
    pub fn report(&self, client: &RtmpClient, now: bool) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if !now && reported.elapsed() < Duration::from_secs(1) {
            return;
        }
        *reported = Instant::now();
        let bytes_in = client.bytes_received();
        let bytes_out = client.bytes_sent();
        let new_in = bytes_in - self.seen_in.swap(bytes_in, Ordering::Relaxed);
        let new_out = bytes_out - self.seen_out.swap(bytes_out, Ordering::Relaxed);
        self.status.add_bytes(new_in, new_out);
    }
}

/// Connects to the relay's URL, each step limited by the stall timeout.
pub(crate) async fn connect(spec: &RelaySpec) -> Result<RtmpClient, Failure> {
    let options = ClientOptions {
        timeout: spec.reconnect.stall_timeout,
        tls: tls_config(spec).map_err(|e| Failure::new("tls", e.to_string()))?,
        ..ClientOptions::default()
    };
    Ok(RtmpClient::connect(&spec.url, options).await?)
}

/// The TLS settings of an `rtmps://` attempt with a CA or a client certificate configured; the
/// files are read at every attempt, so rotated ones are picked up. `None`: the client's
/// default (the system's roots, no client certificate).
fn tls_config(spec: &RelaySpec) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    if !spec.url.tls || (spec.tls_ca.is_none() && spec.tls_client.is_none()) {
        return Ok(None);
    }
    let config =
        liverelay_tls::client_config_now(spec.tls_ca.as_deref(), spec.tls_client.as_ref())?;
    Ok(Some(Arc::new(config)))
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The attempt ended cleanly.
    Clean,
    /// `max_attempts` failures in a row.
    GaveUp,
}

pub(crate) async fn supervise(
    spec: &RelaySpec,
    status: &StatusCell,
    metrics: &StaticRelayMetrics,
    attempt: &mut impl Attempt,
) -> Ended {
    let r = &spec.reconnect;
    let mut backoff = Backoff::new(r.initial_backoff, r.max_backoff);
    let mut failures = 0u32;
    loop {
        status.attempt_started();
        let number = status.get().attempts;
        info!(relay = %spec.id, url = %spec.display_url(), attempt = number, "relay connecting");
        let progress = Progress::new(status.clone());
        let result = attempt.run(&progress).await;
        if progress.live.load(Ordering::Relaxed) {
            backoff.reset();
            failures = 0;
        }
        let reason = result.as_ref().err().map_or("ended", |f| f.reason);
        metrics
            .attempts
            .get_or_create(&RelayReasonLabel {
                relay: spec.id.clone(),
                reason,
            })
            .inc();
        let failure = match result {
            Ok(()) => {
                info!(relay = %spec.id, attempt = number, "relay ended");
                return Ended::Clean;
            }
            Err(f) => f,
        };
        failures += 1;
        status.set_error(failure.to_string());
        if r.max_attempts.is_some_and(|max| failures >= max) {
            warn!(relay = %spec.id, reason, error = %failure.detail, failures, "relay gave up after max_attempts");
            status.set_state(RelayState::Stopped);
            return Ended::GaveUp;
        }
        let delay = backoff.next_delay();
        warn!(
            relay = %spec.id,
            reason,
            error = %failure.detail,
            attempt = number,
            retry_in_ms = delay.as_millis() as u64,
            "relay attempt failed"
        );
        status.set_state(RelayState::BackingOff);
        tokio::time::sleep(delay).await;
    }
}

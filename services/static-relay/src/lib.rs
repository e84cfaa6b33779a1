//! Static relays: pulls that bring an external RTMP stream in as a liverelay stream, and pushes
//! that forward a liverelay stream to an external server (nginx-rtmp's `pull`/`push`, SRS's
//! forward), declared as `[[relays]]` in the config.
//!
//! Every pod sees the same list; each relay runs on the one pod holding its lease
//! ([`ownership`]), reconnecting with backoff ([`supervisor`]). A pull runs anywhere (static) or
//! while wanted (on-demand, [`demand`]); a push runs on the pod where its stream is live. What
//! each relay does is listed by `GET /v1/relays` ([`api`], [`status`]).

mod api;
mod declared;
mod demand;
mod lease_store;
mod metrics;
mod ownership;
mod pull;
mod push;
mod spec;
pub mod status;
mod supervisor;

use std::sync::Arc;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use liverelay_admission::Gate;
use liverelay_hub::Hub;
use liverelay_registry::StreamRegistry;
use liverelay_types::{AbortOnDrop, StreamId, StreamPolicy};
use tokio::sync::broadcast;

pub use api::router;
pub use declared::DeclaredRelays;
pub use lease_store::{LeaseStore, MemoryLeases, RedisLeases};
pub use metrics::{RelayDirectionLabel, RelayReasonLabel, RelayStateLabel, StaticRelayMetrics};
pub use spec::{RelayConfig, RelayKind, RelayMode, RelaySpec, SpecError};
pub use status::{RedisRelayStatus, RelayState, RelayStatus};

use crate::demand::{AnnouncingPolicy, Demand};
use crate::ownership::Ownership;
use crate::pull::Pull;
use crate::push::Push;
use crate::status::StatusCell;
use crate::supervisor::{Ended, supervise};

/// What the relays of one pod run with.
pub struct RelayContext {
    pub hub: Hub,
    /// Registers a pulled stream as a publish would be (in a cluster: the registry claim).
    pub policy: Arc<dyn StreamPolicy>,
    pub leases: Arc<dyn LeaseStore>,
    /// Where statuses are shared between pods (cluster only).
    pub shared_status: Option<RedisRelayStatus>,
    /// Announces streams edges want (cluster only), for on-demand pulls.
    pub registry: Option<Arc<dyn StreamRegistry>>,
    pub metrics: StaticRelayMetrics,
    pub pod_id: String,
    /// Relays declared at run time (cluster only), run beside the config file's.
    pub declared: Option<DeclaredRelays>,
}

/// The relays of one pod: the config file's, plus (in a cluster) the declared ones, which
/// come and go at run time.
#[derive(Clone)]
pub struct StaticRelays {
    configured: Arc<Vec<RelaySpec>>,
    running: Arc<Mutex<BTreeMap<String, Running>>>,
    context: Arc<RelayContext>,
    /// Where pulls are admitted as the process's own publishers.
    gate: Arc<Gate>,
    /// Plays admitted by [`players_policy`](Self::players_policy), for on-demand pulls.
    plays: broadcast::Sender<StreamId>,
}

struct Running {
    cell: StatusCell,
    /// The relay's task, stopped when the entry leaves the table.
    _task: AbortOnDrop,
}

/// How often declared relays are re-read even without a change announcement (one may be
/// missed while Redis is away).
const REREAD: Duration = Duration::from_secs(5);

impl StaticRelays {
    pub fn new(specs: Vec<RelaySpec>, context: RelayContext) -> Self {
        let gate = Gate::new(context.hub.clone(), context.policy.clone());
        Self {
            configured: Arc::new(specs),
            running: Arc::default(),
            context: Arc::new(context),
            gate: Arc::new(gate),
            plays: AnnouncingPolicy::channel(),
        }
    }

    /// The policy the pod's players must be admitted by (the context's, which it asks): it
    /// tells the on-demand pulls of each play, so even a player gone again at once starts one.
    pub fn players_policy(&self) -> Arc<dyn StreamPolicy> {
        Arc::new(AnnouncingPolicy {
            inner: self.context.policy.clone(),
            plays: self.plays.clone(),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This pod's view of every relay it knows.
    pub(crate) fn local_statuses(&self) -> Vec<RelayStatus> {
        self.running().values().map(|r| r.cell.get()).collect()
    }

    pub(crate) fn shared_status(&self) -> Option<&RedisRelayStatus> {
        self.context.shared_status.as_ref()
    }

    /// Runs every relay (as a role task: it never ends).
    pub fn run(&self) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone();
        Box::pin(async move {
            let _abort = AbortRunning(this.running.clone());
            let Some(declared) = this.context.declared.clone() else {
                this.converge(this.configured.to_vec());
                return std::future::pending().await;
            };
            let (mut changes, follower) = declared.changes();
            let _follower = AbortOnDrop::new(&follower);
            loop {
                match declared.list().await {
                    Ok(entries) => {
                        let mut wanted = this.configured.to_vec();
                        wanted.extend(entries.iter().filter_map(|(source, config)| {
                            RelaySpec::parse(0, config)
                                .inspect_err(|e| {
                                    tracing::warn!(source, "declared relay ignored: {}", e.problem)
                                })
                                .ok()
                        }));
                        this.converge(wanted);
                    }
                    // Keep running what runs; the next read may work.
                    Err(e) => tracing::warn!(error = %e, "cannot read declared relays"),
                }
                let _ = tokio::time::timeout(REREAD, changes.recv()).await;
            }
        })
    }

    /// Starts the relays in `wanted` that do not run yet and stops the ones no longer wanted.
    fn converge(&self, wanted: Vec<RelaySpec>) {
        let mut running = self.running();
        let ids: std::collections::HashSet<&str> = wanted.iter().map(|s| s.id.as_str()).collect();
        running.retain(|id, r| {
            let keep = ids.contains(id.as_str());
            if !keep {
                tracing::info!(relay = %id, "relay no longer declared; stopping it");
                r.cell.set_state(RelayState::Stopped);
            }
            keep
        });
        for spec in wanted {
            if running.contains_key(&spec.id) {
                continue;
            }
            let cell = StatusCell::new(&spec, self.context.metrics.clone());
            let this = self.clone();
            let (s, c) = (spec.clone(), cell.clone());
            let task = tokio::spawn(restart_on_panic(
                spec.clone(),
                cell.clone(),
                self.context.metrics.clone(),
                move || this.clone().run_one(s.clone(), c.clone()),
            ));
            running.insert(
                spec.id.clone(),
                Running {
                    cell,
                    _task: AbortOnDrop::new(&task),
                },
            );
        }
    }

    async fn run_one(self, spec: RelaySpec, status: StatusCell) {
        let (spec, status) = (&spec, &status);
        let ctx = &self.context;
        let ownership = Ownership {
            leases: ctx.leases.clone(),
            pod_id: ctx.pod_id.clone(),
            status: status.clone(),
            shared_status: ctx.shared_status.clone(),
        };
        match (spec.kind, spec.mode) {
            (RelayKind::Pull, RelayMode::Static) => {
                ownership
                    .run(
                        &spec.id,
                        || true,
                        || async {
                            let mut pull = Pull::new(spec.clone(), self.gate.clone());
                            if supervise(spec, status, &ctx.metrics, &mut pull).await
                                == Ended::GaveUp
                            {
                                // Hold the lease so no other pod starts it again.
                                std::future::pending::<()>().await;
                            }
                        },
                    )
                    .await
            }
            (RelayKind::Pull, RelayMode::OnDemand) => ownership
                .run(
                    &spec.id,
                    || true,
                    || async {
                        let events = ctx.registry.as_ref().map(|r| r.wants());
                        let plays = self.plays.subscribe();
                        let mut demand =
                            Demand::new(ctx.hub.clone(), spec.stream.clone(), events, plays);
                        loop {
                            demand.wanted().await;
                            let mut pull = Pull::new(spec.clone(), self.gate.clone());
                            tokio::select! {
                                _ = supervise(spec, status, &ctx.metrics, &mut pull) => {}
                                () = demand.idle(spec.linger) => {}
                            }
                            status.set_state(RelayState::Stopped);
                            tracing::info!(relay = %spec.id, "on-demand pull stopped: no viewers");
                        }
                    },
                )
                .await,
            (RelayKind::Push, _) => {
                let live = || ctx.hub.is_live(&spec.stream);
                ownership
                    .run(&spec.id, live, || async {
                        let mut push = Push::new(spec.clone(), ctx.hub.clone());
                        if supervise(spec, status, &ctx.metrics, &mut push).await == Ended::GaveUp {
                            while live() {
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            }
                        }
                    })
                    .await
            }
        }
    }
}

/// Runs a relay's task again (after its backoff) whenever it panicked, so that one bug costs
/// one relay a restart, not the relay for the pod's life; each panic is logged, counted
/// (`static_relay_attempts_total{reason="panicked"}`) and kept as the relay's last error.
async fn restart_on_panic<F, Fut>(
    spec: RelaySpec,
    status: StatusCell,
    metrics: StaticRelayMetrics,
    task: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff =
        liverelay_backoff::Backoff::new(spec.reconnect.initial_backoff, spec.reconnect.max_backoff);
    loop {
        // Aborted with this task (the relay is stopped), not left running.
        let run = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(task()));
        let Err(e) = run.await else { return };
        if !e.is_panic() {
            return;
        }
        let panic = e.into_panic();
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        metrics
            .attempts
            .get_or_create(&metrics::RelayReasonLabel {
                relay: spec.id.clone(),
                reason: "panicked",
            })
            .inc();
        status.set_error(format!("panicked: {what}"));
        status.set_state(RelayState::BackingOff);
        let delay = backoff.next_delay();
        tracing::error!(relay = %spec.id, panic = %what, retry_in_ms = delay.as_millis() as u64, "relay task panicked; restarting it");
        tokio::time::sleep(delay).await;
    }
}

/// Stops every running relay when the role task is dropped (each entry's task goes with it).
struct AbortRunning(Arc<Mutex<BTreeMap<String, Running>>>);

impl Drop for AbortRunning {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::spec::RelayConfig;

    #[tokio::test]
    async fn a_panicked_relay_task_is_reported_and_restarted() {
        let config = RelayConfig {
            kind: RelayKind::Push,
            url: "rtmp://target/live/out".into(),
            stream: "live/foo".into(),
            mode: RelayMode::Static,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
            stall_timeout_ms: 1000,
            max_attempts: None,
            linger_secs: 10,
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
        };
        let spec = RelaySpec::parse(0, &config).unwrap();
        let registry = liverelay_metrics::MetricsRegistry::new(liverelay_types::Role::Standalone);
        let metrics = registry.register(StaticRelayMetrics::register);
        let status = StatusCell::new(&spec, metrics.clone());
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        // The first run panics, the second ends normally.
        let task = move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run > 0, "boom");
            }
        };
        let restarted = restart_on_panic(spec.clone(), status.clone(), metrics.clone(), task);
        tokio::time::timeout(Duration::from_secs(10), restarted)
            .await
            .expect("the task was not run again after its panic");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let last_error = status.get().last_error.unwrap_or_default();
        assert!(last_error.contains("panicked: boom"), "{last_error}");
        let series = format!(
            "liverelay_static_relay_attempts_total{{relay=\"{}\",reason=\"panicked\"}} 1",
            spec.id
        );
        assert!(registry.render().contains(&series), "{}", registry.render());
    }
}

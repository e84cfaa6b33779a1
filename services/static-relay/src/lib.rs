//! Static relays: pulls that bring an external RTMP stream in as a liverelay stream, and pushes
//! that forward a liverelay stream to an external server (nginx-rtmp's `pull`/`push`, SRS's
//! forward), declared as `[[relays]]` in the config.
//!
//! Every pod sees the same list; each relay runs on the one pod holding its lease
//! ([`ownership`]), reconnecting with backoff ([`supervisor`]). A pull runs anywhere (static) or
//! while wanted (on-demand, [`demand`]); a push runs on the pod where its stream is live. What
//! each relay does is listed by `GET /v1/relays` ([`api`], [`status`]).

mod api;
mod demand;
mod lease_store;
mod ownership;
mod pull;
mod push;
mod spec;
pub mod status;
mod supervisor;

use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use liverelay_hub::Hub;
use liverelay_metrics::Metrics;
use liverelay_registry::StreamRegistry;
use liverelay_rtmp_server::StreamPolicy;

pub use api::router;
pub use lease_store::{LeaseStore, MemoryLeases, RedisLeases};
pub use spec::{RelayConfig, RelayKind, RelayMode, RelaySpec, SpecError};
pub use status::{RedisRelayStatus, RelayState, RelayStatus};

use crate::demand::Demand;
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
    pub metrics: Arc<Metrics>,
    pub pod_id: String,
}

/// The relays of one pod.
#[derive(Clone)]
pub struct StaticRelays {
    relays: Arc<Vec<(RelaySpec, StatusCell)>>,
    context: Arc<RelayContext>,
}

impl StaticRelays {
    pub fn new(specs: Vec<RelaySpec>, context: RelayContext) -> Self {
        let relays = specs
            .into_iter()
            .map(|spec| {
                let cell = StatusCell::new(&spec, context.metrics.clone());
                (spec, cell)
            })
            .collect();
        Self {
            relays: Arc::new(relays),
            context: Arc::new(context),
        }
    }

    /// This pod's view of every configured relay.
    pub(crate) fn local_statuses(&self) -> Vec<RelayStatus> {
        self.relays.iter().map(|(_, cell)| cell.get()).collect()
    }

    pub(crate) fn shared_status(&self) -> Option<&RedisRelayStatus> {
        self.context.shared_status.as_ref()
    }

    /// Runs every relay (as a role task: it never ends).
    pub fn run(&self) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone();
        Box::pin(async move {
            if this.relays.is_empty() {
                return std::future::pending().await;
            }
            let tasks: Vec<_> = (0..this.relays.len())
                .map(|i| tokio::spawn(this.clone().run_one(i)))
                .collect();
            let _abort = AbortAll(tasks.iter().map(|t| t.abort_handle()).collect());
            join_all(tasks).await;
            anyhow::bail!("static relays stopped")
        })
    }

    async fn run_one(self, index: usize) {
        let (spec, status) = &self.relays[index];
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
                            let mut pull =
                                Pull::new(spec.clone(), ctx.hub.clone(), ctx.policy.clone());
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
                        let events = ctx.registry.as_ref().map(|r| r.events());
                        let mut demand = Demand::new(ctx.hub.clone(), spec.stream.clone(), events);
                        loop {
                            demand.wanted().await;
                            let mut pull =
                                Pull::new(spec.clone(), ctx.hub.clone(), ctx.policy.clone());
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

/// Stops the relays' tasks when the role task is dropped (the node shutting down).
struct AbortAll(Vec<tokio::task::AbortHandle>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

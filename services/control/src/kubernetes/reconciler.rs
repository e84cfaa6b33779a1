//! Reconciles `Relay` resources (kube-runtime): each one is declared in Redis for the pods to
//! run (the lease picks one), and the running pod's status is copied back onto the resource.
//! A finalizer makes sure deleting the resource stops the relay.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use liverelay_static_relay::{DeclaredRelays, RedisRelayStatus};
use tracing::{info, warn};

use super::crd::{Relay, RelayStatus};

const FINALIZER: &str = "liverelay.io/relay";

pub struct Context {
    pub client: Client,
    pub declared: DeclaredRelays,
    pub statuses: RedisRelayStatus,
    /// How often a resource's status is refreshed from the running pod.
    pub refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Redis: {0}")]
    Redis(#[from] liverelay_redis::RedisError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Where a resource is declared in Redis.
fn source(relay: &Relay) -> String {
    format!(
        "k8s/{}/{}",
        relay.namespace().unwrap_or_default(),
        relay.name_any()
    )
}

/// Runs until the watch ends (it retries by itself while the API server is away).
pub async fn run(api: Api<Relay>, context: Arc<Context>) {
    info!("reconciling Relay resources");
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Relay reconcile failed");
            }
        })
        .await;
}

async fn reconcile(relay: Arc<Relay>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = relay.namespace().unwrap_or_default();
    let api: Api<Relay> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, relay, |event| async {
        match event {
            Finalizer::Apply(relay) => apply(&relay, &api, &context).await,
            Finalizer::Cleanup(relay) => cleanup(&relay, &context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

async fn apply(relay: &Relay, api: &Api<Relay>, context: &Context) -> Result<Action, Error> {
    let config = relay.spec.to_config();
    let status = match liverelay_static_relay::RelaySpec::parse(0, &config) {
        Err(e) => RelayStatus {
            state: Some("invalid".into()),
            last_error: Some(e.problem),
            ..RelayStatus::default()
        },
        Ok(spec) => {
            context.declared.put(&source(relay), &config).await?;
            let running = context
                .statuses
                .list()
                .await?
                .into_iter()
                .find(|s| s.id == spec.id);
            match running {
                Some(s) => RelayStatus {
                    relay_id: Some(s.id),
                    state: Some(s.state.as_str().into()),
                    owner: s.owner,
                    last_error: s.last_error,
                    attempts: s.attempts,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    observed_generation: None,
                },
                None => RelayStatus {
                    relay_id: Some(spec.id),
                    state: Some("pending".into()),
                    ..RelayStatus::default()
                },
            }
        }
    };
    let status = RelayStatus {
        observed_generation: relay.metadata.generation,
        ..status
    };
    if relay.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &relay.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(context.refresh))
}

async fn cleanup(relay: &Relay, context: &Context) -> Result<Action, Error> {
    context.declared.remove(&source(relay)).await?;
    info!(relay = %source(relay), "Relay deleted; its relay stops");
    Ok(Action::await_change())
}

fn error_policy(relay: Arc<Relay>, error: &Error, _: Arc<Context>) -> Action {
    warn!(relay = %source(&relay), error = %error, "Relay reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

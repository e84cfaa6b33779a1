//! `liverelay standalone`: one process that takes publishes and serves viewers, with stream
//! state in memory and no Redis. The same hub and RTMP driver the cluster roles use; the only
//! rule is the hub's own (one publisher per name). Static relays run here too.

use liverelay_types::Role;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use liverelay_config::Settings;
use liverelay_hub::Hub;
use liverelay_node::{Node, NodeMetrics};
use liverelay_static_relay::{MemoryLeases, RelayContext, StaticRelayMetrics, StaticRelays};
use liverelay_types::{OpenPolicy, StreamPolicy};

/// What a standalone process updates (composed with every other crate's families by the
/// binary).
pub struct StandaloneMetrics {
    pub node: NodeMetrics,
    pub static_relays: StaticRelayMetrics,
}

pub async fn run(
    settings: Settings,
    metrics: StandaloneMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let hub = Hub::new(settings.hub());
    let policy: Arc<dyn StreamPolicy> = Arc::new(OpenPolicy);
    // One process: relay leases only keep a relay from running twice here.
    let relays = StaticRelays::new(
        settings.relay_specs()?,
        RelayContext {
            hub: hub.clone(),
            policy: policy.clone(),
            leases: Arc::new(MemoryLeases::new(Duration::from_millis(
                settings.redis.lease_ttl_ms,
            ))),
            shared_status: None,
            registry: None,
            metrics: metrics.static_relays,
            pod_id: settings.cluster.pod_id(),
            declared: None,
        },
    );
    // `GET /v1/relays` answers only with it.
    let admin_token = settings.control.admin_token.clone();
    Node {
        role: Role::Standalone,
        settings,
        hub,
        policy: relays.players_policy(),
        metrics: metrics.node,
        tasks: vec![("static relays", relays.run())],
        api: Some(liverelay_static_relay::router(
            relays,
            admin_token.as_deref(),
        )),
        redis: None,
    }
    .run(shutdown)
    .await
}

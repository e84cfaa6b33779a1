//! `liverelay edge`: serves RTMP viewers. A stream is pulled once per edge, however many watch
//! it: the first play starts an [`Upstream`](upstream) that finds the owning ingest in the
//! registry, subscribes over the relay and publishes into the local hub; every local viewer
//! reads from there. Upstreams fail over to a new owner without dropping viewers and linger a
//! while after the last viewer leaves.

mod metrics;
mod policy;
mod upstream;

use liverelay_types::Role;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use liverelay_config::Settings;
use liverelay_hub::Hub;
use liverelay_node::{Node, NodeMetrics};
use liverelay_redis::RedisMetrics;
use liverelay_registry::{RedisRegistry, StreamRegistry};
use liverelay_relay::{RelayClientConfig, RelayClientTls};
use liverelay_types::ClusterToken;

pub use metrics::UpstreamMetrics;
pub use policy::EdgePolicy;
pub use upstream::UpstreamPool;

/// What an edge updates (composed with every other crate's families by the binary).
pub struct EdgeMetrics {
    pub node: NodeMetrics,
    pub redis: RedisMetrics,
    pub upstream: UpstreamMetrics,
}

pub async fn run(
    settings: Settings,
    metrics: EdgeMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let token = ClusterToken::new(settings.cluster.require_token()?);
    let redis = Arc::new(
        RedisRegistry::connect(settings.redis_registry(), metrics.redis)
            .await
            .context("setting up the Redis registry")?,
    );
    let registry: Arc<dyn StreamRegistry> = redis.clone();
    let hub = Hub::new(settings.hub());
    let tls = match &settings.cluster.tls_ca {
        Some(path) => Some(RelayClientTls {
            ca_pem: std::fs::read(path)
                .with_context(|| format!("reading cluster.tls_ca {path}"))?,
            domain: settings.cluster.tls_domain.clone(),
            identity: settings.cluster.client_identity(),
        }),
        None => None,
    };
    let relay = RelayClientConfig {
        token,
        tls,
        subscriber: settings.cluster.pod_id(),
        connect_timeout: Duration::from_secs(2),
        max_payload: settings.rtmp.max_message_size,
    };
    let pool = UpstreamPool::new(
        hub.clone(),
        registry.clone(),
        relay,
        Duration::from_secs(settings.cluster.upstream_linger_secs),
        Duration::from_secs(settings.cluster.reconnect_window_secs),
        settings.cluster.max_upstreams,
        metrics.upstream,
    );
    let policy = EdgePolicy {
        pool,
        registry,
        hub: hub.clone(),
    };
    Node {
        role: Role::Edge,
        settings,
        hub,
        policy: Arc::new(policy),
        metrics: metrics.node,
        tasks: Vec::new(),
        api: None,
        redis: Some(redis),
    }
    .run(shutdown)
    .await
}

//! `liverelay ingest`: accepts publishers, claims each stream in the cluster registry (one
//! owner per name across the cluster) and serves it to edges over the relay. Stateless: all it
//! knows about other pods is in the registry.

mod policy;

use liverelay_types::Role;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use liverelay_config::Settings;
use liverelay_hub::Hub;
use liverelay_node::{Node, NodeMetrics};
use liverelay_redis::RedisMetrics;
use liverelay_registry::{LeaseMetrics, RedisRegistry, StreamRegistry};
use liverelay_relay::{RelayMetrics, RelayService};
use liverelay_static_relay::{
    DeclaredRelays, RedisLeases, RedisRelayStatus, RelayContext, StaticRelayMetrics, StaticRelays,
};
use liverelay_types::ClusterToken;
use liverelay_types::StreamPolicy;

use liverelay_tls::{grpc_server_config, tls_incoming};
use tonic::transport::server::TcpIncoming;
use tracing::info;

pub use policy::IngestPolicy;

/// What an ingest updates (composed with every other crate's families by the binary).
pub struct IngestMetrics {
    pub node: NodeMetrics,
    pub relay: RelayMetrics,
    pub redis: RedisMetrics,
    pub lease: LeaseMetrics,
    pub static_relays: StaticRelayMetrics,
}

pub async fn run(
    settings: Settings,
    metrics: IngestMetrics,
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
    let advertised = settings.cluster.advertise_addr();
    let grpc_listen = settings.cluster.grpc_listen;
    // Bound before anything registers this address, so edges never find it closed.
    let listener = tokio::net::TcpListener::bind(grpc_listen)
        .await
        .with_context(|| format!("binding relay gRPC listener on {grpc_listen}"))?;
    info!(grpc = %listener.local_addr()?, %advertised, "relay listening");
    let policy = IngestPolicy {
        registry: registry.clone(),
        hub: hub.clone(),
        pod_id: settings.cluster.pod_id(),
        grpc_addr: advertised,
        allow_play: settings.cluster.ingest_allow_play,
        metrics: metrics.lease,
    };
    let relay = RelayService::new(hub.clone(), token, metrics.relay).into_server();
    let c = &settings.cluster;
    let tls = grpc_server_config(
        c.tls_cert.as_deref(),
        c.tls_key.as_deref(),
        c.tls_client_ca.as_deref(),
    )
    .context("relay gRPC TLS setup")?;
    if tls.is_some() {
        info!(mutual = c.tls_client_ca.is_some(), "relay serves TLS");
    }
    let grpc = async move {
        let router = tonic::transport::Server::builder().add_service(relay);
        match tls {
            Some(tls) => {
                router
                    .serve_with_incoming(tls_incoming(listener, tls, "relay gRPC"))
                    .await
            }
            // Frames must not wait for Nagle and the edge's delayed ACK (tens of ms).
            None => {
                router
                    .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await
            }
        }
        .context("relay gRPC server")
    };
    let policy: Arc<dyn StreamPolicy> = Arc::new(policy);
    let relays = StaticRelays::new(
        settings.relay_specs()?,
        RelayContext {
            hub: hub.clone(),
            policy: policy.clone(),
            leases: Arc::new(RedisLeases::new(
                redis.conn(),
                Duration::from_millis(settings.redis.lease_ttl_ms),
            )),
            shared_status: Some(RedisRelayStatus::new(redis.conn())),
            registry: Some(registry),
            metrics: metrics.static_relays,
            pod_id: settings.cluster.pod_id(),
            declared: Some(DeclaredRelays::new(redis.conn())),
        },
    );
    // `GET /v1/relays` answers only with it.
    let admin_token = settings.control.admin_token.clone();
    Node {
        role: Role::Ingest,
        settings,
        hub,
        policy: relays.players_policy(),
        metrics: metrics.node,
        tasks: vec![
            ("relay gRPC server", Box::pin(grpc)),
            ("static relays", relays.run()),
        ],
        api: Some(liverelay_static_relay::router(
            relays,
            admin_token.as_deref(),
        )),
        redis: Some(redis),
    }
    .run(shutdown)
    .await
}

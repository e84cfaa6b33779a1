//! The control service (`liverelay control`): stream keys (JSON HTTP API and gRPC), publish
//! authorization for ingests, playback tokens, JSON event webhooks, the live view and routing,
//! and drops. It keeps no state of its own: keys, streams and node reports are in Redis, so
//! replicas are interchangeable.

mod core;
mod grpc;
mod http_api;
mod keys;
pub mod kubernetes;
mod live;
mod metrics;
mod persistence;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use liverelay_auth::AuthMetrics;
use liverelay_config::Settings;
use liverelay_http::{HttpLimits, HttpMetrics, HttpServer, Readiness};
use liverelay_metrics::MetricsRegistry;
use liverelay_proto::control::v1::control_server::ControlServer;
use liverelay_redis::{CommandBus, NodeReports, RedisMetrics};
use liverelay_registry::RedisRegistry;
use liverelay_static_relay::{DeclaredRelays, RedisRelayStatus};
use liverelay_types::ClusterToken;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;
use tracing::info;

pub use keys::KeyRecord;
pub use metrics::WebhookMetrics;

use crate::core::Core;
use crate::webhooks::Webhooks;

/// What control updates, and the registry its `/metrics` serves (composed with every other
/// crate's families by the binary).
pub struct ControlMetrics {
    pub registry: Arc<MetricsRegistry>,
    pub redis: RedisMetrics,
    /// Its answers to the pods' stream-key checks.
    pub auth: AuthMetrics,
    pub webhooks: WebhookMetrics,
    pub http: HttpMetrics,
}

/// Runs control until `shutdown` completes or a part fails.
pub async fn run(
    settings: Settings,
    metrics: ControlMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admin_token = settings
        .control
        .admin_token
        .clone()
        .filter(|t| !t.is_empty())
        .context("control.admin_token is required (--admin-token or LIVERELAY_ADMIN_TOKEN)")?;
    let cluster_token = settings.cluster.require_token()?.to_string();
    let registry = Arc::new(
        RedisRegistry::connect(settings.redis_registry(), metrics.redis)
            .await
            .context("setting up the Redis connection")?,
    );
    let conn = registry.conn();
    // In the background: a Redis slow to answer must not hold up the start.
    let _persistence = AbortOnDropHandle::new(tokio::spawn({
        let conn = conn.clone();
        async move { persistence::check(&conn).await }
    }));
    let webhooks = Webhooks::new(conn.clone(), metrics.webhooks);
    let _deliveries = webhooks.deliver(
        settings.control.webhooks.clone(),
        settings.cluster.pod_id(),
        Duration::from_secs(settings.control.webhook_takeover_secs),
    )?;
    let declared = DeclaredRelays::new(conn.clone());
    let relay_statuses = RedisRelayStatus::new(conn.clone());
    let _reconciler = if settings.control.relay_resources {
        let client = kube::Client::try_default().await.context(
            "control.relay_resources needs a Kubernetes API (in-cluster config or KUBECONFIG)",
        )?;
        let api = kube::Api::default_namespaced(client.clone());
        let context = Arc::new(kubernetes::Context {
            client,
            declared: declared.clone(),
            statuses: relay_statuses.clone(),
            refresh: Duration::from_secs(5),
        });
        Some(AbortOnDropHandle::new(tokio::spawn(kubernetes::run(
            api, context,
        ))))
    } else {
        None
    };
    let core = Arc::new(Core {
        keys: keys::KeyStore::new(conn.clone()),
        commands: CommandBus::new(conn.clone()),
        registry,
        nodes: NodeReports::new(conn),
        webhooks,
        play_token_secret: settings.auth.play_token_secret.clone(),
        play_token_max_ttl_secs: settings.auth.play_token_max_ttl_secs,
        declared,
        relay_statuses,
    });
    let ready = Readiness::default();
    let http = HttpServer::bind(
        settings.http.listen,
        http_api::router(core.clone(), &admin_token, ready.clone(), metrics.registry),
    )
    .await
    .with_context(|| format!("binding HTTP listener on {}", settings.http.listen))?
    .with_tls(
        liverelay_tls::https_server_config(
            settings.http.tls_cert.as_deref(),
            settings.http.tls_key.as_deref(),
        )
        .context("HTTPS setup (http.tls_cert, http.tls_key)")?,
    )
    .with_limits(HttpLimits::from_settings(&settings.http))
    .with_metrics(metrics.http);
    let grpc_listener = TcpListener::bind(settings.cluster.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC listener on {}", settings.cluster.grpc_listen))?;
    info!(http = %http.local_addr()?, grpc = %grpc_listener.local_addr()?, "liverelay ready");
    let service = grpc::ControlService::new(
        core,
        ClusterToken::new(&cluster_token),
        ClusterToken::new(&admin_token),
        metrics.auth,
    );
    let c = &settings.cluster;
    let tls = liverelay_tls::grpc_server_config(
        c.tls_cert.as_deref(),
        c.tls_key.as_deref(),
        c.tls_client_ca.as_deref(),
    )
    .context("control gRPC TLS setup")?;
    if tls.is_some() {
        info!(
            mutual = c.tls_client_ca.is_some(),
            "control gRPC serves TLS"
        );
    }
    let router = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(ControlServer::new(service));
    let grpc = async move {
        match tls {
            Some(tls) => {
                let incoming = liverelay_tls::tls_incoming(grpc_listener, tls, "control gRPC");
                router.serve_with_incoming(incoming).await
            }
            None => {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
                router.serve_with_incoming(incoming).await
            }
        }
    };
    ready.set(true);
    tokio::select! {
        r = http.run() => r.context("HTTP server failed")?,
        r = grpc => r.context("gRPC server failed")?,
        () = shutdown => {}
    }
    ready.set(false);
    info!("shut down");
    Ok(())
}

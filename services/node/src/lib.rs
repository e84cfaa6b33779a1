//! One liverelay process, whatever its role: the hub, the RTMP listener (with the role's
//! [`StreamPolicy`]), the HTTP endpoints, and any tasks the role adds (the relay gRPC server,
//! upstream pullers). Roles differ only in what they pass here.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use futures::future::{BoxFuture, select_all};
use liverelay_config::Settings;
use liverelay_http::{HttpServer, Readiness, router};
use liverelay_hub::Hub;
use liverelay_metrics::{HubCollector, Metrics};
use liverelay_rtmp_server::{RtmpServer, StreamPolicy};
use tracing::info;

/// A long-running part of a role; the process stops if one ends.
pub type RoleTask = (&'static str, BoxFuture<'static, anyhow::Result<()>>);

pub struct Node {
    pub role: &'static str,
    pub settings: Settings,
    pub hub: Hub,
    pub policy: Arc<dyn StreamPolicy>,
    pub metrics: Arc<Metrics>,
    pub tasks: Vec<RoleTask>,
}

impl Node {
    /// Binds the listeners, reports ready, and runs until `shutdown` completes or a part fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            role,
            settings,
            hub,
            policy,
            metrics,
            mut tasks,
        } = self;
        metrics.register_hub(HubCollector::new(
            hub.clone(),
            settings.metrics.max_stream_series,
        ));
        let ready = Readiness::default();
        let rtmp = RtmpServer::bind(
            settings.rtmp.listen,
            settings.rtmp_server(),
            hub.clone(),
            policy,
            metrics.clone(),
        )
        .await
        .with_context(|| format!("binding RTMP listener on {}", settings.rtmp.listen))?;
        let http = HttpServer::bind(settings.http.listen, router(ready.clone(), hub, metrics))
            .await
            .with_context(|| format!("binding HTTP listener on {}", settings.http.listen))?;
        info!(role, rtmp = %rtmp.local_addr()?, http = %http.local_addr()?, "liverelay ready");
        tasks.push((
            "RTMP listener",
            Box::pin(async move {
                rtmp.run().await;
                Ok(())
            }),
        ));
        tasks.push((
            "HTTP server",
            Box::pin(async move { Ok(http.run().await?) }),
        ));
        let names: Vec<&'static str> = tasks.iter().map(|(n, _)| *n).collect();
        let parts = select_all(tasks.into_iter().map(|(_, t)| t));
        ready.set(true);
        tokio::select! {
            (result, index, _) = parts => {
                ready.set(false);
                result.with_context(|| format!("{} failed", names[index]))?;
                anyhow::bail!("{} stopped", names[index])
            }
            () = shutdown => {
                ready.set(false);
                info!("shutting down");
                Ok(())
            }
        }
    }
}

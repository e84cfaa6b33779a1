//! `liverelay standalone`: one process that takes publishes and serves viewers, with stream
//! state in memory and no Redis. The same hub and RTMP driver the cluster roles use.

use std::future::Future;

use anyhow::Context;
use liverelay_config::Settings;
use liverelay_http::{HttpServer, Readiness, router};
use liverelay_hub::Hub;
use liverelay_rtmp_server::RtmpServer;
use tracing::info;

/// Runs until `shutdown` completes or a listener fails.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let hub = Hub::new(settings.hub());
    let ready = Readiness::default();
    let rtmp = RtmpServer::bind(settings.rtmp.listen, settings.rtmp_server(), hub.clone())
        .await
        .with_context(|| format!("binding RTMP listener on {}", settings.rtmp.listen))?;
    let http = HttpServer::bind(settings.http.listen, router(ready.clone(), hub))
        .await
        .with_context(|| format!("binding HTTP listener on {}", settings.http.listen))?;
    info!(rtmp = %rtmp.local_addr()?, http = %http.local_addr()?, "liverelay standalone ready");
    ready.set(true);
    tokio::select! {
        () = rtmp.run() => anyhow::bail!("RTMP listener stopped"),
        r = http.run() => r.context("HTTP server failed"),
        () = shutdown => {
            ready.set(false);
            info!("shutting down");
            Ok(())
        }
    }
}

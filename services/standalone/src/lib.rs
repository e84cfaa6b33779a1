//! `liverelay standalone`: one process that takes publishes and serves viewers, with stream
//! state in memory and no Redis. The same hub and RTMP driver the cluster roles use; the only
//! rule is the hub's own (one publisher per name).

use std::future::Future;
use std::sync::Arc;

use liverelay_config::Settings;
use liverelay_hub::Hub;
use liverelay_metrics::Metrics;
use liverelay_node::Node;
use liverelay_rtmp_server::OpenPolicy;

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let hub = Hub::new(settings.hub());
    let metrics = Arc::new(Metrics::new("standalone"));
    Node {
        role: "standalone",
        settings,
        hub,
        policy: Arc::new(OpenPolicy),
        metrics,
        tasks: Vec::new(),
    }
    .run(shutdown)
    .await
}

//! What a cluster pod does beside serving RTMP: it applies control's commands to its own
//! sessions (a revoked key's publish ends, a dropped stream's viewers go), and it reports its
//! load (viewers per stream, draining) so control can show and route.

use liverelay_types::{AbortOnDrop, Role};
use std::collections::BTreeMap;
use std::time::Duration;

use liverelay_admission::{SessionRole, Sessions};
use liverelay_auth::PublishKeys;
use liverelay_http::HlsViewers;
use liverelay_hub::Hub;
use liverelay_redis::{
    ClusterCommand, CommandBus, DropTarget, NodeReport, NodeReports, RedisConn, StreamLoad,
};
use liverelay_rtmp_server::Phase;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

/// Applies control's commands until the process ends.
pub async fn follow_commands(
    redis: RedisConn,
    pod: String,
    sessions: Sessions,
    stream_keys: Option<PublishKeys>,
) -> anyhow::Result<()> {
    let bus = CommandBus::new(redis);
    let (mut commands, task) = bus.listen();
    let _stop = AbortOnDrop::new(&task);
    loop {
        let command = match commands.recv().await {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "cluster commands lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => anyhow::bail!("command channel closed"),
        };
        apply(&command, &pod, &sessions, stream_keys.as_ref());
    }
}

fn apply(
    command: &ClusterCommand,
    pod: &str,
    sessions: &Sessions,
    stream_keys: Option<&PublishKeys>,
) {
    match command {
        ClusterCommand::KeyRevoked { key_id } => {
            if let Some(keys) = stream_keys {
                keys.forget(key_id);
            }
            let ended = sessions.kick(
                |s| s.role == SessionRole::Publisher && s.tag.as_deref() == Some(key_id),
                "stream key revoked",
            );
            if ended > 0 {
                info!(key_id, ended, "ended the publishes of a revoked stream key");
            }
        }
        ClusterCommand::Drop {
            app,
            name,
            target,
            pod: only,
            client_id,
        } => {
            if only.as_deref().is_some_and(|p| p != pod) {
                return;
            }
            let ended = sessions.kick(
                |s| {
                    s.app == *app
                        && s.name == *name
                        && client_id.is_none_or(|id| id == s.client_id)
                        && match target {
                            DropTarget::Publisher => s.role == SessionRole::Publisher,
                            DropTarget::Viewers => s.role == SessionRole::Viewer,
                            DropTarget::All => true,
                        }
                },
                "dropped by an operator",
            );
            if ended > 0 {
                info!(stream = %format!("{app}/{name}"), ?target, ended, "dropped sessions");
            }
        }
    }
}

pub struct LoadReporter {
    pub redis: RedisConn,
    pub pod: String,
    pub role: Role,
    pub rtmp_url: String,
    pub every: Duration,
    pub hub: Hub,
    pub sessions: Sessions,
    /// HLS sessions (an HLS stream's packaging is one hub viewer however many watch it).
    pub hls: Option<HlsViewers>,
    pub phase: watch::Receiver<Phase>,
}

impl LoadReporter {
    fn snapshot(&self) -> NodeReport {
        let mut streams: BTreeMap<String, StreamLoad> = self
            .hub
            .streams()
            .into_iter()
            .map(|s| {
                let load = StreamLoad {
                    viewers: 0,
                    live: s.live,
                    bitrate_bps: s.rates.bitrate_bps,
                };
                (format!("{}/{}", s.key.app, s.key.name), load)
            })
            .collect();
        let (mut publishers, mut viewers) = (0, 0);
        // Admitted viewers (RTMP and HTTP-FLV) and HLS sessions, not the hub's viewers: an
        // ingest's hub also counts the edges subscribed to it, and an HLS stream's packaging
        // is one hub viewer however many watch it.
        for (key, n) in self.hls.iter().flat_map(HlsViewers::per_stream) {
            viewers += n;
            streams
                .entry(format!("{}/{}", key.app, key.name))
                .or_default()
                .viewers += n;
        }
        for s in self.sessions.list() {
            match s.role {
                SessionRole::Publisher => publishers += 1,
                SessionRole::Viewer => {
                    viewers += 1;
                    streams
                        .entry(format!("{}/{}", s.app, s.name))
                        .or_default()
                        .viewers += 1;
                }
            }
        }
        NodeReport {
            pod: self.pod.clone(),
            role: self.role,
            rtmp_url: self.rtmp_url.clone(),
            draining: *self.phase.borrow() != Phase::Running,
            publishers,
            viewers,
            streams,
            reported_at_ms: liverelay_types::unix_ms(),
        }
    }

    /// Starts reporting every `every`, and at once when draining starts, until the pod leaves.
    pub fn spawn(self) -> Reporting {
        let reports = NodeReports::new(self.redis.clone());
        let (written, written_rx) = watch::channel(None);
        let pod = self.pod.clone();
        let task = AbortOnDrop::new(&tokio::spawn(self.run(reports.clone(), written)));
        Reporting {
            reports,
            pod,
            written: written_rx,
            task,
        }
    }

    async fn run(mut self, reports: NodeReports, written: watch::Sender<Option<bool>>) {
        let ttl = self.every * 3;
        let mut tick = tokio::time::interval(self.every);
        loop {
            let report = self.snapshot();
            match reports.report(&report, ttl).await {
                Ok(()) => {
                    written.send_replace(Some(report.draining));
                }
                Err(e) => warn!(error = %e, "could not report load to the registry"),
            }
            tokio::select! {
                _ = tick.tick() => {}
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// The running load reporter. Control routes new viewers by the last report, which outlives
/// its writer by up to three intervals; so a pod says it is draining, and finally that it is
/// gone, before it stops serving instead of leaving a "ready" report behind.
pub struct Reporting {
    reports: NodeReports,
    pod: String,
    /// Whether the last report that reached the registry said "draining".
    written: watch::Receiver<Option<bool>>,
    /// Stops the reporting task when dropped.
    task: AbortOnDrop,
}

impl Reporting {
    /// Waits (at most `limit`) until a report saying "draining" is in the registry.
    pub async fn draining_reported(&mut self, limit: Duration) {
        let reported = self.written.wait_for(|w| *w == Some(true));
        if tokio::time::timeout(limit, reported).await.is_err() {
            warn!(pod = %self.pod, "could not report draining to the registry before draining");
        }
    }

    /// Stops reporting and removes the pod's report (bounded by `limit`).
    pub async fn leave(self, limit: Duration) {
        let Self {
            reports, pod, task, ..
        } = self;
        drop(task);
        match tokio::time::timeout(limit, reports.withdraw(&pod)).await {
            Ok(Ok(())) => info!(%pod, "load report withdrawn"),
            Ok(Err(e)) => warn!(%pod, error = %e, "could not withdraw the load report"),
            Err(_) => warn!(%pod, "timed out withdrawing the load report"),
        }
    }
}

#[cfg(test)]
mod tests;

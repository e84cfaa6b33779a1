//! One liverelay process, whatever its role: the hub, the RTMP listener (with the role's
//! [`StreamPolicy`]), the HTTP endpoints, and any tasks the role adds (the relay gRPC server,
//! upstream pullers). Roles differ only in what they pass here.

mod cluster;
mod load;
mod playback;

use liverelay_types::Role;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::{BoxFuture, select_all};
use liverelay_admission::{AdmissionMetrics, Clients, Gate, Sessions};
use liverelay_auth::AuthMetrics;
use liverelay_config::Settings;
use liverelay_http::{
    FlvService, HttpLimits, HttpMetrics, HttpServer, Readiness, WatchService, flv_router, router,
    watch_router,
};
use liverelay_hub::{Hub, HubCollector};
use liverelay_metrics::MetricsRegistry;
use liverelay_registry::RedisRegistry;
use liverelay_rtmp_server::{Drain, Phase, RtmpMetrics, RtmpServer, Services};
use liverelay_tls::{CertFiles, ReloadingCert};
use liverelay_types::{AbortOnDrop, StreamPolicy};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How long a leaving pod waits for its state to reach the registry; past it, the report's TTL
/// still takes it out of routing.
const REPORT_LIMIT: Duration = Duration::from_secs(2);

/// A long-running part of a role; the process stops if one ends.
pub type RoleTask = (&'static str, BoxFuture<'static, anyhow::Result<()>>);

/// What a node updates, and the registry its `/metrics` serves (the binary composes it with
/// every other crate's families; the node adds the hub's collector).
pub struct NodeMetrics {
    pub registry: Arc<MetricsRegistry>,
    pub rtmp: RtmpMetrics,
    pub admission: AdmissionMetrics,
    pub auth: AuthMetrics,
    pub http: HttpMetrics,
}

pub struct Node {
    pub role: Role,
    pub settings: Settings,
    pub hub: Hub,
    pub policy: Arc<dyn StreamPolicy>,
    /// The cluster's Redis (ingest, edge): the pod follows control's commands and reports its
    /// load there.
    pub redis: Option<Arc<RedisRegistry>>,
    pub metrics: NodeMetrics,
    pub tasks: Vec<RoleTask>,
    /// Routes the role adds to the HTTP server (e.g. `/v1/relays`).
    pub api: Option<axum::Router>,
}

impl Node {
    /// Binds the listeners, reports ready, and runs until `shutdown` completes or a part fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            role,
            settings,
            hub,
            policy,
            redis,
            metrics,
            mut tasks,
            api,
        } = self;
        metrics
            .registry
            .register_collector(Box::new(HubCollector::new(
                hub.clone(),
                settings.metrics.max_stream_series,
            )));
        let ready = Readiness::default();
        let sessions = Sessions::default();
        let auth = liverelay_auth::build(&settings, role, metrics.auth, sessions.clone())?;
        let drain = Drain::default();
        // HTTP viewers come in through a gate of their own, made of what the RTMP listeners'
        // are: the same access, session table and policy.
        let flv = serves_viewers(role, &settings).then(|| {
            let gate = Gate::new(hub.clone(), policy.clone()).with_clients(Clients {
                access: auth.access.clone(),
                sessions: sessions.clone(),
                metrics: metrics.admission.clone(),
                max_name_len: settings.rtmp.max_name_len,
            });
            flv_router(FlvService {
                gate: Arc::new(gate),
                max_name_len: settings.rtmp.max_name_len,
                wait: Duration::from_secs(settings.http.flv_wait_secs),
                viewers: metrics.http.viewers.clone(),
                nodelay: settings.rtmp.tcp_nodelay,
            })
        });
        // The player page and its scripts, where there is something to watch.
        let watch = serves_viewers(role, &settings).then(|| {
            watch_router(WatchService {
                max_name_len: settings.rtmp.max_name_len,
                player_dir: settings.http.player_dir.clone().into(),
            })
        });
        let hls_viewers = serves_viewers(role, &settings)
            .then(|| playback::hls_viewers(&settings, &metrics.http))
            .flatten();
        let hls = playback::hls(
            &settings,
            &hub,
            policy.clone(),
            redis.clone(),
            metrics.http.clone(),
            hls_viewers.clone(),
        );
        let services = Services {
            hub: hub.clone(),
            policy,
            access: auth.access,
            sessions: sessions.clone(),
            metrics: metrics.rtmp,
            admission: metrics.admission,
        };
        // An ingest says it is alive before it can own a stream, so that other ingests take
        // its streams over at once when it is gone, not when its leases run out. It refuses to
        // start while another running process is its pod: each would take the other's streams.
        let presence = match redis.as_ref().filter(|_| role == Role::Ingest) {
            Some(registry) => Some(registry.presence(&settings.cluster.pod_id()).await?),
            None => None,
        };
        let rtmp = bind_rtmp(&settings, services).await?;
        let mut reporting = None;
        if let Some(redis) = redis.map(|registry| registry.conn()) {
            let pod = settings.cluster.pod_id();
            let rtmp_url = settings.cluster.public_rtmp_url(&settings.rtmp);
            let reporter = cluster::LoadReporter {
                redis: redis.clone(),
                pod: pod.clone(),
                role,
                rtmp_url,
                every: Duration::from_secs(settings.cluster.report_interval_secs.max(1)),
                hub: hub.clone(),
                sessions: sessions.clone(),
                hls: hls_viewers,
                phase: drain.watch(),
            };
            reporting = Some(reporter.spawn());
            let commands = cluster::follow_commands(redis, pod, sessions, auth.stream_keys);
            tasks.push(("cluster commands", Box::pin(commands)));
        }
        if !settings.hub.audio_hold_adaptive {
            hub.batching().keep_hold();
        }
        tasks.push(("load sampler", Box::pin(load::follow_load(hub.clone()))));
        // What viewers need, and nothing else: all the public listener serves.
        let playback = [flv, hls, watch]
            .into_iter()
            .flatten()
            .fold(axum::Router::new(), axum::Router::merge);
        let mut routes = router(ready.clone(), hub, metrics.registry).merge(playback.clone());
        if let Some(api) = api {
            routes = routes.merge(api);
        }
        let h = &settings.http;
        let https = liverelay_tls::https_server_config(h.tls_cert.as_deref(), h.tls_key.as_deref())
            .context("HTTPS setup (http.tls_cert, http.tls_key)")?;
        let http_server = |addr, routes, what: &'static str| {
            let (https, metrics) = (https.clone(), metrics.http.clone());
            async move {
                let server = HttpServer::bind(addr, routes)
                    .await
                    .with_context(|| format!("binding {what} on {addr}"))?;
                anyhow::Ok(
                    server
                        .with_tls(https)
                        .with_limits(HttpLimits::from_settings(h))
                        .with_metrics(metrics),
                )
            }
        };
        let http = http_server(h.listen, routes, "HTTP listener").await?;
        let public = match h.public_listen {
            Some(addr) => {
                if !serves_viewers(role, &settings) {
                    warn!(%addr, "http.public_listen is set, but this role serves no viewers: it answers 404 to everything");
                }
                Some(http_server(addr, playback, "public HTTP listener").await?)
            }
            None => None,
        };
        let addrs = |tls: bool| {
            rtmp.iter()
                .filter(|(_, t)| *t == tls)
                .filter_map(|(l, _)| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let public_addr = match &public {
            Some(p) => p.local_addr()?.to_string(),
            None => String::new(),
        };
        info!(role = role.as_str(), rtmp = %addrs(false), rtmps = %addrs(true), http = %http.local_addr()?, public_http = %public_addr, "liverelay ready");
        let runs: Vec<_> = rtmp
            .into_iter()
            .map(|(l, _)| l.run(drain.clone()))
            .collect();
        let mut listener = tokio::spawn(futures::future::join_all(runs));
        tasks.push((
            "HTTP server",
            Box::pin(async move { Ok(http.run().await?) }),
        ));
        if let Some(public) = public {
            tasks.push((
                "public HTTP server",
                Box::pin(async move { Ok(public.run().await?) }),
            ));
        }
        let names: Vec<&'static str> = tasks.iter().map(|(n, _)| *n).collect();
        // Spawned, so HTTP (readiness, metrics) and the relay keep serving while draining.
        let handles: Vec<JoinHandle<anyhow::Result<()>>> =
            tasks.into_iter().map(|(_, t)| tokio::spawn(t)).collect();
        // Stops the role's tasks when the node returns (error or shutdown).
        let abort: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
        let _abort_on_exit = AbortOnDrop::from(abort);
        let mut parts = select_all(handles);
        ready.set(true);
        tokio::select! {
            (result, index, _) = &mut parts => {
                ready.set(false);
                result.with_context(|| format!("{} panicked", names[index]))?.with_context(|| format!("{} failed", names[index]))?;
                anyhow::bail!("{} stopped", names[index])
            }
            _ = &mut listener => anyhow::bail!("RTMP listener stopped"),
            () = shutdown => {}
        }
        // Drain: out of the load balancer at once, no new connections, the ones open go on
        // until they end or the grace period is over; then they are told and closed.
        ready.set(false);
        let grace = Duration::from_secs(settings.rtmp.drain_grace_secs);
        info!(grace_secs = grace.as_secs(), "draining");
        drain.set(Phase::Draining);
        if let Some(presence) = &presence {
            // Publishers that reconnect elsewhere take their streams with them at once.
            presence.moving(REPORT_LIMIT).await;
        }
        if let Some(reporting) = reporting.as_mut() {
            reporting.draining_reported(REPORT_LIMIT).await;
        }
        if tokio::time::timeout(grace, &mut listener).await.is_err() {
            info!("drain grace period over; closing remaining connections");
            drain.set(Phase::Closing);
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut listener).await;
        }
        if let Some(reporting) = reporting {
            reporting.leave(REPORT_LIMIT).await;
        }
        info!("shut down");
        Ok(())
    }
}

/// Whether the role has viewers of its own (and so serves HTTP-FLV): standalone, edges, and an
/// ingest that lets clients play (`cluster.ingest_allow_play`).
fn serves_viewers(role: Role, settings: &Settings) -> bool {
    match role {
        Role::Standalone | Role::Edge => true,
        Role::Ingest => settings.cluster.ingest_allow_play,
        Role::Control => false,
    }
}

/// The RTMP listeners: plain (unless `rtmp.tls_only`) and RTMPS (with `rtmp.tls_listen`), each
/// with whether it is TLS; they share the connection limits.
async fn bind_rtmp(
    settings: &Settings,
    services: Services,
) -> anyhow::Result<Vec<(RtmpServer, bool)>> {
    let r = &settings.rtmp;
    let mut listeners = Vec::new();
    if !r.tls_only {
        let plain = RtmpServer::bind(r.listen, settings.rtmp_server(), services.clone())
            .await
            .with_context(|| format!("binding RTMP listener on {}", r.listen))?;
        listeners.push((plain, false));
    }
    if let (Some(addr), Some(cert), Some(key)) = (r.tls_listen, &r.tls_cert, &r.tls_key) {
        let cert =
            ReloadingCert::load(CertFiles::new(cert, key)).context("rtmp.tls_cert/tls_key")?;
        cert.watch(liverelay_tls::RELOAD_CHECK);
        let tls = liverelay_tls::server_config(cert, None).context("RTMPS TLS setup")?;
        let rtmps = RtmpServer::bind(addr, settings.rtmp_server(), services)
            .await
            .with_context(|| format!("binding RTMPS listener on {addr}"))?
            .with_tls(Arc::new(tls));
        // `rtmp.max_connections` is one budget for the pod, whichever port a client uses.
        let rtmps = match listeners.first() {
            Some((plain, _)) => rtmps.sharing_limits_with(plain),
            None => rtmps,
        };
        listeners.push((rtmps, true));
    }
    Ok(listeners)
}

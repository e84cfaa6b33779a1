//! The one place a process's metrics are composed. Every crate defines its own families next
//! to the code that updates them, as a `Clone` struct with `register(&mut Registry)`; here
//! they all go into the role's [`MetricsRegistry`] (the one `/metrics` serves), and each role
//! gets the handles it updates.
//!
//! Every role registers every family, so all pods expose the same names: a family a role never
//! updates has no series if it is labelled, and reads 0 if not.

use std::sync::Arc;

use liverelay_admission::AdmissionMetrics;
use liverelay_auth::AuthMetrics;
use liverelay_control::{ControlMetrics, WebhookMetrics};
use liverelay_edge::{EdgeMetrics, UpstreamMetrics};
use liverelay_http::HttpMetrics;
use liverelay_ingest::IngestMetrics;
use liverelay_metrics::{MetricsRegistry, ViewerMetrics};
use liverelay_node::NodeMetrics;
use liverelay_redis::RedisMetrics;
use liverelay_registry::LeaseMetrics;
use liverelay_relay::RelayMetrics;
use liverelay_rtmp_server::RtmpMetrics;
use liverelay_standalone::StandaloneMetrics;
use liverelay_static_relay::StaticRelayMetrics;
use liverelay_types::Role;

/// Every crate's families, registered in one process's registry.
pub struct Families {
    registry: Arc<MetricsRegistry>,
    rtmp: RtmpMetrics,
    admission: AdmissionMetrics,
    relay: RelayMetrics,
    upstream: UpstreamMetrics,
    redis: RedisMetrics,
    lease: LeaseMetrics,
    static_relays: StaticRelayMetrics,
    auth: AuthMetrics,
    webhooks: WebhookMetrics,
    http: HttpMetrics,
}

impl Families {
    pub fn register(role: Role) -> Self {
        let registry = Arc::new(MetricsRegistry::new(role));
        registry.register(|r| {
            // Viewers by protocol: one family pair, updated by the RTMP server and HTTP routes.
            let viewers = ViewerMetrics::register(r);
            Families {
                registry: registry.clone(),
                rtmp: RtmpMetrics {
                    viewers: viewers.clone(),
                    ..RtmpMetrics::register(r)
                },
                admission: AdmissionMetrics::register(r),
                relay: RelayMetrics::register(r),
                upstream: UpstreamMetrics::register(r),
                redis: RedisMetrics::register(r),
                lease: LeaseMetrics::register(r),
                static_relays: StaticRelayMetrics::register(r),
                auth: AuthMetrics::register(r),
                webhooks: WebhookMetrics::register(r),
                http: HttpMetrics {
                    viewers,
                    ..HttpMetrics::register(r)
                },
            }
        })
    }

    fn node(&self) -> NodeMetrics {
        NodeMetrics {
            registry: self.registry.clone(),
            rtmp: self.rtmp.clone(),
            admission: self.admission.clone(),
            auth: self.auth.clone(),
            http: self.http.clone(),
        }
    }

    pub fn standalone(self) -> StandaloneMetrics {
        StandaloneMetrics {
            node: self.node(),
            static_relays: self.static_relays,
        }
    }

    pub fn ingest(self) -> IngestMetrics {
        IngestMetrics {
            node: self.node(),
            relay: self.relay,
            redis: self.redis,
            lease: self.lease,
            static_relays: self.static_relays,
        }
    }

    pub fn edge(self) -> EdgeMetrics {
        EdgeMetrics {
            node: self.node(),
            redis: self.redis,
            upstream: self.upstream,
        }
    }

    pub fn control(self) -> ControlMetrics {
        ControlMetrics {
            registry: self.registry,
            redis: self.redis,
            auth: self.auth,
            webhooks: self.webhooks,
            http: self.http,
        }
    }
}

#[cfg(test)]
mod tests {
    use liverelay_metrics::{KindLabel, OutcomeLabel, ReasonLabel};
    use liverelay_redis::OpLabel;
    use liverelay_static_relay::{RelayDirectionLabel, RelayReasonLabel, RelayStateLabel};

    use super::*;

    /// What dashboards, alerts and `tests/observability.rs` rely on: name, type and help of
    /// every process-wide family, as they were when one struct in `liverelay-metrics` held
    /// them all (the hub's per-stream families are the hub's own test).
    const FAMILIES: &[(&str, &str, &str)] = &[
        (
            "liverelay_build_info",
            "gauge",
            "Build and role of this process",
        ),
        (
            "liverelay_connections",
            "counter",
            "RTMP connections by kind (accepted, refused)",
        ),
        (
            "liverelay_connections_open",
            "gauge",
            "RTMP connections open now",
        ),
        (
            "liverelay_sessions",
            "counter",
            "Publish and play sessions started",
        ),
        (
            "liverelay_handshake_failures",
            "counter",
            "RTMP handshakes that failed, by reason",
        ),
        (
            "liverelay_rtmp_direct_players",
            "gauge",
            "RTMP players the stream's publisher writes to itself now: caught up, plain TCP \
             (rtmp.direct_writes); the others are behind, paused, on RTMPS or just started",
        ),
        (
            "liverelay_relay_subscriptions",
            "gauge",
            "Relay subscriptions served by this ingest",
        ),
        (
            "liverelay_relay_frames_over_limit",
            "counter",
            "Frames an ingest did not relay because they exceeded the subscriber's max_payload",
        ),
        (
            "liverelay_relay_reconnects",
            "counter",
            "Edge upstream reconnects by reason",
        ),
        (
            "liverelay_relay_hop_latency_seconds",
            "histogram",
            "Time from a frame's arrival at the ingest to its arrival at the edge",
        ),
        (
            "liverelay_redis_operation_duration_seconds",
            "histogram",
            "Redis registry operations",
        ),
        (
            "liverelay_redis_errors",
            "counter",
            "Redis registry operations that failed",
        ),
        (
            "liverelay_lease_renewals",
            "counter",
            "Stream lease renewals",
        ),
        (
            "liverelay_lease_losses",
            "counter",
            "Stream leases lost to another owner",
        ),
        (
            "liverelay_static_relay_attempts",
            "counter",
            "Static pull/push relay connection attempts by how they ended",
        ),
        (
            "liverelay_static_relay_state",
            "gauge",
            "Static relay state on this pod (1 for the current one)",
        ),
        (
            "liverelay_static_relay_bytes",
            "counter",
            "Bytes a static relay read from (in) or wrote to (out) its peer",
        ),
        (
            "liverelay_auth_decisions",
            "counter",
            "Connect, publish and play decisions by result (allow, deny, error)",
        ),
        (
            "liverelay_notify_calls",
            "counter",
            "nginx-rtmp style HTTP callbacks by call and result",
        ),
        (
            "liverelay_webhook_deliveries",
            "counter",
            "JSON event webhook delivery attempts by event and result",
        ),
        (
            "liverelay_http_connections",
            "counter",
            "HTTP connections by kind (accepted, refused)",
        ),
        (
            "liverelay_hls_requests",
            "counter",
            "HLS requests by kind (playlist, init, segment, part) and status",
        ),
        (
            "liverelay_hls_request_duration_seconds",
            "histogram",
            "Time to answer HLS requests by kind, held time included",
        ),
        (
            "liverelay_hls_held_requests",
            "gauge",
            "HLS requests held open until what they ask for exists",
        ),
        (
            "liverelay_viewers_by_protocol",
            "gauge",
            "Viewers by protocol (rtmp, flv: plays open; hls: sessions seen within a window)",
        ),
        (
            "liverelay_viewer_egress_bytes",
            "counter",
            "Bytes sent to viewers by protocol (rtmp, flv, hls)",
        ),
    ];

    /// Gives every labelled family a series, so that it is rendered.
    fn touch(f: &Families) {
        let kind = KindLabel { kind: "accepted" };
        let reason = ReasonLabel { reason: "test" };
        let outcome = OutcomeLabel {
            action: "play",
            result: "allow",
        };
        let relay = String::from("pull:live/a:0");
        f.rtmp.connections.get_or_create(&kind).inc();
        f.rtmp.handshake_failures.get_or_create(&reason).inc();
        f.admission.sessions.get_or_create(&kind).inc();
        f.upstream.reconnects.get_or_create(&reason).inc();
        f.redis
            .op_duration
            .get_or_create(&OpLabel { op: "claim" })
            .observe(0.001);
        f.redis.errors.get_or_create(&OpLabel { op: "claim" }).inc();
        f.static_relays
            .attempts
            .get_or_create(&RelayReasonLabel {
                relay: relay.clone(),
                reason: "ended",
            })
            .inc();
        f.static_relays
            .state
            .get_or_create(&RelayStateLabel {
                relay: relay.clone(),
                state: "live",
            })
            .set(1);
        f.static_relays
            .bytes
            .get_or_create(&RelayDirectionLabel {
                relay,
                direction: "in",
            })
            .inc();
        f.auth.decisions.get_or_create(&outcome).inc();
        f.auth.notify_calls.get_or_create(&outcome).inc();
        f.webhooks.deliveries.get_or_create(&outcome).inc();
        f.http.connections.get_or_create(&kind).inc();
        f.http
            .hls_requests
            .get_or_create(&liverelay_http::HlsRequestLabel {
                kind: "part",
                status: 200,
            })
            .inc();
        f.http
            .hls_request_seconds
            .get_or_create(&KindLabel { kind: "part" })
            .observe(0.1);
    }

    #[test]
    fn every_role_exposes_every_family_under_its_name_type_and_help() {
        let mut want: Vec<String> = FAMILIES
            .iter()
            .flat_map(|(name, kind, help)| {
                [
                    format!("# HELP {name} {help}."),
                    format!("# TYPE {name} {kind}"),
                ]
            })
            .collect();
        want.sort();
        for role in [Role::Standalone, Role::Ingest, Role::Edge, Role::Control] {
            let families = Families::register(role);
            touch(&families);
            let text = families.registry.render();
            let mut got: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("# HELP ") || l.starts_with("# TYPE "))
                .collect();
            got.sort();
            assert_eq!(got, want, "{role:?}:\n{text}");
        }
    }
}

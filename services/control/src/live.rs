//! What is live, from the registry (who owns each stream) and the pods' load reports (who
//! watches it where), and which edge a new viewer should use.

use liverelay_types::Role;
use std::collections::BTreeMap;

use liverelay_redis::NodeReport;
use liverelay_registry::StreamRecord;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct LiveStream {
    pub app: String,
    pub name: String,
    /// Pod id of the ingest that owns it, and where edges pull it from.
    pub ingest: String,
    pub ingest_addr: String,
    pub started_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Incoming bitrate at the ingest.
    pub bitrate_bps: f64,
    /// Viewers over all pods.
    pub viewers: u64,
    /// Viewers per pod that serves it.
    pub edges: BTreeMap<String, u64>,
}

pub fn streams(records: Vec<StreamRecord>, reports: &[NodeReport]) -> Vec<LiveStream> {
    records
        .into_iter()
        .map(|r| {
            let path = format!("{}/{}", r.app, r.name);
            let mut edges = BTreeMap::new();
            let mut bitrate_bps = 0.0;
            for report in reports {
                let Some(load) = report.streams.get(&path) else {
                    continue;
                };
                if report.pod == r.owner {
                    bitrate_bps = load.bitrate_bps;
                }
                if load.viewers > 0 {
                    edges.insert(report.pod.clone(), load.viewers);
                }
            }
            LiveStream {
                viewers: edges.values().sum(),
                app: r.app,
                name: r.name,
                ingest: r.owner,
                ingest_addr: r.grpc_addr,
                started_at_ms: r.started_at_ms,
                video_codec: r.video_codec,
                audio_codec: r.audio_codec,
                bitrate_bps,
                edges,
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub pod: String,
    pub rtmp_url: String,
    /// `rtmp_url` with the stream's path: what a player opens.
    pub play_url: String,
    /// Viewers on that edge when chosen.
    pub viewers: u64,
}

/// The least loaded edge that is not draining (edges already serving the stream win ties, as
/// they have it at hand).
pub fn route(reports: &[NodeReport], app: &str, name: &str) -> Option<Route> {
    let path = format!("{app}/{name}");
    reports
        .iter()
        .filter(|r| r.role == Role::Edge && !r.draining)
        .min_by_key(|r| (r.viewers, !r.streams.contains_key(&path), r.pod.clone()))
        .map(|r| Route {
            pod: r.pod.clone(),
            play_url: format!("{}/{path}", r.rtmp_url.trim_end_matches('/')),
            rtmp_url: r.rtmp_url.clone(),
            viewers: r.viewers,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use liverelay_redis::StreamLoad;

    fn edge(pod: &str, viewers: u64, draining: bool, serving: bool) -> NodeReport {
        let mut streams = BTreeMap::new();
        if serving {
            streams.insert(
                "live/cam".to_string(),
                StreamLoad {
                    viewers,
                    live: true,
                    bitrate_bps: 0.0,
                },
            );
        }
        NodeReport {
            pod: pod.into(),
            role: Role::Edge,
            rtmp_url: format!("rtmp://{pod}:1935/"),
            draining,
            publishers: 0,
            viewers,
            streams,
            reported_at_ms: 0,
        }
    }

    #[test]
    fn routes_to_the_least_loaded_edge_that_is_not_draining() {
        let reports = vec![
            edge("a", 5, false, true),
            edge("b", 1, true, false),
            edge("c", 2, false, false),
        ];
        let r = route(&reports, "live", "cam").unwrap();
        assert_eq!(r.pod, "c");
        assert_eq!(r.play_url, "rtmp://c:1935/live/cam");
        let tie = vec![edge("a", 2, false, false), edge("b", 2, false, true)];
        assert_eq!(route(&tie, "live", "cam").unwrap().pod, "b");
        assert!(route(&[edge("a", 0, true, false)], "live", "cam").is_none());
    }
}

//! Pods report their load to Redis every few seconds (viewers per stream, whether they are
//! draining), so control can show who watches what and send a new viewer to the least loaded
//! edge. A report expires unless renewed: a dead pod drops out by itself.

use liverelay_types::Role;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ExpiringEntries, RedisConn, RedisError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub pod: String,
    /// `ingest`, `edge` or `standalone`.
    pub role: Role,
    /// Where players reach this pod.
    pub rtmp_url: String,
    pub draining: bool,
    pub publishers: u64,
    pub viewers: u64,
    /// Per stream (`app/name`).
    #[serde(default)]
    pub streams: BTreeMap<String, StreamLoad>,
    pub reported_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamLoad {
    pub viewers: u64,
    /// A publisher (or upstream) feeds the stream here now.
    pub live: bool,
    pub bitrate_bps: f64,
}

#[derive(Clone)]
pub struct NodeReports(ExpiringEntries);

impl NodeReports {
    /// `{prefix}:node:{pod}` entries indexed by `{prefix}:nodes`.
    pub fn new(conn: RedisConn) -> Self {
        let prefix = conn.key_prefix().to_owned();
        Self(ExpiringEntries::new(
            conn,
            format!("{prefix}:node"),
            format!("{prefix}:nodes"),
            "node_report",
        ))
    }

    /// Stores `report` for `ttl`.
    pub async fn report(&self, report: &NodeReport, ttl: Duration) -> Result<(), RedisError> {
        self.0.put(&report.pod, report, ttl).await
    }

    /// Removes `pod`'s report: the pod is leaving and must not be routed to.
    pub async fn withdraw(&self, pod: &str) -> Result<(), RedisError> {
        self.0.remove(pod).await
    }

    /// Every pod with a current report; expired ones leave the index.
    pub async fn list(&self) -> Result<Vec<NodeReport>, RedisError> {
        self.0.list().await
    }
}

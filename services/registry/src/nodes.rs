//! Pods report their load to Redis every few seconds (viewers per stream, whether they are
//! draining), so control can show who watches what and send a new viewer to the least loaded
//! edge. A report expires unless renewed: a dead pod drops out by itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{RedisConn, RegistryError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub pod: String,
    /// `ingest`, `edge` or `standalone`.
    pub role: String,
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

pub struct NodeReports {
    conn: RedisConn,
    prefix: String,
}

impl NodeReports {
    pub fn new(conn: RedisConn, key_prefix: &str) -> Self {
        Self {
            conn,
            prefix: key_prefix.to_string(),
        }
    }

    fn key(&self, pod: &str) -> String {
        format!("{}:node:{{{pod}}}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Stores `report` for `ttl`.
    pub async fn report(&self, report: &NodeReport, ttl: Duration) -> Result<(), RegistryError> {
        let json = serde_json::to_string(report).expect("reports serialize");
        self.conn
            .query::<()>(
                "node_report",
                redis::cmd("SET")
                    .arg(self.key(&report.pod))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        self.conn
            .query::<i64>(
                "node_index",
                redis::cmd("SADD").arg(self.index()).arg(&report.pod),
            )
            .await?;
        Ok(())
    }

    /// Every pod with a current report; expired ones leave the index.
    pub async fn list(&self) -> Result<Vec<NodeReport>, RegistryError> {
        let mut pods: Vec<String> = self
            .conn
            .query("node_list", redis::cmd("SMEMBERS").arg(self.index()))
            .await?;
        pods.sort();
        let mut out = Vec::new();
        for pod in pods {
            let json: Option<String> = self
                .conn
                .query("node_get", redis::cmd("GET").arg(self.key(&pod)))
                .await?;
            match json.map(|j| serde_json::from_str::<NodeReport>(&j)) {
                Some(Ok(report)) => out.push(report),
                Some(Err(e)) => {
                    tracing::warn!(pod, error = %e, "ignoring malformed node report");
                }
                None => {
                    self.conn
                        .query::<i64>("node_index", redis::cmd("SREM").arg(self.index()).arg(&pod))
                        .await?;
                }
            }
        }
        Ok(out)
    }
}

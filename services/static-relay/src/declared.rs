//! Relays declared at run time (Kubernetes `Relay` resources, through control), kept in Redis
//! beside the config file's: every pod reads the same set and the lease still decides who runs
//! each one.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}:relays:declared` | hash | source (e.g. `k8s/NAMESPACE/NAME`) → [`RelayConfig`] JSON |
//! | `{prefix}:relays:changed` | pub/sub | a message after every change (pods re-read the hash) |

use liverelay_redis::{RedisConn, RedisError};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::RelayConfig;

#[derive(Clone)]
pub struct DeclaredRelays {
    conn: RedisConn,
    prefix: String,
}

impl DeclaredRelays {
    pub fn new(conn: RedisConn) -> Self {
        Self {
            prefix: conn.key_prefix().to_owned(),
            conn,
        }
    }

    fn hash(&self) -> String {
        format!("{}:relays:declared", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:relays:changed", self.prefix)
    }

    async fn announce(&self) -> Result<(), RedisError> {
        self.conn
            .query::<i64>(
                "relays_changed",
                redis::cmd("PUBLISH").arg(self.channel()).arg("{}"),
            )
            .await
            .map(drop)
    }

    /// Declares (or replaces) the relay from `source`; announced only when it changed.
    pub async fn put(&self, source: &str, config: &RelayConfig) -> Result<(), RedisError> {
        let json = serde_json::to_string(config).expect("relay configs serialize");
        let current: Option<String> = self
            .conn
            .query(
                "relays_get",
                redis::cmd("HGET").arg(self.hash()).arg(source),
            )
            .await?;
        if current.as_deref() == Some(json.as_str()) {
            return Ok(());
        }
        self.conn
            .query::<i64>(
                "relays_put",
                redis::cmd("HSET").arg(self.hash()).arg(source).arg(json),
            )
            .await?;
        self.announce().await
    }

    pub async fn remove(&self, source: &str) -> Result<(), RedisError> {
        let removed: i64 = self
            .conn
            .query(
                "relays_remove",
                redis::cmd("HDEL").arg(self.hash()).arg(source),
            )
            .await?;
        if removed > 0 {
            self.announce().await?;
        }
        Ok(())
    }

    /// Every declared relay, by source; entries that no longer parse are logged and skipped.
    pub async fn list(&self) -> Result<Vec<(String, RelayConfig)>, RedisError> {
        let all: Vec<(String, String)> = self
            .conn
            .query("relays_list", redis::cmd("HGETALL").arg(self.hash()))
            .await?;
        let mut out: Vec<(String, RelayConfig)> = all
            .into_iter()
            .filter_map(|(source, json)| match serde_json::from_str(&json) {
                Ok(config) => Some((source, config)),
                Err(e) => {
                    warn!(source, error = %e, "ignoring a malformed declared relay");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Follows change announcements until the task is aborted.
    pub fn changes(&self) -> (broadcast::Receiver<serde_json::Value>, JoinHandle<()>) {
        let (sink, changes) = broadcast::channel(16);
        (changes, self.conn.subscribe(self.channel(), sink))
    }
}

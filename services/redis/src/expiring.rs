//! JSON entries that live only while their writer keeps rewriting them (PX TTL), with an index
//! set for listing; entries whose TTL ran out leave the index when listed. For state a pod
//! reports about itself (load reports, relay statuses): a dead pod's entries disappear.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{RedisConn, RedisError};

/// `{prefix}:{kind}:{id}` entries indexed by the set `{prefix}:{index}`.
#[derive(Clone)]
pub struct ExpiringEntries {
    conn: RedisConn,
    /// Key prefix of the entries, e.g. `liverelay:relay-status`.
    entries: String,
    index: String,
    /// Metric label of the operations.
    op: &'static str,
}

impl ExpiringEntries {
    /// `id`s are wrapped in braces (the Redis Cluster hash tag).
    pub fn new(conn: RedisConn, entries: String, index: String, op: &'static str) -> Self {
        Self {
            conn,
            entries,
            index,
            op,
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{{{id}}}", self.entries)
    }

    pub async fn put<T: Serialize>(
        &self,
        id: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let json = serde_json::to_string(value).expect("entries serialize");
        let mut set = redis::cmd("SET");
        let set = set
            .arg(self.key(id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.conn.query::<()>(self.op, set).await?;
        let mut add = redis::cmd("SADD");
        let add = add.arg(&self.index).arg(id);
        self.conn.query::<i64>(self.op, add).await?;
        Ok(())
    }

    /// Deletes `id`'s entry and its index membership at once, for a writer that leaves for good.
    pub async fn remove(&self, id: &str) -> Result<(), RedisError> {
        let mut del = redis::cmd("DEL");
        self.conn
            .query::<i64>(self.op, del.arg(self.key(id)))
            .await?;
        let mut remove = redis::cmd("SREM");
        let remove = remove.arg(&self.index).arg(id);
        self.conn.query::<i64>(self.op, remove).await?;
        Ok(())
    }

    /// Every live entry, sorted by id; malformed ones are skipped with a warning.
    pub async fn list<T: DeserializeOwned>(&self) -> Result<Vec<T>, RedisError> {
        let mut members = redis::cmd("SMEMBERS");
        let mut ids: Vec<String> = self.conn.query(self.op, members.arg(&self.index)).await?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut get = redis::cmd("GET");
            let json: Option<String> = self.conn.query(self.op, get.arg(self.key(&id))).await?;
            match json.map(|j| serde_json::from_str::<T>(&j)) {
                Some(Ok(value)) => out.push(value),
                Some(Err(e)) => {
                    tracing::warn!(id, index = %self.index, error = %e, "ignoring malformed entry")
                }
                None => {
                    let mut remove = redis::cmd("SREM");
                    let remove = remove.arg(&self.index).arg(&id);
                    self.conn.query::<i64>(self.op, remove).await?;
                }
            }
        }
        Ok(out)
    }
}

//! Stream keys in Redis. A key's secret is shown once, at creation or rotation; Redis holds
//! only its SHA-256, compared in constant time.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}:key:{id}` | string | JSON [`KeyRecord`] |
//! | `{prefix}:keyhash:{sha256}` | string | id of the key with that secret |
//! | `{prefix}:keys` | set | every key id |

use liverelay_auth::sha256_hex;
use liverelay_redis::{RedisConn, RedisError};
use liverelay_types::constant_time_eq;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub app: String,
    pub stream: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub rotated_at: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// What a publish with some secret may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(KeyRecord),
    Refused(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no such key")]
    NotFound,
    #[error(transparent)]
    Store(#[from] RedisError),
}

pub struct KeyStore {
    conn: RedisConn,
    prefix: String,
}

/// A fresh random value, hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

pub fn new_secret() -> String {
    format!("sk_{}", random_hex(24))
}

impl KeyStore {
    pub fn new(conn: RedisConn) -> Self {
        Self {
            prefix: conn.key_prefix().to_owned(),
            conn,
        }
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}:key:{id}", self.prefix)
    }

    fn hash_key(&self, hash: &str) -> String {
        format!("{}:keyhash:{hash}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}:keys", self.prefix)
    }

    async fn save(&self, record: &KeyRecord) -> Result<(), RedisError> {
        let json = serde_json::to_string(record).expect("records serialize");
        self.conn
            .query::<()>(
                "key_save",
                redis::cmd("SET").arg(self.record_key(&record.id)).arg(json),
            )
            .await
    }

    /// Creates a key; returns it with its secret.
    pub async fn create(
        &self,
        app: &str,
        stream: &str,
        expires_at: Option<u64>,
        metadata: Option<serde_json::Value>,
        now: u64,
    ) -> Result<(KeyRecord, String), KeyError> {
        let secret = new_secret();
        let record = KeyRecord {
            id: format!("key_{}", random_hex(8)),
            app: app.to_string(),
            stream: stream.to_string(),
            hash: sha256_hex(secret.as_bytes()),
            created_at: now,
            expires_at,
            rotated_at: None,
            revoked: false,
            metadata,
        };
        self.save(&record).await?;
        self.conn
            .query::<()>(
                "key_save",
                redis::cmd("SET")
                    .arg(self.hash_key(&record.hash))
                    .arg(&record.id),
            )
            .await?;
        self.conn
            .query::<i64>(
                "key_save",
                redis::cmd("SADD").arg(self.index()).arg(&record.id),
            )
            .await?;
        Ok((record, secret))
    }

    pub async fn get(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let json: Option<String> = self
            .conn
            .query("key_get", redis::cmd("GET").arg(self.record_key(id)))
            .await?;
        let json = json.ok_or(KeyError::NotFound)?;
        serde_json::from_str(&json).map_err(|e| KeyError::Store(RedisError::Corrupt(e.to_string())))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let ids: Vec<String> = self
            .conn
            .query("key_list", redis::cmd("SMEMBERS").arg(self.index()))
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(&id).await {
                Ok(record) => out.push(record),
                Err(KeyError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// A new secret for the key; the old one stops working.
    pub async fn rotate(&self, id: &str, now: u64) -> Result<(KeyRecord, String), KeyError> {
        let mut record = self.get(id).await?;
        if record.revoked {
            return Err(KeyError::NotFound);
        }
        let secret = new_secret();
        let old = std::mem::replace(&mut record.hash, sha256_hex(secret.as_bytes()));
        record.rotated_at = Some(now);
        self.conn
            .query::<i64>("key_rotate", redis::cmd("DEL").arg(self.hash_key(&old)))
            .await?;
        self.save(&record).await?;
        self.conn
            .query::<()>(
                "key_rotate",
                redis::cmd("SET")
                    .arg(self.hash_key(&record.hash))
                    .arg(&record.id),
            )
            .await?;
        Ok((record, secret))
    }

    /// The key stops working for good; its record stays (marked revoked, still found by its
    /// secret so a publisher is told why) for the audit trail.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let mut record = self.get(id).await?;
        record.revoked = true;
        self.save(&record).await?;
        Ok(record)
    }

    /// What `secret` may publish into `app`.
    pub async fn authorize(&self, app: &str, secret: &str, now: u64) -> Result<Verdict, KeyError> {
        let hash = sha256_hex(secret.as_bytes());
        let id: Option<String> = self
            .conn
            .query("key_lookup", redis::cmd("GET").arg(self.hash_key(&hash)))
            .await?;
        let Some(id) = id else {
            return Ok(Verdict::Refused("unknown stream key"));
        };
        let record = match self.get(&id).await {
            Ok(r) => r,
            Err(KeyError::NotFound) => return Ok(Verdict::Refused("unknown stream key")),
            Err(e) => return Err(e),
        };
        Ok(
            if !constant_time_eq(record.hash.as_bytes(), hash.as_bytes()) {
                Verdict::Refused("unknown stream key")
            } else if record.revoked {
                Verdict::Refused("stream key revoked")
            } else if record.expires_at.is_some_and(|t| t <= now) {
                Verdict::Refused("stream key expired")
            } else if record.app != app {
                Verdict::Refused("stream key belongs to another app")
            } else {
                Verdict::Allowed(record)
            },
        )
    }
}

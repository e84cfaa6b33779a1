//! What each relay is doing, for `GET /v1/relays` and the metrics: kept in memory by the pod
//! running it and, in a cluster, copied to Redis so any pod (and the control service) can list
//! every relay.
//!
//! Redis keys: `{prefix}:relay-status:{id}` (JSON [`RelayStatus`], PX [`STATUS_TTL`], rewritten
//! every second by the holder, so a dead holder's entry disappears; written only while the
//! writer's lease generation is the current one) and `{prefix}:relay-statuses` (set of ids, for
//! listing; ids whose entry expired are dropped when listed).

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use liverelay_redis::{ExpiringEntries, RedisConn, RedisError};
use liverelay_types::unix_ms;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::lease_store::lease_key;
use crate::metrics::{RelayDirectionLabel, RelayStateLabel, StaticRelayMetrics};
use crate::spec::RelaySpec;

/// How long a status written to Redis stays without being rewritten.
pub const STATUS_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    Connecting,
    Live,
    BackingOff,
    /// Not running here: waiting for the lease, for viewers (on-demand), for the stream to go
    /// live (push), or given up after `max_attempts`.
    Stopped,
}

impl RelayState {
    const ALL: [Self; 4] = [
        Self::Connecting,
        Self::Live,
        Self::BackingOff,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::BackingOff => "backing_off",
            Self::Stopped => "stopped",
        }
    }
}

/// One row of `GET /v1/relays`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    pub id: String,
    pub kind: String,
    /// Secrets (push stream keys, query strings) hidden.
    pub url: String,
    pub stream: String,
    pub mode: String,
    /// Pod holding the relay's lease, if any.
    pub owner: Option<String>,
    pub state: RelayState,
    pub last_error: Option<String>,
    /// Connection attempts since the holder took the relay.
    pub attempts: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub updated_at_ms: u64,
}

impl RelayStatus {
    fn new(spec: &RelaySpec) -> Self {
        Self {
            id: spec.id.clone(),
            kind: spec.kind.as_str().into(),
            url: spec.display_url(),
            stream: spec.stream.to_string(),
            mode: spec.mode.as_str().into(),
            owner: None,
            state: RelayState::Stopped,
            last_error: None,
            attempts: 0,
            bytes_in: 0,
            bytes_out: 0,
            updated_at_ms: unix_ms(),
        }
    }
}

/// The live status of one relay on this pod; updates also move its metrics.
#[derive(Clone)]
pub struct StatusCell {
    status: Arc<Mutex<RelayStatus>>,
    metrics: StaticRelayMetrics,
}

impl StatusCell {
    pub fn new(spec: &RelaySpec, metrics: StaticRelayMetrics) -> Self {
        let cell = Self {
            status: Arc::new(Mutex::new(RelayStatus::new(spec))),
            metrics,
        };
        cell.set_state(RelayState::Stopped);
        cell
    }

    pub fn get(&self) -> RelayStatus {
        self.lock().clone()
    }

    pub fn set_state(&self, state: RelayState) {
        let id = {
            let mut st = self.lock();
            st.state = state;
            st.updated_at_ms = unix_ms();
            st.id.clone()
        };
        for s in RelayState::ALL {
            self.metrics
                .state
                .get_or_create(&RelayStateLabel {
                    relay: id.clone(),
                    state: s.as_str(),
                })
                .set(i64::from(s == state));
        }
    }

    /// This pod took the relay (`Some`) or let it go (`None`).
    pub fn set_owner(&self, owner: Option<&str>) {
        let mut st = self.lock();
        st.owner = owner.map(str::to_owned);
        st.attempts = 0;
        st.last_error = None;
    }

    pub fn attempt_started(&self) {
        self.lock().attempts += 1;
        self.set_state(RelayState::Connecting);
    }

    pub fn set_error(&self, error: String) {
        self.lock().last_error = Some(error);
    }

    /// Adds what an attempt moved since its last report.
    pub fn add_bytes(&self, bytes_in: u64, bytes_out: u64) {
        let id = {
            let mut st = self.lock();
            st.bytes_in += bytes_in;
            st.bytes_out += bytes_out;
            st.id.clone()
        };
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            if n > 0 {
                self.metrics
                    .bytes
                    .get_or_create(&RelayDirectionLabel {
                        relay: id.clone(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelayStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sets the status if the lease is still generation ARGV[1]. KEYS: lease, status. ARGV:
/// generation, status JSON, ttl ms. Returns 1 if written.
static PUT_HELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if not cur or string.match(cur, '^%d+') ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
        return 1
        ",
    )
});

/// Relay statuses in the cluster's Redis.
#[derive(Clone)]
pub struct RedisRelayStatus {
    entries: ExpiringEntries,
    conn: RedisConn,
    prefix: String,
}

impl RedisRelayStatus {
    pub fn new(conn: RedisConn) -> Self {
        let key_prefix = conn.key_prefix().to_owned();
        Self {
            entries: ExpiringEntries::new(
                conn.clone(),
                format!("{key_prefix}:relay-status"),
                Self::index(&key_prefix),
                "relay_status",
            ),
            conn,
            prefix: key_prefix,
        }
    }

    fn index(key_prefix: &str) -> String {
        format!("{key_prefix}:relay-statuses")
    }

    /// Writes the status of a relay this pod holds with lease `generation`; nothing once that
    /// lease is gone, so a holder that was paused past its lease cannot overwrite its
    /// successor's status. The key is the one [`ExpiringEntries`] lists.
    pub async fn put(&self, status: &RelayStatus, generation: u64) -> Result<(), RedisError> {
        let id = &status.id;
        let json = serde_json::to_string(status).expect("statuses serialize");
        let mut invocation = PUT_HELD.key(lease_key(&self.prefix, id));
        invocation
            .key(format!("{}:relay-status:{{{id}}}", self.prefix))
            .arg(generation)
            .arg(json)
            .arg(STATUS_TTL.as_millis() as u64);
        let written: i64 = self.conn.invoke("relay_status", &invocation).await?;
        if written == 1 {
            let mut add = redis::cmd("SADD");
            let add = add.arg(Self::index(&self.prefix)).arg(id);
            self.conn.query::<i64>("relay_status", add).await?;
        }
        Ok(())
    }

    /// Every relay some pod is holding (or held within [`STATUS_TTL`]), sorted by id.
    pub async fn list(&self) -> Result<Vec<RelayStatus>, RedisError> {
        self.entries.list().await
    }
}

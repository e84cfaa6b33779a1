//! The registry in Redis (single node or Redis Cluster).
//!
//! Key layout (`{prefix}` defaults to `liverelay`; `{app/name}` is also the Redis Cluster hash
//! tag, so a stream's keys share a slot and its scripts run atomically):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}:stream:{app/name}` | string, PX lease | JSON [`StreamRecord`] of the owner |
//! | `{prefix}:gen:{app/name}` | counter, expires 24 h after the last claim | last fencing generation handed out |
//! | `{prefix}:streams` | set | `app/name` of streams believed live (index for listing) |
//! | `{prefix}:events` | pub/sub channel | JSON [`RegistryEvent`]s |

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use liverelay_hub::StreamKey;
use liverelay_metrics::{Metrics, OpLabel};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{Claim, RegistryError, RegistryEvent, Renewal, StreamRecord, StreamRegistry};

/// How long a stream's fencing counter outlives its last claim. Long enough that no old owner
/// can still be around; short enough that Redis does not keep every name ever published.
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Claims the stream unless another owner's record is live. Returns {1, record} or {0, theirs}.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if cur then
            local ok, rec = pcall(cjson.decode, cur)
            if ok and rec.owner ~= ARGV[3] then return {0, cur} end
        end
        local rec = cjson.decode(ARGV[1])
                rec.generation = redis.call('INCR', KEYS[2])
        redis.call('PEXPIRE', KEYS[2], ARGV[4])
        local json = cjson.encode(rec)
        redis.call('SET', KEYS[1], json, 'PX', ARGV[2])
        return {1, json}
        ",
    )
});

/// Extends the lease if the record is still this generation's. 1 renewed, 0 missing,
/// {-1, owner} superseded.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if not cur then return 0 end
        local rec = cjson.decode(cur)
        if rec.generation ~= tonumber(ARGV[1]) then return {-1, rec.owner} end
        if ARGV[3] ~= '' then
            local upd = cjson.decode(ARGV[3])
            upd.generation = rec.generation
            redis.call('SET', KEYS[1], cjson.encode(upd), 'PX', ARGV[2])
        else
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 1
        ",
    )
});

/// Compare-and-delete: removes the record only if it is this generation's.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if not cur then return 0 end
        local rec = cjson.decode(cur)
        if rec.generation ~= tonumber(ARGV[1]) then return 0 end
        redis.call('DEL', KEYS[1])
        return 1
        ",
    )
});

#[derive(Debug, Clone)]
pub struct RedisRegistryConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`); several for a cluster's seeds.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub key_prefix: String,
    pub lease_ttl: Duration,
    /// Each Redis operation fails after this long (Redis down must not hang a publish).
    pub op_timeout: Duration,
}

/// One connection type for both deployments, so the registry code has one path.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(p, offset, count),
            Self::Cluster(c) => c.req_packed_commands(p, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisRegistry {
    conn: Conn,
    metrics: Arc<Metrics>,
    config: RedisRegistryConfig,
    events: broadcast::Sender<RegistryEvent>,
    subscriber: JoinHandle<()>,
}

impl Drop for RedisRegistry {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(e.to_string())
}

impl RedisRegistry {
    /// Sets up the connection; a single-node client connects lazily and reconnects by itself,
    /// so the process starts (and keeps serving what it can) while Redis is down.
    pub async fn connect(
        config: RedisRegistryConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RegistryError> {
        let first = config
            .urls
            .first()
            .ok_or_else(|| unavailable("no Redis URL configured"))?
            .clone();
        let conn = if config.cluster {
            let client =
                redis::cluster::ClusterClient::new(config.urls.clone()).map_err(unavailable)?;
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = redis::Client::open(first.as_str()).map_err(unavailable)?;
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.op_timeout))
                .set_response_timeout(Some(config.op_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            Conn::Single(
                client
                    .get_connection_manager_lazy(manager)
                    .map_err(unavailable)?,
            )
        };
        let events = broadcast::channel(1024).0;
        // Any node of a cluster sees every PUBLISH, so one subscription on the first seed does.
        let subscriber = tokio::spawn(subscribe_loop(
            first,
            channel(&config.key_prefix),
            events.clone(),
        ));
        Ok(Self {
            conn,
            metrics,
            config,
            events,
            subscriber,
        })
    }

    fn record_key(&self, key: &StreamKey) -> String {
        format!("{}:stream:{{{key}}}", self.config.key_prefix)
    }

    fn gen_key(&self, key: &StreamKey) -> String {
        format!("{}:gen:{{{key}}}", self.config.key_prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:streams", self.config.key_prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.config.lease_ttl.as_millis() as u64
    }

    /// Runs one operation within the operation timeout, timing it and counting failures.
    async fn run<T>(
        &self,
        name: &'static str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RegistryError> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.config.op_timeout, op).await {
            Err(_) => Err(unavailable("Redis did not answer in time")),
            Ok(r) => r.map_err(unavailable),
        };
        let label = OpLabel { op: name };
        self.metrics
            .redis_op_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.redis_errors.get_or_create(&label).inc();
        }
        result
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &mut Cmd,
    ) -> Result<T, RegistryError> {
        let cmd = cmd.clone();
        let mut conn = self.conn.clone();
        self.run(name, cmd.query_async::<T>(&mut conn)).await
    }

    async fn announce(&self, event: &RegistryEvent) {
        let json = serde_json::to_string(event).expect("events serialize");
        let publish = self
            .query::<i64>(
                "announce",
                redis::cmd("PUBLISH")
                    .arg(channel(&self.config.key_prefix))
                    .arg(json),
            )
            .await;
        if let Err(e) = publish {
            warn!(error = %e, "could not announce registry event");
        }
    }
}

fn channel(prefix: &str) -> String {
    format!("{prefix}:events")
}

fn parse(json: &str) -> Result<StreamRecord, RegistryError> {
    serde_json::from_str(json).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

/// Keeps a pub/sub subscription alive across Redis restarts and forwards events.
async fn subscribe_loop(url: String, channel: String, events: broadcast::Sender<RegistryEvent>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(pubsub)) => {
                info!("subscribed to registry events");
                delay = Duration::from_millis(100);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<RegistryEvent>(&payload) {
                        Ok(event) => {
                            let _ = events.send(event);
                        }
                        Err(e) => warn!(error = %e, "ignoring malformed registry event"),
                    }
                }
                warn!("registry event subscription lost; reconnecting");
            }
            Ok(Err(e)) => warn!(error = %e, "cannot subscribe to registry events; retrying"),
            Err(_) => warn!("subscribing to registry events timed out; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

impl StreamRegistry for RedisRegistry {
    fn claim(&self, record: StreamRecord) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        async move {
            let key = record.key();
            let json = serde_json::to_string(&record).expect("records serialize");
            let mut conn = self.conn.clone();
            let mut invocation = CLAIM.key(self.record_key(&key));
            invocation
                .key(self.gen_key(&key))
                .arg(json)
                .arg(self.ttl_ms())
                .arg(&record.owner)
                .arg(GENERATION_TTL.as_millis() as u64);
            let (won, stored): (i64, String) = self
                .run("claim", invocation.invoke_async(&mut conn))
                .await?;
            let stored = parse(&stored)?;
            if won == 0 {
                return Err(RegistryError::Owned {
                    owner: stored.owner,
                });
            }
            self.query::<i64>(
                "index",
                redis::cmd("SADD")
                    .arg(self.index_key())
                    .arg(key.to_string()),
            )
            .await?;
            self.announce(&RegistryEvent::published(&stored)).await;
            Ok(Claim { record: stored })
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        details: Option<&'a StreamRecord>,
    ) -> BoxFuture<'a, Result<Renewal, RegistryError>> {
        async move {
            let update = details
                .map(|d| serde_json::to_string(d).expect("records serialize"))
                .unwrap_or_default();
            let mut conn = self.conn.clone();
            let mut invocation = RENEW.key(self.record_key(&claim.key()));
            invocation
                .arg(claim.generation())
                .arg(self.ttl_ms())
                .arg(update);
            let reply: Value = self
                .run("renew", invocation.invoke_async(&mut conn))
                .await?;
            Ok(match reply {
                Value::Int(1) => Renewal::Renewed,
                Value::Int(0) => Renewal::Missing,
                Value::Array(parts) => {
                    let owner = parts
                        .get(1)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                        .unwrap_or_default();
                    Renewal::Superseded { owner }
                }
                other => {
                    return Err(RegistryError::Corrupt(format!(
                        "unexpected renew reply {other:?}"
                    )));
                }
            })
        }
        .boxed()
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move {
            let key = claim.key();
            let mut conn = self.conn.clone();
            let mut invocation = RELEASE.key(self.record_key(&key));
            invocation.arg(claim.generation());
            let removed: i64 = self
                .run("release", invocation.invoke_async(&mut conn))
                .await?;
            if removed == 1 {
                self.query::<i64>(
                    "index",
                    redis::cmd("SREM")
                        .arg(self.index_key())
                        .arg(key.to_string()),
                )
                .await?;
                self.announce(&RegistryEvent::unpublished(&claim.record))
                    .await;
            }
            Ok(())
        }
        .boxed()
    }

    fn lookup<'a>(
        &'a self,
        key: &'a StreamKey,
    ) -> BoxFuture<'a, Result<Option<StreamRecord>, RegistryError>> {
        async move {
            let json: Option<String> = self
                .query("lookup", redis::cmd("GET").arg(self.record_key(key)))
                .await?;
            json.as_deref().map(parse).transpose()
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>> {
        async move {
            let mut names: Vec<String> = self
                .query("list", redis::cmd("SMEMBERS").arg(self.index_key()))
                .await?;
            names.sort();
            let mut out = Vec::new();
            for name in names {
                let Some((app, stream)) = name.split_once('/') else {
                    continue;
                };
                match self.lookup(&StreamKey::new(app, stream)).await? {
                    Some(record) => out.push(record),
                    None => {
                        // Its lease expired without a release (owner died): drop it from the index.
                        self.query::<i64>(
                            "index",
                            redis::cmd("SREM").arg(self.index_key()).arg(&name),
                        )
                        .await?;
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn events(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    fn lease_ttl(&self) -> Duration {
        self.config.lease_ttl
    }
}

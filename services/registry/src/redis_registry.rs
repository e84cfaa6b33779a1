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
//! | `{prefix}:events` | pub/sub channel | JSON [`RegistryEvent`]s: publishes and unpublishes |
//! | `{prefix}:webhook-events` | stream | `stream.started` / `stream.ended` for control's webhooks ([`WebhookQueue`]) |
//! | `{prefix}:alive:{pod}` | string, PX 1.5 s | the pod's instance id while it runs, `moving` while it drains ([`Presence`]) |
//! | `{prefix}:wants` | pub/sub channel | JSON [`RegistryEvent::Wanted`]: an edge's viewer waits (apart, so waiting viewers do not wake every pod's upstreams) |

use std::sync::LazyLock;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use liverelay_redis::{RedisConfig, RedisConn, RedisMetrics, WebhookQueue};
use liverelay_types::{AbortOnDrop, StreamId};
use redis::{Cmd, Script, Value};
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use crate::presence::{Presence, new_instance, owner_gone, take_name};
use crate::{Claim, RegistryError, RegistryEvent, Renewal, StreamRecord, StreamRegistry};

/// How long a stream's fencing counter outlives its last claim. Long enough that no old owner
/// can still be around; short enough that Redis does not keep every name ever published.
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Claims the stream unless another owner's record is live, or it is the generation ARGV[5]
/// (one whose owner was found gone: taken over only if no one claimed it since). Returns
/// {1, record} or {0, theirs}.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if cur then
            local ok, rec = pcall(cjson.decode, cur)
            local gone = ARGV[5] ~= '' and ok and rec.generation == tonumber(ARGV[5])
            if ok and rec.owner ~= ARGV[3] and not gone then return {0, cur} end
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
    /// The cluster's Redis (URLs, key prefix, operation timeout).
    pub redis: RedisConfig,
    pub lease_ttl: Duration,
}

pub struct RedisRegistry {
    conn: RedisConn,
    webhooks: WebhookQueue,
    lease_ttl: Duration,
    events: broadcast::Sender<RegistryEvent>,
    wants: broadcast::Sender<RegistryEvent>,
    /// This run of the process, written into its claims and its [`Presence`].
    instance: String,
    /// Counts the times this process's presence was found lapsed ([`Presence`]).
    lapses: watch::Sender<u64>,
    /// Following the events and wants channels, for as long as the registry lives.
    _subscribers: AbortOnDrop,
}

impl RedisRegistry {
    /// Sets up the connection (lazily for a single node: the process starts while Redis is
    /// down) and follows the events channel.
    pub async fn connect(
        config: RedisRegistryConfig,
        metrics: RedisMetrics,
    ) -> Result<Self, RegistryError> {
        let conn = RedisConn::connect(&config.redis, metrics).await?;
        Ok(Self::new(conn, config.lease_ttl))
    }

    /// The registry on an existing connection; follows the events and wants channels.
    pub fn new(conn: RedisConn, lease_ttl: Duration) -> Self {
        let events = broadcast::channel(1024).0;
        let wants = broadcast::channel(1024).0;
        let mut subscribers = AbortOnDrop::default();
        subscribers.push(&conn.subscribe(channel(conn.key_prefix()), events.clone()));
        subscribers.push(&conn.subscribe(wants_channel(conn.key_prefix()), wants.clone()));
        Self {
            webhooks: WebhookQueue::new(conn.clone()),
            conn,
            lease_ttl,
            events,
            wants,
            instance: new_instance(),
            lapses: watch::channel(0).0,
            _subscribers: subscribers,
        }
    }

    /// The registry's Redis handle, for the other cluster state kept beside it.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Starts saying that `pod` (this process) is alive, so other ingests take over its streams
    /// only once it is not. An ingest runs it for as long as it may own streams. Refuses if
    /// another running process is `pod` ([`RegistryError::DuplicatePod`]); waits up to
    /// [`PRESENCE_TTL`](crate::PRESENCE_TTL) for a gone process's key to lapse.
    pub async fn presence(&self, pod: &str) -> Result<Presence, RegistryError> {
        take_name(&self.conn, pod, &self.instance).await?;
        Ok(Presence::start(
            self.conn.clone(),
            pod,
            self.instance.clone(),
            self.lapses.clone(),
        ))
    }

    /// One run of the claim script; `over` is the generation of a record whose owner is gone.
    async fn claim_script(
        &self,
        key: &StreamId,
        record: &StreamRecord,
        over: Option<u64>,
    ) -> Result<(bool, StreamRecord), RegistryError> {
        let json = serde_json::to_string(record).expect("records serialize");
        let mut invocation = CLAIM.key(self.record_key(key));
        invocation
            .key(self.gen_key(key))
            .arg(json)
            .arg(self.ttl_ms())
            .arg(&record.owner)
            .arg(GENERATION_TTL.as_millis() as u64)
            .arg(over.map(|g| g.to_string()).unwrap_or_default());
        let (won, stored): (i64, String) = self.conn.invoke("claim", &invocation).await?;
        Ok((won == 1, parse(&stored)?))
    }

    /// Prefix of every key and channel.
    pub fn key_prefix(&self) -> &str {
        self.conn.key_prefix()
    }

    fn record_key(&self, key: &StreamId) -> String {
        format!("{}:stream:{{{key}}}", self.key_prefix())
    }

    fn gen_key(&self, key: &StreamId) -> String {
        format!("{}:gen:{{{key}}}", self.key_prefix())
    }

    fn index_key(&self) -> String {
        format!("{}:streams", self.key_prefix())
    }

    /// The first half of a release: deletes the record if it is still `claim`'s.
    async fn delete_record(&self, claim: &Claim) -> Result<bool, RegistryError> {
        let mut invocation = RELEASE.key(self.record_key(&claim.key()));
        invocation.arg(claim.generation());
        let removed: i64 = self.conn.invoke("release", &invocation).await?;
        Ok(removed == 1)
    }

    /// Takes `key` out of the listing index, unless a claim stored its record meanwhile. The
    /// index and the record are in different Redis Cluster slots, so one script cannot cover
    /// both; instead the index entry goes first and then the record is looked at. A claim writes
    /// its record before its `SADD`, so a claim whose `SADD` this `SREM` undid has its record
    /// there by the time of the look, and is indexed again: a live stream can be missing from
    /// a listing only between the two, never for good.
    async fn unindex(&self, key: &StreamId) -> Result<(), RegistryError> {
        let name = key.to_string();
        let index = self.index_key();
        self.query::<i64>("index", redis::cmd("SREM").arg(&index).arg(&name))
            .await?;
        let claimed: bool = self
            .query("index", redis::cmd("EXISTS").arg(self.record_key(key)))
            .await?;
        if claimed {
            self.query::<i64>("index", redis::cmd("SADD").arg(&index).arg(&name))
                .await?;
        }
        Ok(())
    }

    fn ttl_ms(&self) -> u64 {
        self.lease_ttl.as_millis() as u64
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &mut Cmd,
    ) -> Result<T, RegistryError> {
        Ok(self.conn.query(name, cmd).await?)
    }

    /// Tells every pod (pub/sub) and queues the webhook event, which control delivers even if
    /// it was not running when this happened.
    async fn announce(&self, event: &RegistryEvent) {
        if let Some(webhook) = event.webhook_event() {
            let queued = self
                .webhooks
                .append(&event.key().to_string(), &webhook)
                .await;
            if let Err(e) = queued {
                warn!(error = %e, id = webhook.id, "could not queue webhook event");
            }
        }
        let json = serde_json::to_string(event).expect("events serialize");
        let to = match event {
            RegistryEvent::Wanted { .. } => wants_channel(self.key_prefix()),
            _ => channel(self.key_prefix()),
        };
        let publish = self
            .query::<i64>("announce", redis::cmd("PUBLISH").arg(to).arg(json))
            .await;
        if let Err(e) = publish {
            warn!(error = %e, "could not announce registry event");
        }
    }
}

fn channel(prefix: &str) -> String {
    format!("{prefix}:events")
}

fn wants_channel(prefix: &str) -> String {
    format!("{prefix}:wants")
}

fn parse(json: &str) -> Result<StreamRecord, RegistryError> {
    serde_json::from_str(json).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

impl StreamRegistry for RedisRegistry {
    fn claim(&self, mut record: StreamRecord) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        async move {
            let key = record.key();
            record.instance = self.instance.clone();
            let (mut won, mut stored) = self.claim_script(&key, &record, None).await?;
            if !won && let Some(why) = owner_gone(&self.conn, &stored).await {
                // Fenced: the old owner, should it still run, finds itself superseded at its
                // next renewal and ends its publish.
                info!(stream = %key, owner = %stored.owner, generation = stored.generation, why, "owner gone; taking the stream over");
                (won, stored) = self
                    .claim_script(&key, &record, Some(stored.generation))
                    .await?;
            }
            if !won {
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
            let mut invocation = RENEW.key(self.record_key(&claim.key()));
            invocation
                .arg(claim.generation())
                .arg(self.ttl_ms())
                .arg(update);
            let reply: Value = self.conn.invoke("renew", &invocation).await?;
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
            if self.delete_record(claim).await? {
                self.unindex(&key).await?;
                self.announce(&RegistryEvent::unpublished(&claim.record))
                    .await;
            }
            Ok(())
        }
        .boxed()
    }

    fn lookup<'a>(
        &'a self,
        key: &'a StreamId,
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
                let Ok(id) = name.parse::<StreamId>() else {
                    continue;
                };
                match self.lookup(&id).await? {
                    Some(record) => out.push(record),
                    // Its lease expired without a release (owner died): drop it from the index.
                    None => self.unindex(&id).await?,
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn events(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    fn wants(&self) -> broadcast::Receiver<RegistryEvent> {
        self.wants.subscribe()
    }

    fn want<'a>(&'a self, key: &'a StreamId) -> BoxFuture<'a, ()> {
        async move { self.announce(&RegistryEvent::wanted(key)).await }.boxed()
    }

    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    fn presence_lapses(&self) -> Option<watch::Receiver<u64>> {
        Some(self.lapses.subscribe())
    }
}

#[cfg(test)]
mod tests;

//! One Redis handle for a single node and for Redis Cluster, with the key prefix, a
//! per-operation timeout and metrics, plus pub/sub subscriptions that survive Redis restarts.
//! Everything the cluster keeps in Redis (streams, node reports, cluster commands, stream keys,
//! relays) goes through it, so a dead Redis fails one operation quickly instead of hanging a
//! publish.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{OpLabel, RedisConfig, RedisError, RedisMetrics};

/// One connection type for both deployments, so callers have one code path.
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

/// A cheap, clonable handle on the cluster's Redis.
#[derive(Clone)]
pub struct RedisConn {
    conn: Conn,
    /// Pub/sub goes to the first URL: any node of a cluster sees every PUBLISH.
    pubsub: redis::Client,
    /// Prefix of every key and channel.
    key_prefix: String,
    op_timeout: Duration,
    webhook_queue_len: usize,
    metrics: RedisMetrics,
}

impl RedisConn {
    /// Sets up the connection; a single-node client connects lazily and reconnects by itself,
    /// so the process starts (and keeps serving what it can) while Redis is down.
    pub async fn connect(config: &RedisConfig, metrics: RedisMetrics) -> Result<Self, RedisError> {
        let RedisConfig {
            urls,
            cluster,
            key_prefix,
            op_timeout,
            tls,
            webhook_queue_len,
        } = config;
        let (cluster, op_timeout) = (*cluster, *op_timeout);
        let first = urls
            .first()
            .ok_or_else(|| RedisError::unavailable("no Redis URL configured"))?;
        tls.check_urls(urls)?;
        let pubsub = tls.client(first)?;
        let conn = if cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new(urls.to_vec());
            if let Some(certs) = tls.certificates()? {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(RedisError::unavailable)?;
            Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(RedisError::unavailable)?,
            )
        } else {
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(op_timeout))
                .set_response_timeout(Some(op_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let conn = Conn::Single(
                pubsub
                    .clone()
                    .get_connection_manager_lazy(manager)
                    .map_err(RedisError::unavailable)?,
            );
            // Lazy: nothing would say why Redis is unreachable (a refused certificate, a wrong
            // password) until the first publish fails; say it once now.
            tokio::spawn(report_reachability(conn.clone(), op_timeout));
            conn
        };
        Ok(Self {
            conn,
            pubsub,
            key_prefix: key_prefix.clone(),
            op_timeout,
            webhook_queue_len: *webhook_queue_len,
            metrics,
        })
    }

    /// Prefix of every key and channel (`redis.key_prefix`, `liverelay` by default).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// About how many webhook events the queue keeps (`redis.webhook_queue_len`).
    pub fn webhook_queue_len(&self) -> usize {
        self.webhook_queue_len
    }

    /// Runs one operation within the operation timeout, timing it and counting failures.
    async fn run<T>(
        &self,
        name: &'static str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.op_timeout, op).await {
            Err(_) => Err(RedisError::unavailable("Redis did not answer in time")),
            Ok(r) => r.map_err(RedisError::unavailable),
        };
        let label = OpLabel { op: name };
        self.metrics
            .op_duration
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.get_or_create(&label).inc();
        }
        result
    }

    /// One command; `name` labels its latency and error metrics.
    pub async fn query<T: FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        self.run(name, cmd.query_async::<T>(&mut conn)).await
    }

    /// Several commands in one round trip (not a transaction).
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        name: &'static str,
        pipe: &Pipeline,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        self.run(name, pipe.query_async::<T>(&mut conn)).await
    }

    /// One Lua script (loaded on first use).
    pub async fn invoke<T: FromRedisValue>(
        &self,
        name: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        self.run(name, invocation.invoke_async(&mut conn)).await
    }

    /// Follows a pub/sub channel of JSON messages for as long as the returned task runs,
    /// resubscribing after Redis restarts and when the connection stops answering PINGs
    /// (half-open); malformed messages are logged and skipped.
    pub fn subscribe<T>(&self, channel: String, sink: broadcast::Sender<T>) -> JoinHandle<()>
    where
        T: DeserializeOwned + Send + 'static,
    {
        tokio::spawn(subscribe_loop(self.pubsub.clone(), channel, sink))
    }
}

/// How often a subscription's connection is asked for a PING: a connection that went half-open
/// (the peer vanished without a FIN or RST: a partition, a dead node) delivers nothing and
/// reports no error, so only a question it cannot answer shows it.
const PUBSUB_PING_EVERY: Duration = Duration::from_secs(5);
const PUBSUB_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Forwards a subscription's messages until its connection closes or stops answering PINGs.
async fn follow<T: DeserializeOwned>(
    pubsub: redis::aio::PubSub,
    channel: &str,
    sink: &broadcast::Sender<T>,
) {
    let (mut commands, mut messages) = pubsub.split();
    let start = tokio::time::Instant::now() + PUBSUB_PING_EVERY;
    let mut ping = tokio::time::interval_at(start, PUBSUB_PING_EVERY);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    warn!(channel, "subscription lost; reconnecting");
                    return;
                };
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<T>(&payload) {
                    Ok(message) => {
                        let _ = sink.send(message);
                    }
                    Err(e) => warn!(channel, error = %e, "ignoring malformed message"),
                }
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(PUBSUB_PING_TIMEOUT, commands.ping::<Value>());
                match pong.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        warn!(channel, error = %e, "subscription failed a PING; reconnecting");
                        return;
                    }
                    Err(_) => {
                        warn!(channel, "subscription did not answer a PING in time (half-open connection); reconnecting");
                        return;
                    }
                }
            }
        }
    }
}

/// Logs whether Redis answers a first PING, with the reason when it does not.
async fn report_reachability(mut conn: Conn, op_timeout: Duration) {
    let ping = redis::cmd("PING");
    match tokio::time::timeout(op_timeout * 2, ping.query_async::<String>(&mut conn)).await {
        Ok(Ok(_)) => info!("Redis reachable"),
        Ok(Err(e)) => warn!(error = %e, "cannot reach Redis"),
        Err(_) => warn!("cannot reach Redis: no answer in time"),
    }
}

async fn subscribe_loop<T: DeserializeOwned>(
    client: redis::Client,
    channel: String,
    sink: broadcast::Sender<T>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(pubsub)) => {
                info!(channel, "subscribed");
                delay = Duration::from_millis(100);
                follow(pubsub, &channel, &sink).await;
            }
            Ok(Err(e)) => warn!(channel, error = %e, "cannot subscribe; retrying"),
            Err(_) => warn!(channel, "subscribing timed out; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

//! Who runs each relay: a lease per relay id with a fencing generation, in memory (standalone)
//! or in Redis (cluster). Claiming succeeds when nobody holds a live lease; renewing and
//! releasing compare the generation, so a pod whose lease ran out can neither extend nor
//! delete its successor's.
//!
//! Redis keys (`{prefix}` is `redis.key_prefix`; `{id}` is also the Cluster hash tag):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}:relay:{id}` | string `GENERATION OWNER`, PX lease | the holder |
//! | `{prefix}:relay-gen:{id}` | counter, expires a day after the last claim | last generation |

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use liverelay_redis::{RedisConn, RedisError};
use redis::Script;

pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease of `id` for `owner`; `None` while another owner holds it.
    fn claim<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, RedisError>>;

    /// Extends the lease; `false` once it is no longer this generation's.
    fn renew<'a>(&'a self, id: &'a str, generation: u64)
    -> BoxFuture<'a, Result<bool, RedisError>>;

    fn release<'a>(&'a self, id: &'a str, generation: u64)
    -> BoxFuture<'a, Result<(), RedisError>>;

    fn ttl(&self) -> Duration;
}

/// Leases of one process.
pub struct MemoryLeases {
    ttl: Duration,
    state: Mutex<HashMap<String, (u64, Option<Instant>)>>,
}

impl MemoryLeases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::new(HashMap::new()),
        }
    }
}

impl LeaseStore for MemoryLeases {
    fn claim<'a>(
        &'a self,
        id: &'a str,
        _owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, RedisError>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, expires) = state.entry(id.to_owned()).or_insert((0, None));
        let now = Instant::now();
        let result = if expires.is_some_and(|t| t > now) {
            None
        } else {
            *generation += 1;
            *expires = Some(now + self.ttl);
            Some(*generation)
        };
        async move { Ok(result) }.boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, RedisError>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let renewed = match state.get_mut(id) {
            Some((g, Some(expires))) if *g == generation && *expires > now => {
                *expires = now + self.ttl;
                true
            }
            _ => false,
        };
        async move { Ok(renewed) }.boxed()
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
    ) -> BoxFuture<'a, Result<(), RedisError>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, expires)) = state.get_mut(id)
            && *g == generation
        {
            *expires = None;
        }
        async { Ok(()) }.boxed()
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Claims unless a live lease exists. KEYS: lease, counter. ARGV: owner, ttl ms, counter ttl
/// ms. Returns the new generation, or 0.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        local gen = redis.call('INCR', KEYS[2])
        redis.call('PEXPIRE', KEYS[2], ARGV[3])
        redis.call('SET', KEYS[1], gen .. ' ' .. ARGV[1], 'PX', ARGV[2])
        return gen
        ",
    )
});

/// Runs ARGV[3] ('renew' or 'release') if the lease is still generation ARGV[1].
static FENCED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local cur = redis.call('GET', KEYS[1])
        if not cur or string.match(cur, '^%d+') ~= ARGV[1] then return 0 end
        if ARGV[3] == 'release' then
            redis.call('DEL', KEYS[1])
        else
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 1
        ",
    )
});

/// How long a relay's counter outlives its last claim: no old holder can still be around.
const GENERATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// The Redis key of relay `id`'s lease (`{id}` is the Cluster hash tag).
pub(crate) fn lease_key(prefix: &str, id: &str) -> String {
    format!("{prefix}:relay:{{{id}}}")
}

/// Leases shared by every pod through the cluster's Redis.
pub struct RedisLeases {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl RedisLeases {
    pub fn new(conn: RedisConn, ttl: Duration) -> Self {
        Self {
            prefix: conn.key_prefix().to_owned(),
            conn,
            ttl,
        }
    }

    fn key(&self, id: &str) -> String {
        lease_key(&self.prefix, id)
    }

    async fn fenced(
        &self,
        op: &'static str,
        id: &str,
        generation: u64,
    ) -> Result<bool, RedisError> {
        let mut invocation = FENCED.key(self.key(id));
        invocation
            .arg(generation)
            .arg(self.ttl.as_millis() as u64)
            .arg(op);
        let done: i64 = self.conn.invoke(op, &invocation).await?;
        Ok(done == 1)
    }
}

impl LeaseStore for RedisLeases {
    fn claim<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, RedisError>> {
        async move {
            let mut invocation = CLAIM.key(self.key(id));
            invocation
                .key(format!("{}:relay-gen:{{{id}}}", self.prefix))
                .arg(owner)
                .arg(self.ttl.as_millis() as u64)
                .arg(GENERATION_TTL.as_millis() as u64);
            let generation: u64 = self.conn.invoke("relay_claim", &invocation).await?;
            Ok((generation > 0).then_some(generation))
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
    ) -> BoxFuture<'a, Result<bool, RedisError>> {
        self.fenced("renew", id, generation).boxed()
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
    ) -> BoxFuture<'a, Result<(), RedisError>> {
        self.fenced("release", id, generation)
            .map(|r| r.map(drop))
            .boxed()
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_until_release_or_expiry() {
        let leases = MemoryLeases::new(Duration::from_millis(100));
        let g1 = leases.claim("r", "a").await.unwrap().expect("free");
        assert_eq!(leases.claim("r", "b").await.unwrap(), None);
        assert!(leases.renew("r", g1).await.unwrap());
        leases.release("r", g1).await.unwrap();
        let g2 = leases.claim("r", "b").await.unwrap().expect("released");
        assert!(g2 > g1);
        assert!(
            !leases.renew("r", g1).await.unwrap(),
            "old generation is fenced off"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!leases.renew("r", g2).await.unwrap(), "expired");
        assert!(leases.claim("r", "a").await.unwrap().is_some());
    }
}

//! The Redis registry against a real `redis-server` ([`LocalRedis`]).

use std::time::{Duration, Instant};

use super::*;
use crate::PRESENCE_TTL;
use crate::memory::tests::record;
use crate::testing::LocalRedis;

const LEASE: Duration = Duration::from_secs(5);

async fn listed_owners(registry: &RedisRegistry) -> Vec<String> {
    let listed = registry.list().await.unwrap();
    listed.into_iter().map(|r| r.owner).collect()
}

/// A release of the stream's old claim and another ingest's claim of it run at once, in the
/// worst order: the release deletes its record, the claim stores its own and indexes it, then
/// the release takes the name out of the index. The stream, live on the new owner, stays
/// listed; a release with no claim behind it does take it out.
#[tokio::test]
async fn a_release_racing_a_new_claim_keeps_the_stream_listed() {
    let redis = LocalRedis::start("index-race").await;
    let registry = RedisRegistry::new(redis.conn().await, LEASE);
    let old = registry.claim(record("ingest-a")).await.unwrap();
    assert_eq!(listed_owners(&registry).await, ["ingest-a"]);

    assert!(registry.delete_record(&old).await.unwrap());
    let new = registry.claim(record("ingest-b")).await.unwrap();
    registry.unindex(&old.key()).await.unwrap();
    assert_eq!(
        listed_owners(&registry).await,
        ["ingest-b"],
        "the new owner's stream is listed"
    );

    registry.release(&new).await.unwrap();
    assert!(listed_owners(&registry).await.is_empty());
    let index: Vec<String> = redis
        .conn()
        .await
        .query("test", redis::cmd("SMEMBERS").arg("test:streams"))
        .await
        .unwrap();
    assert!(
        index.is_empty(),
        "released names leave the index: {index:?}"
    );
}

/// A second process presenting itself as a pod that runs is refused, once the first's key
/// outlived what a dead process could leave; after the first process is gone its name is free
/// again (a pod restarted under its name starts).
#[tokio::test]
async fn a_second_process_with_a_running_pods_id_is_refused() {
    let redis = LocalRedis::start("duplicate-pod").await;
    let first = RedisRegistry::new(redis.conn().await, LEASE);
    let presence = first.presence("ingest-a").await.unwrap();

    let second = RedisRegistry::new(redis.conn().await, LEASE);
    let asked = Instant::now();
    let refused = second.presence("ingest-a").await.err();
    assert!(
        matches!(&refused, Some(RegistryError::DuplicatePod { pod, .. }) if pod == "ingest-a"),
        "{refused:?}"
    );
    assert!(
        asked.elapsed() >= PRESENCE_TTL,
        "refused only once a dead run's key would be gone"
    );
    second
        .presence("ingest-b")
        .await
        .expect("another pod id is free");

    drop(presence);
    let restarted = RedisRegistry::new(redis.conn().await, LEASE);
    restarted
        .presence("ingest-a")
        .await
        .expect("the name is free once its process is gone");
}

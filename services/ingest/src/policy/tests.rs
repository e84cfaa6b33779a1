//! `IngestPolicy` against the in-memory registry, on tokio's paused clock: lease renewals and
//! the codec summary's ticks run as soon as the test waits, without real sleeps.

use std::time::Duration;

use futures::FutureExt;
use liverelay_registry::{Claim, MemoryRegistry, RegistryEvent, Renewal};
use liverelay_rtmp::{Media, MediaKind};
use tokio::sync::broadcast;

use super::*;

const TTL: Duration = Duration::from_secs(3);
/// Longer than anything these tests wait for (virtual time: the clock is paused).
const WAIT: Duration = Duration::from_secs(30);

fn key() -> StreamId {
    StreamId::new("live", "cam")
}

fn policy(registry: Arc<dyn StreamRegistry>, hub: &Hub) -> IngestPolicy {
    IngestPolicy {
        registry,
        hub: hub.clone(),
        pod_id: "ingest-a".into(),
        grpc_addr: "10.0.0.1:50051".into(),
        allow_play: false,
        metrics: LeaseMetrics::default(),
    }
}

fn memory() -> Arc<MemoryRegistry> {
    Arc::new(MemoryRegistry::new(TTL))
}

fn record(owner: &str) -> StreamRecord {
    StreamRecord {
        app: "live".into(),
        name: "cam".into(),
        owner: owner.into(),
        grpc_addr: format!("{owner}:50051"),
        started_at_ms: 0,
        generation: 0,
        video_codec: None,
        audio_codec: None,
        instance: String::new(),
    }
}

async fn next_event(events: &mut broadcast::Receiver<RegistryEvent>) -> RegistryEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a registry event within the wait")
        .expect("the event channel is open")
}

fn refusal(result: Result<Box<dyn Ticket>, Refusal>) -> Refusal {
    match result {
        Ok(_) => panic!("the publish was accepted"),
        Err(refusal) => refusal,
    }
}

#[tokio::test(start_paused = true)]
async fn a_publish_claims_the_stream_and_dropping_the_ticket_releases_it() {
    let registry = memory();
    let hub = Hub::new(Default::default());
    let policy = policy(registry.clone(), &hub);
    let mut events = registry.events();

    let ticket = policy.publish(key()).await.expect("publish accepted");
    let live = registry.lookup(&key()).await.unwrap().expect("claimed");
    assert_eq!(live.owner, "ingest-a");
    assert_eq!(
        live.grpc_addr, "10.0.0.1:50051",
        "edges must find the relay"
    );
    assert_eq!(live.generation, 1);
    assert!(matches!(
        next_event(&mut events).await,
        RegistryEvent::Published { generation: 1, .. }
    ));

    // Held past several lease times while the ticket lives.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(
        registry.lookup(&key()).await.unwrap().map(|r| r.generation),
        Some(1),
        "the lease is renewed while the ticket is held"
    );

    drop(ticket);
    assert!(matches!(
        next_event(&mut events).await,
        RegistryEvent::Unpublished { generation: 1, .. }
    ));
    assert_eq!(registry.lookup(&key()).await.unwrap(), None, "released");
}

#[tokio::test(start_paused = true)]
async fn a_stream_live_on_another_pod_is_refused_with_bad_name() {
    let registry = memory();
    let hub = Hub::new(Default::default());
    let policy = policy(registry.clone(), &hub);
    let theirs = registry.claim(record("ingest-b")).await.unwrap();

    let refused = refusal(policy.publish(key()).await);
    assert_eq!(refused.code, "NetStream.Publish.BadName");
    assert!(
        refused.description.contains("ingest-b"),
        "names the owner: {}",
        refused.description
    );
    assert_eq!(
        registry.lookup(&key()).await.unwrap(),
        Some(theirs.record),
        "the owner's record is untouched"
    );
}

/// Says no to everything, as a registry does while Redis is unreachable.
struct Unavailable;

impl StreamRegistry for Unavailable {
    fn claim(&self, _: StreamRecord) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        async { Err(RegistryError::Unavailable("connection refused".into())) }.boxed()
    }
    fn renew<'a>(
        &'a self,
        _: &'a Claim,
        _: Option<&'a StreamRecord>,
    ) -> BoxFuture<'a, Result<Renewal, RegistryError>> {
        async { Err(RegistryError::Unavailable("connection refused".into())) }.boxed()
    }
    fn release<'a>(&'a self, _: &'a Claim) -> BoxFuture<'a, Result<(), RegistryError>> {
        async { Err(RegistryError::Unavailable("connection refused".into())) }.boxed()
    }
    fn lookup<'a>(
        &'a self,
        _: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<StreamRecord>, RegistryError>> {
        async { Err(RegistryError::Unavailable("connection refused".into())) }.boxed()
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>> {
        async { Err(RegistryError::Unavailable("connection refused".into())) }.boxed()
    }
    fn events(&self) -> broadcast::Receiver<RegistryEvent> {
        broadcast::channel(1).1
    }
    fn wants(&self) -> broadcast::Receiver<RegistryEvent> {
        broadcast::channel(1).1
    }
    fn want<'a>(&'a self, _: &'a StreamId) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
    fn lease_ttl(&self) -> Duration {
        TTL
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_registry_refuses_the_publish_as_denied() {
    let hub = Hub::new(Default::default());
    let policy = policy(Arc::new(Unavailable), &hub);
    let refused = refusal(policy.publish(key()).await);
    assert_eq!(refused.code, "NetStream.Publish.Denied");
    assert!(
        refused.description.contains("try again"),
        "{}",
        refused.description
    );
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_revokes_the_ticket_with_the_new_owner() {
    let registry = memory();
    let hub = Hub::new(Default::default());
    let policy = policy(registry.clone(), &hub);
    let ticket = policy.publish(key()).await.expect("publish accepted");
    let mut revoked = ticket.revoked().expect("an ingest ticket can be revoked");

    // Renewals go on and nothing is revoked while the lease is ours.
    assert!(
        tokio::time::timeout(TTL * 3, &mut revoked).await.is_err(),
        "revoked while the lease was held"
    );

    // Our lease ran out (as while this pod was cut off) and another pod claimed the stream.
    let ours = registry.lookup(&key()).await.unwrap().unwrap();
    registry.release(&Claim { record: ours }).await.unwrap();
    let theirs = registry.claim(record("ingest-b")).await.unwrap();

    let reason = tokio::time::timeout(WAIT, &mut revoked)
        .await
        .expect("revoked at the next renewal");
    assert_eq!(reason, "stream taken over by ingest-b");
    drop(ticket);
    // Let the dropped lease's release (spawned) run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        registry.lookup(&key()).await.unwrap(),
        Some(theirs.record),
        "the old owner's drop does not release the new owner's record"
    );
}

#[tokio::test(start_paused = true)]
async fn codecs_of_the_publish_are_written_to_the_record() {
    let registry = memory();
    let hub = Hub::new(Default::default());
    let policy = policy(registry.clone(), &hub);
    let mut publisher = hub.publish(key()).unwrap();
    let _ticket = policy.publish(key()).await.expect("publish accepted");
    let live = registry.lookup(&key()).await.unwrap().unwrap();
    assert_eq!((live.video_codec, live.audio_codec), (None, None));

    // AVC and AAC sequence headers.
    publisher.push(Media {
        kind: MediaKind::Video,
        timestamp: 0,
        payload: (&[0x17u8, 0, 0, 0, 0, 1, 0x64][..]).into(),
    });
    publisher.push(Media {
        kind: MediaKind::Audio,
        timestamp: 0,
        payload: (&[0xAFu8, 0, 0x12, 0x10][..]).into(),
    });
    let codecs = async {
        loop {
            let record = registry.lookup(&key()).await.unwrap().unwrap();
            if record.video_codec.is_some() {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let record = tokio::time::timeout(WAIT, codecs)
        .await
        .expect("codecs reach the record");
    assert_eq!(record.video_codec.as_deref(), Some("h264"));
    assert_eq!(record.audio_codec.as_deref(), Some("aac"));
    assert_eq!(record.owner, "ingest-a");
    assert_eq!(record.generation, 1, "the same claim, renewed with details");
}

#[tokio::test]
async fn plays_on_an_ingest_are_for_edges_unless_allowed() {
    let hub = Hub::new(Default::default());
    let mut policy = policy(memory(), &hub);
    let refused = refusal(policy.play(key()).await);
    assert_eq!(refused.code, "NetStream.Play.Failed");
    policy.allow_play = true;
    assert!(policy.play(key()).await.is_ok());
}

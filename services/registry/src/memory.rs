//! The registry of a single process: what standalone mode uses, and the reference behaviour
//! the Redis registry is tested against.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use liverelay_types::StreamId;
use tokio::sync::broadcast;

use crate::{Claim, RegistryError, RegistryEvent, Renewal, StreamRecord, StreamRegistry};

struct Entry {
    record: StreamRecord,
    expires: Instant,
}

pub struct MemoryRegistry {
    ttl: Duration,
    state: Mutex<State>,
    events: broadcast::Sender<RegistryEvent>,
    wants: broadcast::Sender<RegistryEvent>,
}

#[derive(Default)]
struct State {
    streams: HashMap<StreamId, Entry>,
    generations: HashMap<StreamId, u64>,
}

impl MemoryRegistry {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::new(State::default()),
            events: broadcast::channel(1024).0,
            wants: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, state: &mut State, key: &StreamId) -> Option<StreamRecord> {
        match state.streams.get(key) {
            Some(e) if e.expires > Instant::now() => Some(e.record.clone()),
            Some(_) => {
                state.streams.remove(key);
                None
            }
            None => None,
        }
    }
}

impl StreamRegistry for MemoryRegistry {
    fn claim(&self, mut record: StreamRecord) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        let result = {
            let mut st = self.lock();
            let key = record.key();
            match self.live(&mut st, &key) {
                Some(cur) if cur.owner != record.owner => {
                    Err(RegistryError::Owned { owner: cur.owner })
                }
                _ => {
                    let generation = st.generations.entry(key.clone()).or_insert(0);
                    *generation += 1;
                    record.generation = *generation;
                    st.streams.insert(
                        key,
                        Entry {
                            record: record.clone(),
                            expires: Instant::now() + self.ttl,
                        },
                    );
                    Ok(Claim { record })
                }
            }
        };
        if let Ok(claim) = &result {
            let _ = self.events.send(RegistryEvent::published(&claim.record));
        }
        async move { result }.boxed()
    }

    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        details: Option<&'a StreamRecord>,
    ) -> BoxFuture<'a, Result<Renewal, RegistryError>> {
        let mut st = self.lock();
        let renewal = match self.live(&mut st, &claim.key()) {
            None => Renewal::Missing,
            Some(cur) if cur.generation != claim.generation() => {
                Renewal::Superseded { owner: cur.owner }
            }
            Some(_) => {
                let entry = st.streams.get_mut(&claim.key()).expect("live above");
                entry.expires = Instant::now() + self.ttl;
                if let Some(d) = details {
                    entry.record = StreamRecord {
                        generation: claim.generation(),
                        ..d.clone()
                    };
                }
                Renewal::Renewed
            }
        };
        async move { Ok(renewal) }.boxed()
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), RegistryError>> {
        let removed = {
            let mut st = self.lock();
            let key = claim.key();
            match st.streams.get(&key) {
                Some(e) if e.record.generation == claim.generation() => {
                    st.streams.remove(&key).is_some()
                }
                _ => false,
            }
        };
        if removed {
            let _ = self.events.send(RegistryEvent::unpublished(&claim.record));
        }
        async { Ok(()) }.boxed()
    }

    fn lookup<'a>(
        &'a self,
        key: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<StreamRecord>, RegistryError>> {
        let found = self.live(&mut self.lock(), key);
        async move { Ok(found) }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>> {
        let mut st = self.lock();
        let now = Instant::now();
        st.streams.retain(|_, e| e.expires > now);
        let mut all: Vec<StreamRecord> = st.streams.values().map(|e| e.record.clone()).collect();
        all.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
        async move { Ok(all) }.boxed()
    }

    fn events(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    fn wants(&self) -> broadcast::Receiver<RegistryEvent> {
        self.wants.subscribe()
    }

    fn want<'a>(&'a self, key: &'a StreamId) -> BoxFuture<'a, ()> {
        let _ = self.wants.send(RegistryEvent::wanted(key));
        async {}.boxed()
    }

    fn lease_ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(owner: &str) -> StreamRecord {
        StreamRecord {
            app: "live".into(),
            name: "test".into(),
            owner: owner.into(),
            grpc_addr: format!("{owner}:50051"),
            started_at_ms: 1,
            generation: 0,
            video_codec: None,
            audio_codec: None,
            instance: String::new(),
        }
    }

    #[tokio::test]
    async fn one_owner_fencing_and_expiry() {
        let reg = MemoryRegistry::new(Duration::from_millis(200));
        let mut events = reg.events();
        let a = reg.claim(record("a")).await.unwrap();
        assert_eq!(a.generation(), 1);
        assert_eq!(
            reg.claim(record("b")).await,
            Err(RegistryError::Owned { owner: "a".into() })
        );
        assert_eq!(reg.renew(&a, None).await, Ok(Renewal::Renewed));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let b = reg.claim(record("b")).await.unwrap();
        assert_eq!(b.generation(), 2, "a new claim gets a new fencing number");
        assert_eq!(
            reg.renew(&a, None).await,
            Ok(Renewal::Superseded { owner: "b".into() })
        );
        reg.release(&a).await.unwrap();
        assert_eq!(
            reg.lookup(&b.key()).await.unwrap().unwrap().owner,
            "b",
            "an old owner cannot delete"
        );
        reg.release(&b).await.unwrap();
        assert_eq!(reg.lookup(&b.key()).await, Ok(None));
        assert!(matches!(
            events.recv().await.unwrap(),
            RegistryEvent::Published { generation: 1, .. }
        ));
        assert!(matches!(
            events.recv().await.unwrap(),
            RegistryEvent::Published { generation: 2, .. }
        ));
        assert!(matches!(
            events.recv().await.unwrap(),
            RegistryEvent::Unpublished { generation: 2, .. }
        ));
    }
}

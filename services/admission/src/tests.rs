//! The gate against the in-memory hub, with fake access checks and policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use liverelay_hub::{Hub, HubConfig, HubError, Publisher};
use liverelay_metrics::KindLabel;
use liverelay_rtmp::command::code;
use liverelay_rtmp::session::PublishKind;
use liverelay_types::{Refusal, StreamId, StreamPolicy, Ticket};
use tokio::sync::oneshot;

use crate::*;

/// Counts how many of its tickets are alive.
#[derive(Clone, Default)]
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn ticket(&self, revoked: Option<oneshot::Receiver<String>>) -> Box<dyn Ticket> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::new(Counted {
            alive: self.clone(),
            revoked: std::sync::Mutex::new(revoked),
        })
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct Counted {
    alive: Alive,
    revoked: std::sync::Mutex<Option<oneshot::Receiver<String>>>,
}

impl Ticket for Counted {
    fn revoked(&self) -> Option<BoxFuture<'static, String>> {
        let rx = self.revoked.lock().unwrap().take()?;
        Some(Box::pin(async move { rx.await.unwrap_or_default() }))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.alive.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct FakePolicy {
    no_publishers: bool,
    refuse: bool,
    asked: AtomicUsize,
    tickets: Alive,
    /// Handed to the next ticket as its revocation.
    revoke: std::sync::Mutex<Option<oneshot::Receiver<String>>>,
}

impl FakePolicy {
    fn answer(&self) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let answer = if self.refuse {
            Err(Refusal {
                code: "Policy.Code",
                description: "registry unavailable".into(),
            })
        } else {
            Ok(self.tickets.ticket(self.revoke.lock().unwrap().take()))
        };
        Box::pin(async move { answer })
    }
}

impl StreamPolicy for FakePolicy {
    fn refuses_publishers(&self) -> Option<Refusal> {
        self.no_publishers.then(|| Refusal {
            code: "Edge.Code",
            description: "edges take no publishers".into(),
        })
    }

    fn publish(&self, _: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        self.answer()
    }

    fn play(&self, _: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        self.answer()
    }
}

/// Renames `secret` to `public` (as a stream key does) with tag `key1`, refuses `bad`, and
/// names `evil` `a/b`.
#[derive(Default)]
struct FakeAccess {
    asked: AtomicUsize,
    tickets: Alive,
}

impl Access for FakeAccess {
    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ticket = self.tickets.ticket(None);
        let answer = match attempt.name.as_str() {
            "bad" => Err(Refusal {
                code: "Access.Code",
                description: "no such key".into(),
            }),
            name => Ok(Admission {
                name: match name {
                    "secret" => "public".into(),
                    "evil" => "a/b".into(),
                    other => other.into(),
                },
                tag: Some("key1".into()),
                ticket,
                ..Admission::unchanged(&attempt)
            }),
        };
        Box::pin(async move { answer })
    }
}

struct World {
    hub: Hub,
    policy: Arc<FakePolicy>,
    access: Arc<FakeAccess>,
    sessions: Sessions,
    metrics: AdmissionMetrics,
    gate: Gate,
}

fn world(policy: FakePolicy, hub: HubConfig) -> World {
    let hub = Hub::new(hub);
    let policy = Arc::new(policy);
    let access = Arc::new(FakeAccess::default());
    let sessions = Sessions::default();
    let metrics = AdmissionMetrics::default();
    let gate = Gate::new(hub.clone(), policy.clone()).with_clients(Clients {
        access: access.clone(),
        sessions: sessions.clone(),
        metrics: metrics.clone(),
        max_name_len: 64,
    });
    World {
        hub,
        policy,
        access,
        sessions,
        metrics,
        gate,
    }
}

fn client(id: u64) -> Arc<ClientInfo> {
    Arc::new(ClientInfo {
        id,
        addr: "127.0.0.1:1".parse().unwrap(),
        app: "live".into(),
        connect_query: None,
        flash_ver: None,
        swf_url: None,
        tc_url: None,
        page_url: None,
        connected_at_ms: 0,
    })
}

fn ask<'a>(id: u64, name: &str, plays: Option<&'a mut PlayBudget>) -> Asker<'a> {
    Asker::Client(ClientAsk {
        client: Some(client(id)),
        name: name.into(),
        args: None,
        plays,
    })
}

fn cam() -> StreamId {
    StreamId::new("live", "public")
}

async fn publish(w: &World, id: u64, name: &str) -> Result<Admitted<Publisher>, Refused> {
    w.gate.publish(ask(id, name, None), PublishKind::Live).await
}

fn started(w: &World, kind: &'static str) -> u64 {
    w.metrics.sessions.get_or_create(&KindLabel { kind }).get()
}

#[tokio::test]
async fn a_client_publish_holds_slot_tickets_and_entry_until_dropped() {
    let w = world(FakePolicy::default(), HubConfig::default());
    let admitted = publish(&w, 1, "secret").await.unwrap();
    assert_eq!(admitted.stream(), &cam(), "the name access chose");
    assert!(w.hub.is_live(&cam()));
    assert_eq!((w.policy.tickets.count(), w.access.tickets.count()), (1, 1));
    let listed = w.sessions.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].role, SessionRole::Publisher);
    assert_eq!(listed[0].tag.as_deref(), Some("key1"));
    assert_eq!(listed[0].name, "public");
    assert_eq!(started(&w, "publish"), 1);

    drop(admitted);
    assert!(!w.hub.is_live(&cam()), "the hub slot is free again");
    assert_eq!((w.policy.tickets.count(), w.access.tickets.count()), (0, 0));
    assert!(w.sessions.list().is_empty());
    assert!(publish(&w, 2, "secret").await.is_ok());
}

#[tokio::test]
async fn publish_refusals_come_in_order_and_leave_nothing_held() {
    let edge = world(
        FakePolicy {
            no_publishers: true,
            ..FakePolicy::default()
        },
        HubConfig::default(),
    );
    let refused = publish(&edge, 1, "secret").await.err().unwrap();
    assert!(matches!(refused.reason(), Reason::NoPublishers(_)));
    assert_eq!(refused.status().code, "Edge.Code");
    assert_eq!(refused.why(), "role takes no publishers");
    assert_eq!(edge.access.asked.load(Ordering::SeqCst), 0, "before access");

    let w = world(FakePolicy::default(), HubConfig::default());
    let unconnected = Asker::Client(ClientAsk {
        client: None,
        name: "secret".into(),
        args: None,
        plays: None,
    });
    let refused = w
        .gate
        .publish(unconnected, PublishKind::Live)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status().code, code::PUBLISH_DENIED);
    assert_eq!(refused.status().description, "not connected");
    assert_eq!(refused.why(), "refused by access");

    let refused = publish(&w, 1, "bad").await.err().unwrap();
    assert_eq!(refused.status().code, "Access.Code");
    assert_eq!(refused.why(), "refused by access");
    assert_eq!(refused.stream(), None);

    let refused = publish(&w, 1, "evil").await.err().unwrap();
    assert!(matches!(refused.reason(), Reason::InvalidName(_)));
    assert_eq!(refused.status().code, code::PUBLISH_BAD_NAME);
    assert!(
        refused
            .status()
            .description
            .starts_with("access chose an invalid")
    );
    assert_eq!(
        w.access.tickets.count(),
        0,
        "access's ticket went with the refusal"
    );

    // The local hub before the policy: a local duplicate never asks it.
    let first = publish(&w, 1, "secret").await.unwrap();
    let asked = w.policy.asked.load(Ordering::SeqCst);
    let refused = publish(&w, 2, "secret").await.err().unwrap();
    assert!(matches!(
        refused.reason(),
        Reason::Hub(HubError::AlreadyPublishing(_))
    ));
    assert_eq!(refused.stream(), Some(&cam()));
    let status = refused.status();
    assert_eq!(status.code, code::PUBLISH_BAD_NAME);
    assert_eq!(status.description, "live/public is already being published");
    assert_eq!(refused.why(), "stream is already live");
    assert_eq!(
        refused.to_string(),
        "stream live/public is already being published"
    );
    assert_eq!(w.policy.asked.load(Ordering::SeqCst), asked);
    assert_eq!(w.access.tickets.count(), 1, "only the first publish's");
    assert_eq!(w.sessions.list().len(), 1);
    drop(first);

    let registry_down = world(
        FakePolicy {
            refuse: true,
            ..FakePolicy::default()
        },
        HubConfig::default(),
    );
    let refused = publish(&registry_down, 1, "secret").await.err().unwrap();
    assert_eq!(refused.why(), "refused by policy");
    assert_eq!(refused.stream(), Some(&cam()));
    assert_eq!(refused.to_string(), "registry unavailable");
    assert!(
        !registry_down.hub.is_live(&cam()),
        "the hub slot was let go"
    );
    assert_eq!(registry_down.access.tickets.count(), 0);
    assert!(registry_down.sessions.list().is_empty());
    assert_eq!(started(&registry_down, "publish"), 0);
}

#[tokio::test]
async fn play_refusals_come_in_order_and_leave_nothing_held() {
    let w = world(FakePolicy::default(), HubConfig::default());
    let mut budget = PlayBudget::new(1, 0);
    let play = w
        .gate
        .play(ask(1, "secret", Some(&mut budget)), PlayArgs::default())
        .await
        .unwrap();
    let asked = w.access.asked.load(Ordering::SeqCst);
    let refused = w
        .gate
        .play(ask(1, "secret", Some(&mut budget)), PlayArgs::default())
        .await
        .err()
        .unwrap();
    assert_eq!(refused.why(), "too many plays");
    assert_eq!(refused.status().code, code::PLAY_FAILED);
    assert_eq!(w.access.asked.load(Ordering::SeqCst), asked, "budget first");
    drop(play);

    let refused = w
        .gate
        .play(ask(1, "evil", None), PlayArgs::default())
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status().code, code::PLAY_BAD_NAME);
    assert_eq!(refused.stream(), None);

    // The policy before the hub: a refused play never made a waiting stream.
    let refusing = world(
        FakePolicy {
            refuse: true,
            ..FakePolicy::default()
        },
        HubConfig::default(),
    );
    let refused = refusing
        .gate
        .play(ask(1, "secret", None), PlayArgs::default())
        .await
        .err()
        .unwrap();
    assert_eq!(refused.why(), "refused by policy");
    assert!(refusing.hub.streams().is_empty());

    let full = world(
        FakePolicy::default(),
        HubConfig {
            max_waiting_streams: 0,
            ..HubConfig::default()
        },
    );
    let refused = full
        .gate
        .play(ask(1, "secret", None), PlayArgs::default())
        .await
        .err()
        .unwrap();
    assert_eq!(refused.why(), "stream limit reached");
    assert_eq!(refused.status().code, code::PLAY_FAILED);
    assert_eq!(
        (full.policy.tickets.count(), full.access.tickets.count()),
        (0, 0)
    );
    assert_eq!(started(&full, "play"), 0);
}

#[tokio::test]
async fn revocation_and_kicks_reach_the_holder() {
    let (revoke, revoked) = oneshot::channel();
    let policy = FakePolicy::default();
    *policy.revoke.lock().unwrap() = Some(revoked);
    let w = world(policy, HubConfig::default());
    let mut publishing = publish(&w, 1, "secret").await.unwrap();
    assert_eq!(publishing.withdrawn().now_or_never(), None);
    revoke.send("stream taken over".into()).unwrap();
    assert_eq!(publishing.withdrawn().await, "stream taken over");
    assert_eq!(publishing.withdrawn().now_or_never(), None, "said once");

    let mut playing = w
        .gate
        .play(ask(2, "secret", None), PlayArgs::default())
        .await
        .unwrap();
    let (viewer, withdrawn) = playing.split();
    assert!(viewer.is_live());
    assert_eq!(withdrawn.now_or_never(), None);
    let kicked = w
        .sessions
        .kick(|s| s.role == SessionRole::Viewer, "dropped");
    assert_eq!(kicked, 1);
    assert_eq!(playing.withdrawn().await, "dropped");
}

#[tokio::test]
async fn a_second_play_of_a_client_replaces_its_entry() {
    let w = world(FakePolicy::default(), HubConfig::default());
    let first = w
        .gate
        .play(ask(1, "one", None), PlayArgs::default())
        .await
        .unwrap();
    let second = w
        .gate
        .play(ask(1, "two", None), PlayArgs::default())
        .await
        .unwrap();
    drop(first);
    let listed = w.sessions.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "two");
    assert_eq!(started(&w, "play"), 2);
    drop(second);
    assert!(w.sessions.list().is_empty());
}

#[tokio::test]
async fn the_process_own_publishers_skip_access_and_the_table() {
    // An edge's upstream publishes locally although the edge takes no client publishers.
    let w = world(
        FakePolicy {
            no_publishers: true,
            ..FakePolicy::default()
        },
        HubConfig::default(),
    );
    let mut local = w
        .gate
        .publish(Asker::Local(cam()), PublishKind::Live)
        .await
        .unwrap();
    assert!(w.hub.is_live(&cam()));
    assert_eq!(w.access.asked.load(Ordering::SeqCst), 0);
    assert_eq!(w.policy.tickets.count(), 1);
    assert!(w.sessions.list().is_empty());
    assert_eq!(started(&w, "publish"), 0);
    assert_eq!(local.withdrawn().now_or_never(), None);
    drop(local);
    assert_eq!(w.policy.tickets.count(), 0);

    // A gate without clients lets none in.
    let own = Gate::new(w.hub.clone(), w.policy.clone());
    let refused = own
        .play(ask(1, "secret", None), PlayArgs::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(refused.reason(), Reason::NotConnected));
    assert!(own.connect(client(1)).await.is_err());
}

#[tokio::test]
async fn connect_checks_the_app_access_moves_to() {
    struct Move(&'static str);
    impl Access for Move {
        fn connect(
            &self,
            _: Arc<ClientInfo>,
        ) -> BoxFuture<'static, Result<Option<String>, Refusal>> {
            let app = self.0.to_string();
            Box::pin(async move { Ok(Some(app)) })
        }
        fn admit(&self, a: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
            Box::pin(async move { Ok(Admission::unchanged(&a)) })
        }
    }
    let gate = |app| {
        Gate::new(
            Hub::new(HubConfig::default()),
            Arc::new(liverelay_types::OpenPolicy),
        )
        .with_clients(Clients {
            access: Arc::new(Move(app)),
            sessions: Sessions::default(),
            metrics: AdmissionMetrics::default(),
            max_name_len: 64,
        })
    };
    assert_eq!(
        gate("other").connect(client(1)).await.unwrap().as_deref(),
        Some("other")
    );
    let refused = gate("a/b").connect(client(1)).await.err().unwrap();
    assert_eq!(refused.code, code::CONNECT_REJECTED);
}

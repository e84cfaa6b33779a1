//! The upstream's failover machine driven by hand: time is made up, the jitter fixed, and
//! every action checked. No tokio, no tonic, no registry.

use std::time::{Duration, Instant};

use super::machine::{
    Action, Config, Event, Lookup, Owner, Reason, UpstreamMachine, VIEWER_CHECK_INTERVAL,
    WANT_INTERVAL,
};

const LINGER: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn published(owner: &str, generation: u64) -> Event {
    Event::Published {
        owner: owner.into(),
        generation,
    }
}

fn owner(pod: &str) -> Owner {
    Owner {
        pod: pod.into(),
        addr: format!("{pod}:7000"),
        generation: 1,
    }
}

/// A machine, its clock and its viewers, with the jitter fixed at the top of the range (each
/// backoff delay is its full step: 100 ms, 200 ms, … 2 s).
struct Upstream {
    machine: UpstreamMachine,
    now: Instant,
    viewers: u64,
}

impl Upstream {
    fn new() -> Self {
        let now = Instant::now();
        let config = Config {
            linger: LINGER,
            reconnect_window: WINDOW,
        };
        Self {
            machine: UpstreamMachine::new(config, now, Box::new(|| 1.0)),
            now,
            viewers: 1,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Feeds an event now; returns the actions it led to (answering local publishes as the
    /// hub would: started).
    fn feed(&mut self, event: Event) -> Vec<Action> {
        self.machine.handle(self.now, event);
        self.drain()
    }

    /// A tick now, with the current viewers.
    fn tick(&mut self) -> Vec<Action> {
        self.machine.handle_timeout(self.now, self.viewers);
        self.drain()
    }

    /// Moves the clock to the machine's deadline and ticks.
    fn tick_at_deadline(&mut self) -> Vec<Action> {
        let at = self.machine.poll_timeout().expect("a deadline");
        assert!(at >= self.now, "deadlines do not go back");
        self.now = at;
        self.tick()
    }

    fn wait_left(&self) -> Duration {
        self.machine.poll_timeout().expect("waiting") - self.now
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.machine.poll_action() {
            if action == Action::StartPublish {
                self.machine.handle(self.now, Event::PublishStarted);
            }
            out.push(action);
        }
        out
    }

    /// From the first tick to a live local publish fed by `pod`.
    fn stream_from(&mut self, pod: &str) {
        assert_eq!(self.tick_at_deadline(), [Action::LookUp]);
        self.subscribe_to(pod);
        assert_eq!(self.feed(Event::Header), [Action::StartPublish]);
        assert_eq!(self.feed(Event::Frame), []);
    }

    fn subscribe_to(&mut self, pod: &str) {
        assert_eq!(
            self.feed(Event::LookedUp(Lookup::Owner(owner(pod)))),
            [Action::Subscribe(owner(pod))]
        );
        assert_eq!(self.feed(Event::Subscribed), []);
    }
}

#[test]
fn failover_to_a_new_owner_restarts_the_local_timeline() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    up.advance(ms(500));
    assert_eq!(
        up.feed(Event::Broken("connection reset".into())),
        [Action::CountReconnect(Reason::Broken)],
        "the local publish is kept"
    );
    assert_eq!(up.wait_left(), ms(100), "first backoff step");
    assert_eq!(up.tick_at_deadline(), [Action::LookUp]);
    // The old owner's record is still there and its relay is gone.
    assert_eq!(
        up.feed(Event::LookedUp(Lookup::Owner(owner("ingest-a")))),
        [Action::Subscribe(owner("ingest-a"))]
    );
    assert_eq!(
        up.feed(Event::SubscribeFailed("connection refused".into())),
        [Action::CountReconnect(Reason::SubscribeFailed)]
    );
    assert_eq!(up.wait_left(), ms(200), "the backoff doubles");
    assert_eq!(up.tick_at_deadline(), [Action::LookUp]);
    up.subscribe_to("ingest-b");
    assert_eq!(
        up.feed(Event::Header),
        [Action::RestartSource],
        "the new source continues the local timeline, which never ended"
    );
    assert_eq!(up.feed(Event::Frame), []);
    // The outage is over: the reconnect window no longer applies, and media resets the backoff.
    up.advance(WINDOW * 2);
    assert_eq!(up.tick(), []);
    assert_eq!(
        up.feed(Event::Broken("again".into())),
        [Action::CountReconnect(Reason::Broken)]
    );
    assert_eq!(up.wait_left(), ms(100));
}

#[test]
fn a_publisher_restart_on_the_ingest_restarts_the_local_timeline() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    assert_eq!(up.feed(Event::Restarted), [Action::RestartSource]);
}

#[test]
fn linger_closes_after_the_linger_without_viewers_and_not_before() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    assert_eq!(
        up.wait_left(),
        Duration::ZERO,
        "viewers are counted at once"
    );
    assert_eq!(up.tick(), []);
    assert_eq!(up.wait_left(), VIEWER_CHECK_INTERVAL);

    up.viewers = 0;
    let left = up.now + VIEWER_CHECK_INTERVAL;
    while up.machine.poll_timeout().unwrap() - left < LINGER {
        assert_eq!(up.tick_at_deadline(), [], "still lingering");
    }
    // A viewer comes back during the linger: it starts again after they leave.
    up.viewers = 1;
    assert_eq!(up.tick_at_deadline(), []);
    up.viewers = 0;
    let left = up.machine.poll_timeout().unwrap();
    loop {
        let actions = up.tick_at_deadline();
        if up.now - left < LINGER {
            assert_eq!(
                actions,
                [],
                "closed {:?} after the last viewer",
                up.now - left
            );
        } else {
            assert_eq!(actions, [Action::Close]);
            break;
        }
    }
    assert_eq!(
        up.machine.poll_timeout(),
        None,
        "closed: nothing more to wait for"
    );
    up.advance(LINGER);
    up.viewers = 1;
    assert_eq!(up.tick(), []);
    assert_eq!(up.feed(published("ingest-b", 1)), []);
}

#[test]
fn linger_also_runs_while_the_stream_is_live_nowhere() {
    let mut up = Upstream::new();
    up.viewers = 0;
    let started = up.now;
    loop {
        match up.tick_at_deadline().as_slice() {
            [Action::LookUp] => {
                assert!(up.now - started < LINGER);
                assert_eq!(
                    up.feed(Event::LookedUp(Lookup::NotLive)),
                    [],
                    "nothing is wanted without a viewer"
                );
                assert_eq!(up.wait_left(), WANT_INTERVAL);
            }
            [Action::Close] => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(up.now - started, LINGER);
}

#[test]
fn the_reconnect_window_ends_the_local_publish_when_no_source_returns() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    let broke = up.now;
    up.feed(Event::Broken("gone".into()));
    loop {
        let actions = up.tick_at_deadline();
        if up.now - broke < WINDOW {
            assert_eq!(
                actions,
                [Action::LookUp],
                "kept {:?} after the break",
                up.now - broke
            );
        } else {
            assert_eq!(
                actions,
                [Action::EndPublish, Action::LookUp],
                "ended when the window has passed, checked between attempts"
            );
            assert!(up.now - broke < WINDOW + ms(2000));
            break;
        }
        // The dead owner's record lingers, then the stream is live nowhere.
        if up.now - broke < ms(1500) {
            up.feed(Event::LookedUp(Lookup::Owner(owner("ingest-a"))));
            up.feed(Event::SubscribeFailed("refused".into()));
        } else {
            up.feed(Event::LookedUp(Lookup::NotLive));
        }
    }
    // A source coming back later starts a new local publish.
    up.subscribe_to("ingest-b");
    assert_eq!(up.feed(Event::Header), [Action::StartPublish]);
}

#[test]
fn a_publish_announced_during_the_backoff_resubscribes_at_once() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    up.feed(Event::Broken("gone".into()));
    // Back off to the cap with a dead owner.
    for _ in 0..6 {
        up.tick_at_deadline();
        up.feed(Event::LookedUp(Lookup::Owner(owner("ingest-a"))));
        up.feed(Event::SubscribeFailed("refused".into()));
    }
    assert_eq!(up.wait_left(), ms(2000));
    up.advance(ms(300));
    assert_eq!(up.feed(published("ingest-b", 1)), []);
    assert_eq!(up.wait_left(), Duration::ZERO, "the wait ends at once");
    assert_eq!(up.tick(), [Action::LookUp]);
    up.subscribe_to("ingest-b");
    assert_eq!(up.feed(Event::Header), [Action::RestartSource]);
}

#[test]
fn a_publish_announced_while_streaming_ends_the_next_wait_at_once() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    // The new owner claimed before this edge saw its subscription break.
    assert_eq!(up.feed(published("ingest-b", 1)), []);
    up.feed(Event::Broken("gone".into()));
    assert_eq!(up.wait_left(), Duration::ZERO);
    assert_eq!(up.tick(), [Action::LookUp]);
    // Used up: the next wait is a full backoff step.
    up.feed(Event::LookedUp(Lookup::Owner(owner("ingest-a"))));
    up.feed(Event::SubscribeFailed("refused".into()));
    assert_eq!(up.wait_left(), ms(200));
}

/// A hung owner's subscription stays open until the relay's keepalive gives up; a newer
/// publish announced meanwhile moves the upstream at once, and the viewers stay on.
#[test]
fn a_newer_publish_announced_while_streaming_moves_the_upstream_at_once() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    assert_eq!(
        up.feed(published("ingest-a", 2)),
        [],
        "a republish on the same ingest comes through the subscription"
    );
    assert_eq!(
        up.feed(published("ingest-b", 2)),
        [Action::CountReconnect(Reason::Moved), Action::Unsubscribe]
    );
    assert_eq!(up.wait_left(), Duration::ZERO);
    assert_eq!(up.tick(), [Action::LookUp]);
    let mut moved = owner("ingest-b");
    moved.generation = 2;
    assert_eq!(
        up.feed(Event::LookedUp(Lookup::Owner(moved.clone()))),
        [Action::Subscribe(moved)]
    );
    up.feed(Event::Subscribed);
    assert_eq!(
        up.feed(Event::Header),
        [Action::RestartSource],
        "viewers stay on"
    );
    // The same publish announced again does not move it.
    assert_eq!(up.feed(published("ingest-b", 2)), []);
}

#[test]
fn lagged_registry_events_are_caught_by_the_lookup_at_the_end_of_the_wait() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    up.feed(Event::Broken("gone".into()));
    up.tick_at_deadline();
    up.feed(Event::LookedUp(Lookup::NotLive));
    assert_eq!(up.wait_left(), WANT_INTERVAL);
    up.advance(ms(100));
    // Missed events may have held this stream's publish: no tight loop of lookups, but the
    // stream is looked up again when the wait ends.
    for _ in 0..100 {
        assert_eq!(up.feed(Event::RegistryLagged), []);
    }
    assert_eq!(up.wait_left(), ms(900), "the wait is not cut short");
    assert_eq!(up.tick(), [], "nor ended by a tick before its deadline");
    assert_eq!(up.tick_at_deadline(), [Action::LookUp]);
    up.subscribe_to("ingest-b");
    assert_eq!(up.feed(Event::Header), [Action::RestartSource]);
}

#[test]
fn a_clean_end_ends_the_local_publish_at_once() {
    let mut up = Upstream::new();
    up.stream_from("ingest-a");
    up.advance(ms(700));
    assert_eq!(
        up.feed(Event::End),
        [Action::EndPublish],
        "ended without waiting for the window, and not counted as a reconnect"
    );
    assert_eq!(up.wait_left(), Duration::ZERO, "looked up again at once");
    assert_eq!(up.tick(), [Action::LookUp]);
    // The record outlived the publish by a moment.
    up.feed(Event::LookedUp(Lookup::Owner(owner("ingest-a"))));
    assert_eq!(up.feed(Event::EndedOnIngest), []);
    assert_eq!(
        up.wait_left(),
        ms(1000),
        "at least a second before asking again"
    );
    up.tick_at_deadline();
    up.subscribe_to("ingest-a");
    assert_eq!(
        up.feed(Event::Header),
        [Action::StartPublish],
        "a new publish"
    );
}

#[test]
fn wants_are_announced_at_most_once_per_interval_and_only_with_viewers() {
    let mut up = Upstream::new();
    let mut wants = Vec::new();
    let started = up.now;
    while up.now - started < ms(4500) {
        // Publish events of this stream (say, of a publish that fails at once) wake the
        // upstream every 250 ms.
        let actions = if up.wait_left() > ms(250) {
            up.advance(ms(250));
            up.feed(published("ingest-b", 1));
            up.tick()
        } else {
            up.tick_at_deadline()
        };
        assert_eq!(actions, [Action::LookUp]);
        if up.feed(Event::LookedUp(Lookup::NotLive)) == [Action::AnnounceWant] {
            wants.push(up.now - started);
        }
    }
    assert_eq!(wants, [ms(0), ms(1000), ms(2000), ms(3000), ms(4000)]);

    up.viewers = 0;
    up.tick_at_deadline();
    assert_eq!(up.feed(Event::LookedUp(Lookup::NotLive)), []);
}

#[test]
fn a_refused_local_publish_is_retried_with_the_next_frame() {
    let mut up = Upstream::new();
    up.tick_at_deadline();
    up.subscribe_to("ingest-a");
    up.machine.handle(up.now, Event::Header);
    assert_eq!(up.machine.poll_action(), Some(Action::StartPublish));
    up.machine
        .handle(up.now, Event::PublishRefused("too many streams".into()));
    up.machine.handle(up.now, Event::Frame);
    assert_eq!(up.machine.poll_action(), Some(Action::StartPublish));
    up.machine
        .handle(up.now, Event::PublishRefused("too many streams".into()));
    assert_eq!(up.feed(Event::Frame), [Action::StartPublish]);
    assert_eq!(up.feed(Event::Frame), [], "started: no more attempts");
    assert_eq!(up.feed(Event::Restarted), [Action::RestartSource]);
}

#[test]
fn registry_failures_back_off_to_two_seconds_with_the_injected_jitter() {
    let config = Config {
        linger: LINGER,
        reconnect_window: WINDOW,
    };
    let now = Instant::now();
    let mut machine = UpstreamMachine::new(config, now, Box::new(|| 0.0));
    let mut waits = Vec::new();
    let mut t = now;
    for _ in 0..7 {
        machine.handle_timeout(t, 1);
        assert_eq!(machine.poll_action(), Some(Action::LookUp));
        machine.handle(t, Event::LookedUp(Lookup::Failed("timed out".into())));
        assert_eq!(
            machine.poll_action(),
            Some(Action::CountReconnect(Reason::RegistryUnavailable))
        );
        let until = machine.poll_timeout().unwrap();
        waits.push(until - t);
        t = until;
    }
    // The lower half of each step: 100 ms doubling to the 2 s cap.
    assert_eq!(
        waits,
        [50, 100, 200, 400, 800, 1000, 1000].map(ms),
        "jitter 0 picks the bottom of each step"
    );
}

//! The failover machine of one upstream, without I/O (the quinn-proto shape): events go in
//! ([`UpstreamMachine::handle`], [`UpstreamMachine::handle_timeout`]), actions come out
//! ([`UpstreamMachine::poll_action`]) and so does the next deadline
//! ([`UpstreamMachine::poll_timeout`]).
//!
//! It decides when to look the stream up, whom to subscribe to, when the local publish starts,
//! restarts its timeline (a new source) or ends (a clean end, or no source within the reconnect
//! window), when viewers' wait is announced, and when the upstream closes (no viewers for the
//! linger time). It never reads a clock, sleeps, draws random numbers of its own or touches
//! the registry, the relay or the hub: time comes in with every call, the backoff's jitter is
//! injected, and the task in [`super::task`] performs the actions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use liverelay_backoff::Backoff;
use tracing::{info, warn};

/// How often at most an upstream announces that its viewers wait for a stream; also how long
/// it waits between lookups of a stream that is live nowhere.
pub const WANT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a running subscription checks whether the stream still has viewers here.
pub const VIEWER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The least wait after an ingest answered that the stream is not there (its record outlived
/// the publish by a moment): wait for the next publish rather than hammer the ingest.
const ENDED_ON_INGEST_WAIT: Duration = Duration::from_secs(1);

/// The jitter of the backoff: each call gives a number in `[0, 1]`.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long the upstream outlives its last viewer.
    pub linger: Duration,
    /// How long after a break the local publish is kept while no new source arrives.
    pub reconnect_window: Duration,
}

/// The ingest that owns the stream, as the registry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its pod id.
    pub pod: String,
    /// Its relay's address (host:port).
    pub addr: String,
    /// The registry's fencing generation of the claim.
    pub generation: u64,
}

/// The answer to [`Action::LookUp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Owner(Owner),
    /// Live nowhere.
    NotLive,
    /// The registry did not answer.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LookedUp(Lookup),
    /// The subscription asked for by [`Action::Subscribe`] is open.
    Subscribed,
    /// The ingest answered that it does not have the stream.
    EndedOnIngest,
    SubscribeFailed(String),
    /// The subscription's header (metadata, sequence headers, GOP) arrived: a new source. Its
    /// cached frames follow as [`Event::Frame`]s.
    Header,
    Frame,
    /// The publisher restarted on the ingest: a new source on the same subscription.
    Restarted,
    /// The publisher stopped (a clean end of stream).
    End,
    /// The subscription ended without an end of stream.
    Broken(String),
    /// The registry announced a publish of this stream: its owner (pod id) and fencing
    /// generation.
    Published {
        owner: String,
        generation: u64,
    },
    /// Registry events were missed.
    RegistryLagged,
    /// The answer to [`Action::StartPublish`].
    PublishStarted,
    PublishRefused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look the stream up in the registry; answer with [`Event::LookedUp`].
    LookUp,
    /// Subscribe over the relay; answer with [`Event::Subscribed`], [`Event::EndedOnIngest`]
    /// or [`Event::SubscribeFailed`], then feed what the subscription brings.
    Subscribe(Owner),
    /// Publish into the local hub; answer with [`Event::PublishStarted`] or
    /// [`Event::PublishRefused`].
    StartPublish,
    /// The local publish goes on with a new source: a new timeline base after the last
    /// timestamp sent (`Publisher::restart_source`).
    RestartSource,
    /// Drop the relay subscription (its owner was superseded).
    Unsubscribe,
    /// End the local publish (viewers are told the stream ended).
    EndPublish,
    /// Tell the registry that viewers here wait for the stream.
    AnnounceWant,
    /// Count a reconnect (`liverelay_relay_reconnects_total{reason}`).
    CountReconnect(Reason),
    /// The upstream is done: drop the subscription and the local publish.
    Close,
}

/// Why an upstream reconnects (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    RegistryUnavailable,
    SubscribeFailed,
    Broken,
    /// A newer publish of the stream took over from the one followed.
    Moved,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Self::RegistryUnavailable => "registry_unavailable",
            Self::SubscribeFailed => "subscribe_failed",
            Self::Broken => "broken",
            Self::Moved => "moved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between attempts: the stream is looked up at `until`, or at once on a publish event.
    Waiting {
        until: Instant,
    },
    LookingUp,
    Subscribing,
    /// Media flows; the viewers are counted at `next_check`.
    Streaming {
        next_check: Instant,
    },
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalPublish {
    Off,
    /// [`Action::StartPublish`] is out; `first` when a new source asked for it (a refusal is
    /// logged), not a retry with a frame.
    Starting {
        first: bool,
    },
    Live,
}

pub struct UpstreamMachine {
    config: Config,
    state: State,
    actions: VecDeque<Action>,
    backoff: Backoff,
    jitter: Jitter,
    /// The owner of the last lookup (what the subscription is, or was, to).
    owner: Option<Owner>,
    /// The local publish viewers read from; kept across failovers.
    local: LocalPublish,
    /// A source arrived but the local publish could not start yet: retried with each frame.
    source_pending: bool,
    /// Viewers at the last tick.
    viewers: u64,
    idle_since: Option<Instant>,
    /// When the current outage began (upstream broke without an end of stream).
    broken_since: Option<Instant>,
    /// A publish of this stream was announced while no wait ran: the next wait ends at once.
    published: bool,
    /// When this upstream last announced that its viewers want the stream.
    wanted_at: Option<Instant>,
}

impl UpstreamMachine {
    /// A new upstream, which looks the stream up at its first tick (at `now`).
    pub fn new(config: Config, now: Instant, jitter: Jitter) -> Self {
        info!("upstream started");
        Self {
            config,
            state: State::Waiting { until: now },
            actions: VecDeque::new(),
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            jitter,
            owner: None,
            local: LocalPublish::Off,
            source_pending: false,
            viewers: 0,
            idle_since: None,
            broken_since: None,
            published: false,
            wanted_at: None,
        }
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None` while a lookup or a
    /// subscribe is out (its answer moves the machine on) and once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { until } => Some(until),
            State::Streaming { next_check } => Some(next_check),
            State::LookingUp | State::Subscribing | State::Closed => None,
        }
    }

    /// A tick: the time and the number of local viewers of the stream.
    pub fn handle_timeout(&mut self, now: Instant, viewers: u64) {
        self.viewers = viewers;
        match self.state {
            State::Waiting { until } if now >= until => {
                if self.idle_expired(now) {
                    return self.close();
                }
                self.expire_outage(now);
                self.state = State::LookingUp;
                self.actions.push_back(Action::LookUp);
            }
            State::Streaming { next_check } if now >= next_check => {
                if self.idle_expired(now) {
                    return self.close();
                }
                self.state = State::Streaming {
                    next_check: now + VIEWER_CHECK_INTERVAL,
                };
            }
            _ => {}
        }
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match (self.state, event) {
            // A newer publish on another ingest replaced the one this upstream follows (its
            // owner was taken over: killed, hung or draining). A hung owner's subscription may
            // stay open until the relay's keepalive gives up, so it is not waited for: the
            // upstream moves at once, keeping the local publish as in any outage. (A republish
            // on the same ingest comes through the subscription as a restart.)
            (State::Streaming { .. }, Event::Published { owner, generation })
                if self
                    .owner
                    .as_ref()
                    .is_some_and(|o| o.generation < generation && o.pod != owner) =>
            {
                info!(
                    generation,
                    "a newer publish of the stream took over; moving to it"
                );
                self.count(Reason::Moved);
                self.actions.push_back(Action::Unsubscribe);
                self.broken_since.get_or_insert(now);
                self.state = State::Waiting { until: now };
            }
            (_, Event::Published { .. }) => match &mut self.state {
                State::Waiting { until } => *until = (*until).min(now),
                _ => self.published = true,
            },
            // Missed events may include this stream's publish: the lookup at the end of the
            // current wait finds it. Ending the wait at once would make every lagging upstream
            // query the registry in a tight loop.
            (_, Event::RegistryLagged) => {}
            (State::LookingUp, Event::LookedUp(lookup)) => match lookup {
                Lookup::Failed(error) => {
                    self.count(Reason::RegistryUnavailable);
                    warn!(error = %error, "looking up the stream failed; retrying");
                    let delay = self.next_backoff();
                    self.wait(now, delay);
                }
                Lookup::NotLive => {
                    // Not live anywhere (yet, or any more): ask for it (an on-demand pull may
                    // bring it in) and wait for a publish announcement.
                    self.want(now);
                    self.wait(now, WANT_INTERVAL);
                }
                Lookup::Owner(owner) => {
                    self.state = State::Subscribing;
                    self.owner = Some(owner.clone());
                    self.actions.push_back(Action::Subscribe(owner));
                }
            },
            (State::Subscribing, Event::Subscribed) => {
                if let Some(o) = &self.owner {
                    info!(owner = %o.pod, addr = %o.addr, generation = o.generation, "subscribed");
                }
                self.state = State::Streaming { next_check: now };
            }
            (State::Subscribing, Event::EndedOnIngest) => {
                if let Some(o) = &self.owner {
                    info!(owner = %o.pod, "stream ended on its ingest; waiting for a new publish");
                }
                let delay = self.next_backoff().max(ENDED_ON_INGEST_WAIT);
                self.wait(now, delay);
            }
            (State::Subscribing, Event::SubscribeFailed(error)) => {
                self.count(Reason::SubscribeFailed);
                if let Some(o) = &self.owner {
                    warn!(owner = %o.pod, addr = %o.addr, error = %error, "subscribe failed; retrying");
                }
                let delay = self.next_backoff();
                self.wait(now, delay);
            }
            (State::Streaming { .. }, Event::Header | Event::Restarted) => {
                self.backoff.reset();
                self.start_source();
            }
            (State::Streaming { .. }, Event::Frame) => {
                self.backoff.reset();
                if self.local == LocalPublish::Off && self.source_pending {
                    // The local publish could not start (the hub's stream limit was reached,
                    // say): try again rather than drop the stream for good.
                    self.local = LocalPublish::Starting { first: false };
                    self.actions.push_back(Action::StartPublish);
                }
            }
            (State::Streaming { .. }, Event::End) => {
                self.backoff.reset();
                info!("publisher stopped");
                self.end_publish();
                self.source_pending = false;
                self.broken_since = None;
                // Straight back to a lookup, as after any attempt, but without a wait.
                self.state = State::Waiting { until: now };
            }
            (State::Streaming { .. }, Event::Broken(error)) => {
                self.count(Reason::Broken);
                warn!(error = %error, "upstream broke; re-resolving");
                self.broken_since.get_or_insert(now);
                let delay = self.next_backoff();
                self.wait(now, delay);
            }
            (_, Event::PublishStarted) => {
                if let LocalPublish::Starting { .. } = self.local {
                    self.local = LocalPublish::Live;
                    self.source_pending = false;
                }
            }
            (_, Event::PublishRefused(error)) => {
                if let LocalPublish::Starting { first } = self.local {
                    if first {
                        warn!(error = %error, "cannot publish the pulled stream locally yet; retrying with the next frame");
                    }
                    self.local = LocalPublish::Off;
                    self.source_pending = true;
                }
            }
            // Answers that come too late for the state (none do from the task, which answers
            // each action before it feeds anything else).
            _ => {}
        }
    }

    /// A new source (first subscription, failover, publisher restart on the ingest): the local
    /// publish goes on with a new timeline base, or starts.
    fn start_source(&mut self) {
        self.broken_since = None;
        match self.local {
            LocalPublish::Live => self.actions.push_back(Action::RestartSource),
            LocalPublish::Off => {
                self.local = LocalPublish::Starting { first: true };
                self.actions.push_back(Action::StartPublish);
            }
            LocalPublish::Starting { .. } => {}
        }
    }

    fn end_publish(&mut self) {
        if self.local != LocalPublish::Off {
            self.local = LocalPublish::Off;
            self.actions.push_back(Action::EndPublish);
        }
    }

    /// Waits `delay` before the next lookup, or not at all when a publish of the stream was
    /// announced since the last wait.
    fn wait(&mut self, now: Instant, delay: Duration) {
        let until = if std::mem::take(&mut self.published) {
            now
        } else {
            now + delay
        };
        self.state = State::Waiting { until };
    }

    fn next_backoff(&mut self) -> Duration {
        let unit = (self.jitter)();
        self.backoff.next_delay_jittered(unit)
    }

    /// Announces that viewers wait for the stream: only while one does (not during the linger
    /// after the last left) and at most once per [`WANT_INTERVAL`], however often the machine
    /// comes round.
    fn want(&mut self, now: Instant) {
        let due = self
            .wanted_at
            .is_none_or(|t| now.saturating_duration_since(t) >= WANT_INTERVAL);
        if due && self.viewers > 0 {
            self.wanted_at = Some(now);
            self.actions.push_back(Action::AnnounceWant);
        }
    }

    fn count(&mut self, reason: Reason) {
        self.actions.push_back(Action::CountReconnect(reason));
    }

    fn idle_expired(&mut self, now: Instant) -> bool {
        if self.viewers > 0 {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert(now);
        now.saturating_duration_since(since) >= self.config.linger
    }

    /// After the reconnect window, an outage becomes an unpublish for the viewers.
    fn expire_outage(&mut self, now: Instant) {
        if self
            .broken_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.config.reconnect_window)
        {
            warn!("no new source within the reconnect window; ending the stream for viewers");
            self.end_publish();
            self.broken_since = None;
        }
    }

    fn close(&mut self) {
        info!("upstream closed: no viewers");
        self.state = State::Closed;
        self.actions.push_back(Action::Close);
    }
}

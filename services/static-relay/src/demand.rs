//! When an on-demand pull should run: someone plays its stream here (announced by the role's
//! policy as the play is admitted, so a player that leaves again at once still counts; a
//! viewer that did not come through the policy, such as an edge's subscription, is seen in
//! the hub's viewer count) or an edge announces it wants it ([`RegistryEvent::Wanted`],
//! repeated every second while its viewer waits).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use liverelay_hub::Hub;
use liverelay_registry::RegistryEvent;
use liverelay_types::{Refusal, StreamId, StreamPolicy, Ticket};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// How often the hub's viewer count is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Plays announced at once; a receiver that falls further behind misses some and relies on
/// the viewer count (a flood of plays must not start every on-demand pull).
const PLAYS_BUFFERED: usize = 1024;

/// The role's policy, announcing to the on-demand pulls every play it is asked about.
pub(crate) struct AnnouncingPolicy {
    pub inner: Arc<dyn StreamPolicy>,
    pub plays: broadcast::Sender<StreamId>,
}

impl AnnouncingPolicy {
    pub fn channel() -> broadcast::Sender<StreamId> {
        broadcast::channel(PLAYS_BUFFERED).0
    }
}

impl StreamPolicy for AnnouncingPolicy {
    fn refuses_publishers(&self) -> Option<Refusal> {
        self.inner.refuses_publishers()
    }

    fn publish(&self, id: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        self.inner.publish(id)
    }

    fn play(&self, id: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        // No receiver (no on-demand pull running) is not an error.
        let _ = self.plays.send(id.clone());
        self.inner.play(id)
    }
}

pub(crate) struct Demand {
    hub: Hub,
    key: StreamId,
    events: Option<broadcast::Receiver<RegistryEvent>>,
    plays: Option<broadcast::Receiver<StreamId>>,
}

impl Demand {
    pub fn new(
        hub: Hub,
        key: StreamId,
        events: Option<broadcast::Receiver<RegistryEvent>>,
        plays: broadcast::Receiver<StreamId>,
    ) -> Self {
        Self {
            hub,
            key,
            events,
            plays: Some(plays),
        }
    }

    /// Returns once the stream is wanted.
    pub async fn wanted(&mut self) {
        while self.hub.viewer_count(&self.key) == 0 {
            if self.wanted_within(POLL).await {
                return;
            }
        }
    }

    /// Returns once nobody wanted the stream for `linger`.
    pub async fn idle(&mut self, linger: Duration) {
        let mut idle_since = None;
        loop {
            let wanted = self.wanted_within(POLL).await;
            if wanted || self.hub.viewer_count(&self.key) > 0 {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= linger {
                return;
            }
        }
    }

    /// Waits up to `limit` for a play or a Wanted announcement of this stream.
    async fn wanted_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return false,
                event = next(&mut self.events) => match event {
                    Ok(RegistryEvent::Wanted { app, name })
                        if app == self.key.app && name == self.key.name =>
                    {
                        return true;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => self.events = None,
                },
                played = next(&mut self.plays) => match played {
                    Ok(id) if id == self.key => return true,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => self.plays = None,
                },
            }
        }
    }
}

/// The next message of `rx`; never, once it is gone.
async fn next<T: Clone>(rx: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

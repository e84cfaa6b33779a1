//! When an on-demand pull should run: someone plays its stream here (in a cluster: an edge's
//! subscription, which is a viewer of this pod's hub) or an edge announces it wants it
//! ([`RegistryEvent::Wanted`], repeated every second while its viewer waits).

use std::time::Duration;

use liverelay_hub::Hub;
use liverelay_registry::RegistryEvent;
use liverelay_types::StreamId;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How often the hub's viewer count is looked at.
const POLL: Duration = Duration::from_millis(200);

pub(crate) struct Demand {
    hub: Hub,
    key: StreamId,
    events: Option<broadcast::Receiver<RegistryEvent>>,
}

impl Demand {
    pub fn new(
        hub: Hub,
        key: StreamId,
        events: Option<broadcast::Receiver<RegistryEvent>>,
    ) -> Self {
        Self { hub, key, events }
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

    /// Waits up to `limit` for a Wanted announcement of this stream.
    async fn wanted_within(&mut self, limit: Duration) -> bool {
        let Some(events) = &mut self.events else {
            tokio::time::sleep(limit).await;
            return false;
        };
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return false,
                Ok(Ok(RegistryEvent::Wanted { app, name }))
                    if app == self.key.app && name == self.key.name =>
                {
                    return true;
                }
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    self.events = None;
                    return false;
                }
            }
        }
    }
}

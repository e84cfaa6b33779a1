//! What a role decides about publishes and plays beyond the local hub: the ingest claims the
//! stream in the cluster registry, the edge starts pulling it, standalone allows everything.

use futures::future::BoxFuture;

use crate::StreamId;

/// Why a publish or play was refused, as the RTMP status the client receives.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `onStatus` code, e.g. `NetStream.Publish.BadName`.
    pub code: &'static str,
    pub description: String,
}

/// Held for as long as the publish or play lasts; dropping it undoes what the policy did
/// (releases the registry claim, lets the upstream linger and close).
pub trait Ticket: Send {
    /// A future that resolves with a reason when the right to go on is withdrawn (e.g.
    /// another pod took over the stream); asked for once per session. `None` (the default):
    /// never withdrawn, and nothing to poll on every wakeup of the connection.
    fn revoked(&self) -> Option<BoxFuture<'static, String>> {
        None
    }
}

impl Ticket for () {}

/// Several tickets held together: revoked when any one of them is.
impl Ticket for Vec<Box<dyn Ticket>> {
    fn revoked(&self) -> Option<BoxFuture<'static, String>> {
        let mut all: Vec<_> = self.iter().filter_map(|t| t.revoked()).collect();
        match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Box::pin(
                async move { futures::future::select_all(all).await.0 },
            )),
        }
    }
}

pub trait StreamPolicy: Send + Sync + 'static {
    /// `Some(refusal)` when this role takes no publishers at all: asked before the local hub,
    /// so a refused publish never holds a stream's slot, even for a moment.
    fn refuses_publishers(&self) -> Option<Refusal> {
        None
    }

    fn publish(&self, id: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>>;
    fn play(&self, id: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>>;
}

/// Standalone: the hub's own rules (one publisher per name) are all there is.
pub struct OpenPolicy;

impl StreamPolicy for OpenPolicy {
    fn publish(&self, _: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        Box::pin(async { Ok(Box::new(()) as Box<dyn Ticket>) })
    }

    fn play(&self, _: StreamId) -> BoxFuture<'static, Result<Box<dyn Ticket>, Refusal>> {
        Box::pin(async { Ok(Box::new(()) as Box<dyn Ticket>) })
    }
}

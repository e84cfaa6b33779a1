//! What an admitted publisher or viewer holds while it runs, and how it hears that it must stop.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use liverelay_types::{StreamId, Ticket};
use tokio::sync::oneshot;
use tracing::Span;

use crate::sessions::Registered;

/// An admitted publish (`Admitted<Publisher>`) or play (`Admitted<Viewer>`): the hub slot, and
/// everything admission started for it. Dropping it undoes all of it, in this order: the hub
/// slot, the tickets (the policy's registry claim, access's done callbacks), the session-table
/// entry, the span.
///
/// It dereferences to the hub slot, so the media path costs nothing extra.
pub struct Admitted<T> {
    slot: T,
    held: Held,
}

/// What admission started, apart from the hub slot.
pub(crate) struct Held {
    pub(crate) stream: StreamId,
    /// The policy's and access's tickets, in that order.
    pub(crate) _ticket: Box<dyn Ticket>,
    /// The tickets' revocation, if they can be revoked: asked for once, polled in place.
    pub(crate) revoked: Option<BoxFuture<'static, String>>,
    /// The session table's kick (clients only).
    pub(crate) kicked: Option<oneshot::Receiver<String>>,
    pub(crate) _registered: Option<Registered>,
    /// The session's span (`publish` or `play`): a trace of the session's own life, which the
    /// policy's work (an edge's upstream, the registry claim) joins.
    pub(crate) span: Span,
}

impl<T> Admitted<T> {
    pub(crate) fn new(slot: T, held: Held) -> Self {
        Self { slot, held }
    }

    /// The stream inside liverelay (access may have chosen another name than the one asked).
    pub fn stream(&self) -> &StreamId {
        &self.held.stream
    }

    pub fn span(&self) -> &Span {
        &self.held.span
    }

    /// Resolves with a reason when the session must end: a ticket was revoked (the stream's
    /// claim went to another pod, a callback refused an update) or the session was kicked from
    /// the table (a revoked stream key, an operator's drop). Never resolves if nothing can
    /// withdraw it. Cheap and cancel-safe: a driver may poll a new one on every wakeup.
    pub fn withdrawn(&mut self) -> Withdrawn<'_> {
        Withdrawn(&mut self.held)
    }

    /// The hub slot and the withdrawal together, for a driver that waits on both at once (a
    /// viewer waiting for frames or for the end of its session).
    pub fn split(&mut self) -> (&mut T, Withdrawn<'_>) {
        (&mut self.slot, Withdrawn(&mut self.held))
    }
}

impl<T> Deref for Admitted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot
    }
}

impl<T> DerefMut for Admitted<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.slot
    }
}

/// See [`Admitted::withdrawn`]. Once it has resolved, later ones never do.
pub struct Withdrawn<'a>(&'a mut Held);

impl Future for Withdrawn<'_> {
    type Output = String;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<String> {
        let held = &mut *self.0;
        if let Some(revoked) = held.revoked.as_mut()
            && let Poll::Ready(why) = revoked.as_mut().poll(cx)
        {
            held.revoked = None;
            return Poll::Ready(why);
        }
        if let Some(kicked) = held.kicked.as_mut()
            && let Poll::Ready(kicked) = Pin::new(kicked).poll(cx)
        {
            held.kicked = None;
            // A closed channel without a reason: the entry left the table.
            return Poll::Ready(kicked.unwrap_or_else(|_| "session unregistered".into()));
        }
        Poll::Pending
    }
}

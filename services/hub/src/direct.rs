//! Viewers the publisher writes to itself, as nginx-rtmp does for every player: while a viewer
//! keeps up, each new frame goes out from the publisher's task the moment it is added, with no
//! task of the viewer woken and polled for it. On a loaded server that wakeup, not the write,
//! is most of what a player costs beyond the kernel's work.
//!
//! A viewer goes direct only when nothing but the next frame is due to it (caught up with a live
//! stream, headers sent, not waiting for a keyframe), and its sink gives it back to its own task
//! at the first frame it cannot write whole or in order, and when the publisher leaves; the
//! viewer then goes on from the frame after the last one the sink took, with all of the usual
//! rules (skipping when slow, status messages, headers).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::frame::Frame;

/// Where a direct viewer's frames go (a socket, in the drivers).
pub trait DirectSink: Send + Sync {
    /// `frame`, sequence number `seq`, was just added to the stream; called by the publisher's
    /// task, in sequence order.
    fn offer(&self, seq: u64, frame: &Arc<Frame>) -> Offer;

    /// The stream changed in a way only the viewer's own task handles (the publisher left):
    /// take no more frames.
    fn stop(&self);
}

/// What a sink did with an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Bytes of the frame the sink took (for the stream's egress count).
    pub sent: usize,
    /// False once the sink takes no more frames; the stream then forgets it.
    pub keep: bool,
}

/// A stream's direct viewers.
#[derive(Default)]
pub(crate) struct DirectSinks(Mutex<Vec<Arc<dyn DirectSink>>>);

impl DirectSinks {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<dyn DirectSink>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, sink: Arc<dyn DirectSink>) {
        self.lock().push(sink);
    }

    pub(crate) fn remove(&self, sink: &Arc<dyn DirectSink>) {
        self.lock().retain(|s| !Arc::ptr_eq(s, sink));
    }

    /// Offers a new frame to every sink; returns the bytes they took.
    pub(crate) fn offer(&self, seq: u64, frame: &Arc<Frame>) -> usize {
        let mut sinks = self.lock();
        let mut sent = 0;
        sinks.retain(|sink| {
            let offer = sink.offer(seq, frame);
            sent += offer.sent;
            offer.keep
        });
        sent
    }

    /// Hands every direct viewer back to its task.
    pub(crate) fn stop_all(&self) {
        for sink in self.lock().drain(..) {
            sink.stop();
        }
    }
}

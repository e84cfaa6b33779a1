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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

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

/// A stream's direct viewers, in shards: the publisher's task writes to the first itself, and on
/// a runtime with more workers each further shard is written by a helper task of its own, woken
/// once per frame, so that one stream's players still spread over every core.
pub(crate) struct DirectSinks {
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// The stream's egress count, which helpers add to.
    bytes_out: Arc<AtomicU64>,
}

#[derive(Default)]
struct Shard {
    sinks: Mutex<Vec<Arc<dyn DirectSink>>>,
    /// Sinks in `sinks`, read without the lock.
    count: AtomicUsize,
    /// A helper's frames not yet offered, and its wakeup; unused in the publisher's shard.
    queue: Mutex<VecDeque<(u64, Arc<Frame>)>>,
    wake: Notify,
    helper: OnceLock<()>,
    /// The stream is gone: the helper ends.
    closed: AtomicBool,
}

/// Frames a helper may be behind the publisher before its players go back to their tasks
/// (which skip to a keyframe when they are that far behind): a viewer's queue.
const HELPER_QUEUE: usize = 256;

/// Direct viewers one shard takes at most; further ones stay with their tasks. A shard writes
/// each frame to all of its viewers before its task reads on: at 2.5 Mbit/s one core wrote to
/// 3,000 players this way and stalled at 4,000, so a shard stays well below that whatever the
/// load sampler lets through.
const SHARD_MAX: usize = 2000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shard {
    fn offer(&self, seq: u64, frame: &Arc<Frame>) -> usize {
        let mut sinks = lock(&self.sinks);
        let mut sent = 0;
        sinks.retain(|sink| {
            let offer = sink.offer(seq, frame);
            sent += offer.sent;
            offer.keep
        });
        self.count.store(sinks.len(), Ordering::Relaxed);
        sent
    }

    fn stop_all(&self) {
        let mut sinks = lock(&self.sinks);
        for sink in sinks.drain(..) {
            sink.stop();
        }
        self.count.store(0, Ordering::Relaxed);
    }

    /// Offers what the publisher queued, in order, until the stream is gone.
    async fn help(self: Arc<Self>, bytes_out: Arc<AtomicU64>) {
        while !self.closed.load(Ordering::Relaxed) {
            let frames = std::mem::take(&mut *lock(&self.queue));
            for (seq, frame) in frames {
                let sent = self.offer(seq, &frame);
                bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
            }
            self.wake.notified().await;
        }
    }
}

impl DirectSinks {
    pub(crate) fn new(bytes_out: Arc<AtomicU64>) -> Self {
        Self {
            shards: OnceLock::new(),
            bytes_out,
        }
    }

    fn shards(&self) -> &[Arc<Shard>] {
        self.shards.get_or_init(|| {
            let workers =
                tokio::runtime::Handle::try_current().map_or(1, |rt| rt.metrics().num_workers());
            (0..workers.max(1)).map(|_| Arc::default()).collect()
        })
    }

    /// Whether a shard has room for another sink (a hint: [`add`](Self::add) decides).
    pub(crate) fn has_room(&self) -> bool {
        self.shards()
            .iter()
            .any(|s| s.count.load(Ordering::Relaxed) < SHARD_MAX)
    }

    /// Adds a sink to the shard with the fewest, starting that shard's helper if it has one;
    /// false when every shard is full.
    pub(crate) fn add(&self, sink: Arc<dyn DirectSink>) -> bool {
        let shards = self.shards();
        let (index, shard) = shards
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.count.load(Ordering::Relaxed))
            .expect("at least one shard");
        let mut sinks = lock(&shard.sinks);
        if sinks.len() >= SHARD_MAX {
            return false;
        }
        sinks.push(sink);
        shard.count.store(sinks.len(), Ordering::Relaxed);
        if index > 0 {
            shard.helper.get_or_init(|| {
                tokio::spawn(shard.clone().help(self.bytes_out.clone()));
            });
        }
        true
    }

    pub(crate) fn remove(&self, sink: &Arc<dyn DirectSink>) {
        for shard in self.shards() {
            let mut sinks = lock(&shard.sinks);
            let before = sinks.len();
            sinks.retain(|s| !Arc::ptr_eq(s, sink));
            shard.count.store(sinks.len(), Ordering::Relaxed);
            if sinks.len() < before {
                return;
            }
        }
    }

    /// Offers a new frame to every sink: the publisher's shard now, the others through their
    /// helpers. Returns the bytes the publisher's shard took.
    pub(crate) fn offer(&self, seq: u64, frame: &Arc<Frame>) -> usize {
        let Some((own, helped)) = self.shards.get().and_then(|s| s.split_first()) else {
            return 0;
        };
        for shard in helped {
            if shard.count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut queue = lock(&shard.queue);
            if queue.len() >= HELPER_QUEUE {
                queue.clear();
                drop(queue);
                shard.stop_all();
                continue;
            }
            queue.push_back((seq, frame.clone()));
            drop(queue);
            shard.wake.notify_one();
        }
        if own.count.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        own.offer(seq, frame)
    }

    /// Hands every direct viewer back to its task.
    pub(crate) fn stop_all(&self) {
        for shard in self.shards.get().into_iter().flatten() {
            shard.stop_all();
        }
    }
}

impl Drop for DirectSinks {
    fn drop(&mut self) {
        for shard in self.shards.get().into_iter().flatten() {
            shard.closed.store(true, Ordering::Relaxed);
            shard.wake.notify_one();
        }
    }
}

//! A viewer's position in its stream's ring, and the rules for what it is sent next: start at
//! the cached GOP, wait for a keyframe when there is none, skip ahead when it falls behind, and
//! hear about publishes and unpublishes in order with the frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use liverelay_rtmp::MediaKind;
use tokio::sync::watch;

use crate::direct::DirectSink;
use crate::frame::Frame;
use crate::hub::HubInner;
use crate::stream::{Stream, StreamState};
use liverelay_types::StreamId;

/// What a viewer is to be sent, in order.
#[derive(Debug, Clone)]
pub enum ViewerItem {
    /// A publisher started (the viewer arrived first, or the stream was republished).
    Published,
    /// The publisher stopped; the viewer stays for the next one.
    Unpublished,
    Frame(Arc<Frame>),
}

pub struct Viewer {
    stream: Arc<Stream>,
    hub: Arc<HubInner>,
    changes: watch::Receiver<u64>,
    /// Sequence number of the next frame to send.
    cursor: u64,
    /// Publish generation the viewer is following, and whether it was told it is live.
    generation: u64,
    live: bool,
    /// Skip video until a keyframe (joined between keyframes, or fell behind).
    waiting_key: bool,
    /// Send the stream's metadata and sequence headers before the next frame.
    needs_headers: bool,
    dropped: u64,
    /// Counted in the stream's viewers (metrics, the API, load reports).
    counted: bool,
    /// The sink the publisher writes this viewer's frames to, while it does.
    direct: Option<Arc<dyn DirectSink>>,
}

impl Viewer {
    pub(crate) fn join(stream: Arc<Stream>, hub: Arc<HubInner>) -> Self {
        let changes = stream.notify.subscribe();
        let mut viewer = Self {
            stream: stream.clone(),
            hub,
            changes,
            cursor: 0,
            generation: 0,
            live: false,
            waiting_key: true,
            needs_headers: false,
            dropped: 0,
            counted: true,
            direct: None,
        };
        {
            let mut st = stream.lock();
            st.viewers += 1;
            viewer.cursor = st.next_seq;
            if st.live {
                viewer.generation = st.generation;
                viewer.live = true;
                viewer.needs_headers = true;
                if let Some(gop) = st.gop_start.filter(|g| *g >= st.first_seq) {
                    viewer.cursor = gop;
                }
            }
        }
        stream.stats.viewers.fetch_add(1, Ordering::Relaxed);
        viewer
    }

    pub fn key(&self) -> &StreamId {
        &self.stream.key
    }

    /// This viewer is the server's own (an HLS packaging, which serves many clients that are
    /// counted apart): it keeps the stream but is no viewer in its counts.
    pub fn stop_counting(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.stream.stats.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a publisher is live and this viewer has been told so.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Counts bytes the driver wrote to this viewer, for the stream's egress figures.
    pub fn record_sent(&self, bytes: usize) {
        self.stream
            .stats
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The publish generation the viewer follows (as of its last poll).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Frames this viewer skipped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lets the publisher write this viewer's frames to a sink from now on, if nothing but
    /// the next frame is due to it: the stream is live, the viewer was told so and sent its
    /// headers, is not waiting for a keyframe and has sent every frame. `make` gets the
    /// sequence number of the first frame the sink is to write. True when the viewer went
    /// direct; it stays so until [`take_back`](Self::take_back).
    pub fn go_direct(&mut self, make: impl FnOnce(u64) -> Arc<dyn DirectSink>) -> bool {
        if self.direct.is_some() {
            return true;
        }
        if !self.hub.batching.direct_writes() || !self.stream.direct.has_room() {
            return false;
        }
        let st = self.stream.lock();
        let due_nothing = st.live
            && self.live
            && self.generation == st.generation
            && self.cursor == st.next_seq
            && !self.waiting_key
            && !self.needs_headers;
        if !due_nothing {
            return false;
        }
        let sink = make(self.cursor);
        // Added under the stream lock: no frame can be appended between the check and this.
        if !self.stream.direct.add(sink.clone()) {
            return false;
        }
        self.direct = Some(sink);
        true
    }

    /// Back from the direct sink, which took the frames before `next` (sent, or handed to the
    /// caller to send first): [`poll`](Self::poll) goes on from there.
    pub fn take_back(&mut self, next: u64) {
        if let Some(sink) = self.direct.take() {
            self.stream.direct.remove(&sink);
        }
        self.cursor = self.cursor.max(next);
    }

    /// Waits until something new may be there for [`poll`](Self::poll).
    pub async fn changed(&mut self) {
        // The sender lives as long as the stream, which this viewer keeps alive.
        let _ = self.changes.changed().await;
    }

    /// Appends up to `max` items to `out`; returns how many frames are still pending after them.
    pub fn poll(&mut self, out: &mut Vec<ViewerItem>, max: usize) -> u64 {
        // Mark the current version seen before reading, so a frame pushed after this read
        // wakes the next `changed()`.
        self.changes.borrow_and_update();
        let stream = self.stream.clone();
        let st = stream.lock();
        self.catch_up(&st);
        let start_len = out.len();
        while out.len() - start_len < max && self.cursor < st.next_seq {
            let Some(frame) = st.frame(self.cursor).cloned() else {
                break;
            };
            self.cursor += 1;
            if frame.generation != self.generation {
                if self.live {
                    out.push(ViewerItem::Unpublished);
                }
                out.push(ViewerItem::Published);
                self.generation = frame.generation;
                self.live = true;
                self.waiting_key = true;
                self.needs_headers = false;
            }
            if self.waiting_key && frame.kind == MediaKind::Video && !frame.sequence_header {
                if !frame.keyframe {
                    // Undecodable without the keyframe it refers to.
                    self.dropped += 1;
                    stream.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.waiting_key = false;
            }
            if self.needs_headers && !frame.sequence_header {
                self.needs_headers = false;
                for header in [&st.metadata, &st.video_header, &st.audio_header]
                    .into_iter()
                    .flatten()
                {
                    if header.generation == self.generation {
                        out.push(ViewerItem::Frame(header.clone()));
                    }
                }
            }
            out.push(ViewerItem::Frame(frame));
        }
        if self.cursor == st.next_seq {
            self.follow_publish_state(&st, out);
        }
        st.next_seq - self.cursor
    }

    /// A viewer whose backlog outgrew the limit, or whose next frame left the ring, jumps to the
    /// latest keyframe (or waits for the next one) and will be re-sent the sequence headers.
    fn catch_up(&mut self, st: &StreamState) {
        let backlog = st.next_seq.saturating_sub(self.cursor);
        if self.cursor >= st.first_seq && backlog <= st.config.viewer_queue_frames as u64 {
            return;
        }
        let target = match st.gop_start {
            Some(g) if g > self.cursor && g >= st.first_seq => g,
            _ => {
                self.waiting_key = true;
                st.next_seq
            }
        };
        let skipped = target.saturating_sub(self.cursor);
        self.dropped += skipped;
        self.stream
            .stats
            .frames_dropped
            .fetch_add(skipped, Ordering::Relaxed);
        self.cursor = target;
        self.needs_headers = true;
    }

    /// Publish and unpublish that have no frame of their own yet to carry them.
    fn follow_publish_state(&mut self, st: &StreamState, out: &mut Vec<ViewerItem>) {
        if st.live && st.generation != self.generation {
            if self.live {
                out.push(ViewerItem::Unpublished);
            }
            out.push(ViewerItem::Published);
            self.generation = st.generation;
            self.live = true;
            self.waiting_key = true;
        } else if !st.live && self.live {
            out.push(ViewerItem::Unpublished);
            self.live = false;
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if let Some(sink) = self.direct.take() {
            self.stream.direct.remove(&sink);
        }
        self.stream.lock().viewers -= 1;
        if self.counted {
            self.stream.stats.viewers.fetch_sub(1, Ordering::Relaxed);
        }
        self.hub.release(&self.stream);
    }
}

//! A connection's play: its admitted hub viewer, what the client chose (pause, audio, video),
//! and when to write next. The write path per frame is one `Arc` clone and one iovec: frames
//! are the hub's shared, pre-chunked bytes, gathered into the driver's queue for one vectored
//! write per batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use liverelay_admission::{Admitted, Withdrawn};
use liverelay_hub::{Viewer, ViewerItem};
use liverelay_metrics::Watching;
use liverelay_rtmp::{MediaKind, ServerSession};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::info;

use super::express::Express;

pub(super) struct Playing {
    pub(super) stream_id: u32,
    /// The name the client asked for: the status messages it is sent carry it.
    pub(super) name: String,
    viewer: Admitted<Viewer>,
    /// Counts this play among the RTMP viewers, and the bytes sent to it.
    watching: Arc<Watching>,
    /// While the publisher writes this player's frames itself.
    express: Option<Direct>,
    paused: bool,
    audio: bool,
    video: bool,
    /// Frames known to be waiting beyond the last batch.
    pending: u64,
    /// When this viewer was last written to, and (while coalescing) until when new frames
    /// wait for the next write.
    last_pump: Instant,
    held_until: Option<Instant>,
}

/// A play the publisher writes to, counted as such while it lasts.
struct Direct {
    express: Arc<Express>,
    counted: Gauge,
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.counted.dec();
    }
}

/// Why a play wants to be written to.
pub(super) enum Due {
    /// New frames arrived.
    Frames,
    /// A coalescing window ended.
    Held,
}

impl Playing {
    pub(super) fn new(
        stream_id: u32,
        name: String,
        viewer: Admitted<Viewer>,
        watching: Watching,
    ) -> Self {
        Self {
            stream_id,
            name,
            viewer,
            watching: Arc::new(watching),
            express: None,
            paused: false,
            audio: true,
            video: true,
            // The first batch (metadata, sequence headers, the cached GOP) goes out at once.
            pending: 1,
            last_pump: Instant::now(),
            held_until: None,
        }
    }

    /// Frames are known to be waiting: write them before waiting for anything.
    pub(super) fn has_backlog(&self) -> bool {
        self.pending > 0 && !self.paused
    }

    pub(super) fn pause(&mut self, paused: bool) {
        self.paused = paused;
        // Resuming re-reads the ring; a long pause lands on a keyframe.
        self.pending = u64::from(!paused);
    }

    pub(super) fn receive_audio(&mut self, enabled: bool) {
        self.audio = enabled;
    }

    pub(super) fn receive_video(&mut self, enabled: bool) {
        self.video = enabled;
    }

    /// Lets the stream's publisher write this player's frames to `socket` itself while the
    /// player keeps up, if it takes every frame as it comes (not paused, audio and video on)
    /// and nothing else is due to it. True when it went direct now; `direct` counts it while
    /// it is.
    pub(super) fn go_direct(
        &mut self,
        socket: &Arc<TcpStream>,
        session: &ServerSession,
        direct: &Gauge,
    ) -> bool {
        if self.express.is_some()
            || self.paused
            || !self.audio
            || !self.video
            || self.held_until.is_some()
        {
            return false;
        }
        let encoding = (session.out_chunk_size(), self.stream_id);
        let generation = self.viewer.generation();
        let watching = &self.watching;
        let mut express = None;
        let went = self.viewer.go_direct(|next| {
            let e = Arc::new(Express::new(
                socket.clone(),
                encoding,
                generation,
                watching.clone(),
                next,
            ));
            express = Some(e.clone());
            e
        });
        let Some(express) = express.filter(|_| went) else {
            return false;
        };
        direct.inc();
        self.express = Some(Direct {
            express,
            counted: direct.clone(),
        });
        true
    }

    /// Back from the publisher's writes: what the socket did not take of the last frame goes
    /// out first, and the viewer goes on from the frame after it.
    pub(super) fn take_back(&mut self, out: &mut VecDeque<Bytes>) {
        let Some(direct) = self.express.take() else {
            return;
        };
        let taken = direct.express.take_back();
        self.viewer.take_back(taken.next);
        out.extend(taken.rest);
        // Frames may have come since; the next batch looks.
        self.pending = 1;
    }

    /// What the driver waits on for this play: when it is due a write, and when it is
    /// withdrawn. Paused and not holding frames back: never due. While the publisher writes
    /// to the player: when it stopped.
    pub(super) fn wait(&mut self) -> (impl Future<Output = Due> + '_, Withdrawn<'_>) {
        let (held_until, paused) = (self.held_until, self.paused);
        let express = self.express.as_ref().map(|d| d.express.clone());
        let (viewer, withdrawn) = self.viewer.split();
        let due = async move {
            match (held_until, express) {
                (Some(until), _) => {
                    tokio::time::sleep_until(until).await;
                    Due::Held
                }
                (None, Some(express)) => {
                    express.closed().await;
                    Due::Frames
                }
                (None, None) if !paused => {
                    viewer.changed().await;
                    Due::Frames
                }
                (None, None) => std::future::pending().await,
            }
        };
        (due, withdrawn)
    }

    /// New frames arrived: true to write now; false when the last write was more recent than
    /// `window`, and the frames wait for the window's end.
    pub(super) fn write_now(&mut self, window: Duration) -> bool {
        if window.is_zero() {
            return true;
        }
        let due = self.last_pump + window;
        if Instant::now() < due {
            self.held_until = Some(due);
            return false;
        }
        true
    }

    /// Queues the viewer's next batch on `out`: everything pending up to `max_frames`, each
    /// frame's shared wire bytes, with the status messages that belong between the frames.
    pub(super) fn next_batch(
        &mut self,
        items: &mut Vec<ViewerItem>,
        out: &mut VecDeque<Bytes>,
        session: &mut ServerSession,
        max_frames: usize,
    ) {
        self.held_until = None;
        self.last_pump = Instant::now();
        items.clear();
        self.pending = self.viewer.poll(items, max_frames);
        let chunk_size = session.out_chunk_size();
        for item in items.drain(..) {
            match item {
                ViewerItem::Frame(frame) => {
                    let wanted = match frame.kind {
                        MediaKind::Audio => self.audio,
                        MediaKind::Video => self.video,
                        MediaKind::Metadata | MediaKind::Data => true,
                    };
                    if wanted {
                        out.push_back(frame.rtmp(chunk_size, self.stream_id));
                    }
                }
                ViewerItem::Published => {
                    info!("publisher arrived");
                    session.notify_publish(self.stream_id, &self.name);
                    out.extend(session.poll_transmit());
                }
                ViewerItem::Unpublished => {
                    info!("publisher left");
                    session.notify_unpublish(self.stream_id, &self.name);
                    out.extend(session.poll_transmit());
                }
            }
        }
        let sent = out.iter().map(Bytes::len).sum();
        self.viewer.record_sent(sent);
        self.watching.sent(sent);
    }
}

//! A player's direct lane: the stream's publisher writes each new frame to the player's socket
//! itself, in its own task ([`DirectSink`]), while the player keeps up. The lane closes at the
//! first frame it cannot write whole (the socket is full), that is out of order or from another
//! publish, and when the publisher leaves; the player's task is then woken, takes back what the
//! lane did not finish and goes on by the usual rules. The task and the lane never write to the
//! socket at the same time: the task writes only after [`Express::take_back`].

use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use liverelay_hub::{DirectSink, Frame, Offer};
use liverelay_metrics::Watching;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::write::send_vectored;

pub(super) struct Express {
    socket: Arc<TcpStream>,
    /// The RTMP encoding the player takes, and the publish it follows.
    chunk_size: u32,
    stream_id: u32,
    generation: u64,
    watching: Arc<Watching>,
    lane: Mutex<Lane>,
    /// The lane closed: the player's task takes over.
    closed: Notify,
}

struct Lane {
    open: bool,
    /// Sequence number of the next frame the lane is to write.
    next: u64,
    /// The part of a frame the socket did not take, for the task to send first.
    rest: Option<Bytes>,
}

/// What the task takes back when the lane closes.
pub(super) struct TakenBack {
    /// The first frame the lane did not take.
    pub next: u64,
    pub rest: Option<Bytes>,
}

impl Express {
    pub(super) fn new(
        socket: Arc<TcpStream>,
        (chunk_size, stream_id): (u32, u32),
        generation: u64,
        watching: Arc<Watching>,
        next: u64,
    ) -> Self {
        Self {
            socket,
            chunk_size,
            stream_id,
            generation,
            watching,
            lane: Mutex::new(Lane {
                open: true,
                next,
                rest: None,
            }),
            closed: Notify::new(),
        }
    }

    fn lane(&self) -> MutexGuard<'_, Lane> {
        self.lane.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the lane has closed by itself.
    pub(super) async fn closed(&self) {
        self.closed.notified().await;
    }

    /// Closes the lane (if open) and returns where the task goes on from.
    pub(super) fn take_back(&self) -> TakenBack {
        let mut lane = self.lane();
        lane.open = false;
        TakenBack {
            next: lane.next,
            rest: lane.rest.take(),
        }
    }

    fn close(&self, lane: &mut Lane) -> Offer {
        lane.open = false;
        self.closed.notify_one();
        Offer {
            sent: 0,
            keep: false,
        }
    }
}

impl DirectSink for Express {
    fn offer(&self, seq: u64, frame: &Arc<Frame>) -> Offer {
        let mut lane = self.lane();
        if !lane.open {
            return Offer {
                sent: 0,
                keep: false,
            };
        }
        if seq < lane.next {
            // Sent by the task before the lane opened.
            return Offer {
                sent: 0,
                keep: true,
            };
        }
        if seq > lane.next || frame.generation != self.generation {
            return self.close(&mut lane);
        }
        let bytes = frame.rtmp(self.chunk_size, self.stream_id);
        let written = match send_vectored(&self.socket, &[IoSlice::new(&bytes)]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            // The task meets the error on its own next read or write.
            Err(_) => return self.close(&mut lane),
        };
        lane.next += 1;
        let sent = bytes.len();
        self.watching.sent(sent);
        if written == sent {
            return Offer { sent, keep: true };
        }
        lane.rest = Some(bytes.slice(written..));
        Offer {
            sent,
            ..self.close(&mut lane)
        }
    }

    fn stop(&self) {
        let mut lane = self.lane();
        if lane.open {
            self.close(&mut lane);
        }
    }
}

//! One HTTP-FLV viewer: its admitted hub viewer, turned into an FLV body. The bytes of each
//! frame are the hub's shared FLV tag ([`Frame::flv`]): one `Arc` clone per frame and viewer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use liverelay_admission::Admitted;
use liverelay_hub::{Frame, Viewer, ViewerItem};
use liverelay_metrics::Watching;
use liverelay_rtmp::MediaKind;
use tracing::info;

use crate::conn::Coalescing;

/// Frames read from the hub at a time: the most one viewer holds beyond the hub's ring.
const BATCH: usize = 64;

/// Frames kept while waiting for the first audio or video frame (the headers and metadata
/// that come before it); a stream that sends only data messages starts after this many.
const MAX_BEFORE_MEDIA: usize = 32;

/// A viewer between admission and its first media frame: the frames so far are held until
/// the FLV header can say whether the stream has audio and video.
pub(super) struct FlvPlay {
    viewer: Admitted<Viewer>,
    held: Vec<Arc<Frame>>,
    items: Vec<ViewerItem>,
}

/// Why a play ended before its first frame.
pub(super) enum NotStarted {
    Withdrawn(String),
}

impl FlvPlay {
    pub(super) fn new(viewer: Admitted<Viewer>) -> Self {
        Self {
            viewer,
            held: Vec::new(),
            items: Vec::with_capacity(BATCH),
        }
    }

    /// Waits for the stream's first audio or video frame (at once for a live stream: the
    /// sequence headers and the cached GOP are there).
    pub(super) async fn start(&mut self) -> Result<(), NotStarted> {
        loop {
            self.items.clear();
            self.viewer.poll(&mut self.items, BATCH);
            for item in self.items.drain(..) {
                match item {
                    ViewerItem::Frame(frame) => self.held.push(frame),
                    // A publish that ended before its first media frame: wait for the next.
                    ViewerItem::Unpublished => self.held.clear(),
                    ViewerItem::Published => {}
                }
            }
            let media = |f: &Arc<Frame>| {
                matches!(f.kind, MediaKind::Audio | MediaKind::Video) && !f.sequence_header
            };
            if self.held.iter().any(media) || self.held.len() >= MAX_BEFORE_MEDIA {
                return Ok(());
            }
            let (viewer, withdrawn) = self.viewer.split();
            tokio::select! {
                () = viewer.changed() => {}
                why = withdrawn => return Err(NotStarted::Withdrawn(why)),
            }
        }
    }

    /// The response body: the FLV header, the frames held so far, then each frame as it
    /// comes, until the publisher leaves, the play is withdrawn or the client goes away (the
    /// body is dropped). `watching` counts it among the HTTP-FLV viewers meanwhile.
    pub(super) fn into_body(
        self,
        watching: Watching,
        coalescing: Option<Coalescing>,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        let has = |kind| self.held.iter().any(|f| f.kind == kind);
        let header = flv_header(has(MediaKind::Audio), has(MediaKind::Video));
        let mut out: VecDeque<Bytes> = VecDeque::with_capacity(BATCH + 1);
        out.push_back(header);
        out.extend(self.held.iter().map(|f| f.flv()));
        let state = Body {
            viewer: self.viewer,
            watching,
            items: self.items,
            out,
            ended: false,
            _coalescing: coalescing,
        };
        state.sent();
        futures::stream::unfold(state, |mut body| async move {
            loop {
                if let Some(bytes) = body.out.pop_front() {
                    return Some((Ok(bytes), body));
                }
                if body.ended {
                    return None;
                }
                body.next_batch().await;
            }
        })
    }
}

struct Body {
    viewer: Admitted<Viewer>,
    watching: Watching,
    items: Vec<ViewerItem>,
    out: VecDeque<Bytes>,
    ended: bool,
    /// Nagle on the viewer's socket while the answer lasts.
    _coalescing: Option<Coalescing>,
}

impl Body {
    /// Counts what is queued as sent: for the stream's figures and the protocol's.
    fn sent(&self) {
        let bytes = self.out.iter().map(Bytes::len).sum();
        self.viewer.record_sent(bytes);
        self.watching.sent(bytes);
    }

    /// Reads the viewer's next frames, waiting for them when there are none. Read only when
    /// the client took what went before: a client that stops reading stops being polled and
    /// is skipped to a keyframe by the hub when it reads again (counted as dropped frames).
    async fn next_batch(&mut self) {
        loop {
            self.items.clear();
            self.viewer.poll(&mut self.items, BATCH);
            for item in self.items.drain(..) {
                match item {
                    ViewerItem::Frame(frame) => self.out.push_back(frame.flv()),
                    // The publisher left: the file ends, as an RTMP player is told the stream
                    // stopped (ffmpeg ends, a page's player reconnects and waits for the
                    // next publish). FLV has no way to say so inside the file.
                    ViewerItem::Unpublished => {
                        let _enter = self.viewer.span().enter();
                        info!("HTTP-FLV play ends: the publisher left");
                        self.ended = true;
                        break;
                    }
                    ViewerItem::Published => {}
                }
            }
            if !self.out.is_empty() || self.ended {
                self.sent();
                return;
            }
            let (viewer, withdrawn) = self.viewer.split();
            tokio::select! {
                () = viewer.changed() => {}
                why = withdrawn => {
                    let _enter = self.viewer.span().enter();
                    info!(reason = %why, "HTTP-FLV play withdrawn");
                    self.ended = true;
                    return;
                }
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let _enter = self.viewer.span().enter();
        info!(
            dropped_frames = self.viewer.dropped(),
            "HTTP-FLV play stopped"
        );
    }
}

/// The FLV file header (version 1, which streams are present, header size 9) and the first
/// previous-tag-size (0).
fn flv_header(audio: bool, video: bool) -> Bytes {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    Bytes::copy_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::flv_header;

    #[test]
    fn the_header_flags_say_which_streams_are_there() {
        assert_eq!(
            &flv_header(true, true)[..],
            b"FLV\x01\x05\0\0\0\x09\0\0\0\0"
        );
        assert_eq!(flv_header(true, false)[4], 4);
        assert_eq!(flv_header(false, true)[4], 1);
    }
}

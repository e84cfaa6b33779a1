//! Frames between the hub and the wire. Payloads are `Bytes` on both sides: shared, not copied.

use liverelay_hub::Frame;
use liverelay_rtmp::{Media, MediaKind};

use crate::pb::{FrameKind, MediaFrame};

pub fn from_frame(frame: &Frame) -> MediaFrame {
    let kind = match frame.kind {
        MediaKind::Audio => FrameKind::Audio,
        MediaKind::Video => FrameKind::Video,
        MediaKind::Metadata => FrameKind::Metadata,
        MediaKind::Data => FrameKind::Data,
    };
    MediaFrame {
        kind: kind as i32,
        timestamp: frame.timestamp,
        payload: frame.payload(),
        ingest_received_unix_us: frame.received_unix_us,
    }
}

/// `None` for a frame kind this build does not know (a newer peer): it is skipped.
pub fn to_media(frame: MediaFrame) -> Option<Media> {
    let kind = match FrameKind::try_from(frame.kind).ok()? {
        FrameKind::Audio => MediaKind::Audio,
        FrameKind::Video => MediaKind::Video,
        FrameKind::Metadata => MediaKind::Metadata,
        FrameKind::Data => MediaKind::Data,
        FrameKind::Unspecified => return None,
    };
    Some(Media {
        kind,
        timestamp: frame.timestamp,
        payload: frame.payload,
    })
}

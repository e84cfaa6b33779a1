//! Relay messages to and from the domain: hub frames go out as their payloads (shared `Bytes`,
//! copied once into the transport's framing); what arrives becomes [`RelayEvent`]s whose
//! payloads are slices of the received buffer.
use liverelay_hub::{Frame, SegmentStart};
use liverelay_rtmp::{Media, MediaKind};

use crate::pb::relay_message::Kind;
use crate::pb::{
    self, EndOfStream, FrameKind, MediaFrame, PublisherRestarted, RelayMessage, StreamHeader,
};

/// What a subscription brings, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// The subscription started on the ingest's publish `generation`; its cached frames follow.
    Header {
        generation: u64,
    },
    Frame(RelayedFrame),
    /// The publisher reconnected on the same ingest: new sequence headers follow.
    Restarted {
        generation: u64,
    },
    /// The publisher stopped.
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelayedFrame {
    /// On the ingest's stream timeline.
    pub media: Media,
    /// Sent from the ingest's cache when the subscription started: old by design.
    pub cached: bool,
    /// When the ingest received it from its publisher (µs since the Unix epoch; 0: unknown).
    pub ingest_received_unix_us: u64,
    /// The HLS segment it starts, as the ingest cut the stream.
    pub segment: Option<SegmentStart>,
}

/// Bytes a relay message adds around a frame's payload, at most: the message and frame
/// framing (tags and lengths) and the fixed fields, with room for fields a newer ingest adds.
pub const FRAMING: usize = 256;

/// The largest relay message a subscriber accepting payloads of `max_payload` bytes decodes.
pub fn message_limit(max_payload: usize) -> usize {
    max_payload + FRAMING
}

/// A hub frame as the relay sends it: its payload shared, not copied.
pub fn frame_event(frame: &Frame, cached: bool) -> RelayEvent {
    RelayEvent::Frame(RelayedFrame {
        media: frame.media(),
        cached,
        ingest_received_unix_us: frame.received_unix_us,
        segment: frame.segment,
    })
}

/// The message an ingest sends for `event`: the inverse of [`decode`].
pub fn encode(event: RelayEvent) -> RelayMessage {
    let kind = match event {
        RelayEvent::Header { generation } => Kind::Header(StreamHeader { generation }),
        RelayEvent::Frame(frame) => Kind::Frame(MediaFrame {
            kind: match frame.media.kind {
                MediaKind::Audio => FrameKind::Audio,
                MediaKind::Video => FrameKind::Video,
                MediaKind::Metadata => FrameKind::Metadata,
                MediaKind::Data => FrameKind::Data,
            } as i32,
            timestamp: frame.media.timestamp,
            payload: frame.media.payload,
            ingest_received_unix_us: frame.ingest_received_unix_us,
            cached: frame.cached,
            segment: frame.segment.map(|s| pb::SegmentStart {
                sequence: s.sequence,
                wall_clock_ms: s.wall_clock_ms,
                discontinuity: s.discontinuity,
            }),
        }),
        RelayEvent::Restarted { generation } => Kind::Restarted(PublisherRestarted { generation }),
        RelayEvent::End => Kind::End(EndOfStream {}),
    };
    RelayMessage { kind: Some(kind) }
}

/// `None` for a message this build does not understand (a newer ingest's): it is skipped.
pub fn decode(message: RelayMessage) -> Option<RelayEvent> {
    Some(match message.kind? {
        Kind::Header(h) => RelayEvent::Header {
            generation: h.generation,
        },
        Kind::Frame(frame) => {
            let kind = match FrameKind::try_from(frame.kind).ok()? {
                FrameKind::Audio => MediaKind::Audio,
                FrameKind::Video => MediaKind::Video,
                FrameKind::Metadata => MediaKind::Metadata,
                FrameKind::Data => MediaKind::Data,
                FrameKind::Unspecified => return None,
            };
            RelayEvent::Frame(RelayedFrame {
                media: Media {
                    kind,
                    timestamp: frame.timestamp,
                    payload: frame.payload,
                },
                cached: frame.cached,
                ingest_received_unix_us: frame.ingest_received_unix_us,
                segment: frame.segment.map(|s| SegmentStart {
                    sequence: s.sequence,
                    wall_clock_ms: s.wall_clock_ms,
                    discontinuity: s.discontinuity,
                }),
            })
        }
        Kind::Restarted(r) => RelayEvent::Restarted {
            generation: r.generation,
        },
        Kind::End(_) => RelayEvent::End,
    })
}

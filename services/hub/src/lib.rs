//! The stream hub: where a publisher's frames meet every viewer of the same stream.
//!
//! Data flows one way: a [`Publisher`] pushes each media message once; it becomes a [`Frame`]
//! that keeps the payload as it arrived (shared `Bytes`) and makes each output encoding (RTMP
//! chunks, FLV tags) at most once, on first use, for every viewer of that output; the frame is
//! appended to the stream's bounded [`ring`](stream). Each [`Viewer`] is only a cursor into that ring: it never copies a
//! payload, and one that falls too far behind skips to the latest keyframe instead of slowing
//! the publisher or holding memory. The hub knows nothing of sockets.

#![forbid(unsafe_code)]

mod batching;
mod direct;
mod frame;
mod hub;
mod metrics;
mod rates;
mod segments;
mod stream;
mod timeline;
mod viewer;

pub use batching::Batching;
pub use direct::{DirectSink, Offer};
pub use frame::{Codec, FanoutEncoding, Frame};
pub use hub::{Hub, HubConfig, HubError, StreamSummary};
pub use metrics::HubCollector;
pub use rates::StreamRates;
pub use segments::SegmentStart;
pub use stream::{Publisher, StreamStats};
pub use viewer::{Viewer, ViewerItem};

#[cfg(test)]
mod tests;

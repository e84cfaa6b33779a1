//! The relay between pods over gRPC (`proto/liverelay/relay/v1/relay.proto`).
//!
//! An ingest serves each of its live streams with [`RelayService`]: a subscriber is a hub
//! viewer like any RTMP player, so it starts from the GOP cache (sent frame by frame) and a slow
//! subscriber skips to a keyframe instead of slowing the ingest. Frames travel as their payloads
//! on the ingest's stream timeline. An edge's [`RelayClient`] subscribes, over one connection
//! per ingest, and feeds the [`RelayEvent`]s into its own hub. Every call carries the cluster
//! token.

mod client;
mod convert;
mod metrics;
mod server;

use liverelay_proto::relay::v1 as pb;

pub use client::{RelayClient, RelayClientConfig, RelayClientTls, RelayError, Subscription};
pub use convert::{RelayEvent, RelayedFrame, decode, encode};
pub use metrics::RelayMetrics;
pub use server::RelayService;

#[cfg(test)]
mod tests;

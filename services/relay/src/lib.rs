//! The relay between pods over gRPC (`proto/liverelay/relay/v1/relay.proto`).
//!
//! An ingest serves each of its live streams with [`RelayService`]: a subscriber is a hub
//! viewer like any RTMP player, so it starts from the GOP cache and a slow subscriber skips to
//! a keyframe instead of slowing the ingest. An edge calls [`subscribe`] and feeds what arrives
//! into its own hub. Every call carries the cluster token.

mod client;
mod convert;
mod metrics;
mod server;

use liverelay_proto::relay::v1 as pb;

pub use client::{RelayClientConfig, RelayClientTls, RelayError, subscribe};
pub use convert::{from_frame, to_media};
pub use metrics::RelayMetrics;
pub use server::RelayService;

#[cfg(test)]
mod tests;

//! Low-Latency HLS packaging with CMAF fMP4, sans-I/O.

#![forbid(unsafe_code)]

pub mod fmp4;
mod packager;
pub mod playlist;
mod request;

pub use packager::{Packager, PackagerConfig, Part, Segment};
pub use request::{PlaylistQuery, Readiness, part_ready, playlist_ready, segment_ready};

#[cfg(test)]
mod tests;

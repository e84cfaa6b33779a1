//! Low-Latency HLS packaging with CMAF fMP4, sans-I/O.

#![forbid(unsafe_code)]

pub mod fmp4;

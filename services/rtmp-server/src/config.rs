use std::time::Duration;

use liverelay_rtmp::session::ServerConfig;

/// Limits and timeouts of the RTMP listener.
#[derive(Debug, Clone)]
pub struct RtmpServerConfig {
    /// The protocol's limits and timers; its `idle_timeout` also bounds how long one write
    /// may block.
    pub session: ServerConfig,
    /// The handshake must finish within this time.
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// Connections one client address may hold at once, within `max_connections` (0: no
    /// limit of its own).
    pub max_connections_per_ip: usize,
    /// Plays one connection may ask for in all, and within a minute (0: no limit).
    pub max_plays_per_connection: u32,
    pub max_plays_per_minute: u32,
    pub tcp_nodelay: bool,
    /// Frames written to a viewer in one vectored write at most.
    pub max_batch_frames: usize,
    /// A viewer is written to at most once per this window (zero: at every frame): fewer
    /// wakeups and writes per player for at most this much added delivery delay.
    pub write_coalesce: Duration,
    /// A plain-TCP player that keeps up is written to by the publisher's task as each frame
    /// arrives ([`liverelay_hub::DirectSink`]), rather than by its own task after a wakeup.
    pub direct_writes: bool,
}

impl Default for RtmpServerConfig {
    fn default() -> Self {
        Self {
            session: ServerConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_plays_per_connection: 100,
            max_plays_per_minute: 20,
            // Nagle on, as nginx-rtmp runs: measured (bench/RESULTS.md) it halves the CPU per
            // player at moderate load without raising delivery latency on loopback.
            tcp_nodelay: false,
            max_batch_frames: 256,
            write_coalesce: Duration::ZERO,
            direct_writes: true,
        }
    }
}

//! How long an audio message may wait for the next video frame before it wakes the viewers,
//! following the load. Each wakeup of a player costs a task poll and a `writev`; holding audio
//! until the next video frame halves them for an audio+video stream, but adds up to the hold to
//! audio's latency. That trade only pays when the process is short of CPU, so the hold grows
//! with how busy the runtime is and is zero while a core has time to spare.
//!
//! The same load decides whether players may be written directly by the publisher
//! ([`crate::DirectSink`]): one write per message and player, nothing batched, and a publisher
//! that cannot read on while it writes to thousands of sockets. Cheapest while a core has time
//! to spare; past about two thirds of it the viewers' own tasks, which batch and skip per
//! viewer, degrade gracefully where direct writes would stall the whole stream (measured on one
//! core with a 2.5 Mbit/s stream: direct writes alone held 3,000 players at 75-81 % of the core
//! busy and stalled at 4,000, the tasks held 10,000). The workers' busy time counts what the
//! kernel does in their system calls, loopback delivery included, so it reads about as the
//! core's busy share, above the process's CPU time.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Below this share of busy worker time audio is never held.
const IDLE: f64 = 0.25;
/// From this share on the whole `hub.audio_hold_ms` applies.
const FULL: f64 = 0.75;
/// From this share on no player is written directly.
const DIRECT_BELOW: f64 = 0.65;

#[derive(Debug)]
pub struct Batching {
    max_hold: Duration,
    hold_us: AtomicU64,
    /// The hold follows the load (else it stays `max_hold`).
    adaptive: AtomicBool,
    direct: AtomicBool,
}

impl Batching {
    /// Holds `max_hold` until the first [`observe`](Self::observe): what a hub does when
    /// nothing samples the load (tests, tools).
    pub fn fixed(max_hold: Duration) -> Self {
        Self {
            max_hold,
            hold_us: AtomicU64::new(max_hold.as_micros() as u64),
            adaptive: AtomicBool::new(true),
            direct: AtomicBool::new(true),
        }
    }

    /// The share of the runtime's worker time spent running tasks over the last sample
    /// (0 to 1); a sample that is not a number is ignored.
    pub fn observe(&self, busy: f64) {
        if busy.is_nan() {
            return;
        }
        if self.adaptive.load(Ordering::Relaxed) {
            let share = ((busy - IDLE) / (FULL - IDLE)).clamp(0.0, 1.0);
            let hold = self.max_hold.mul_f64(share);
            self.hold_us
                .store(hold.as_micros() as u64, Ordering::Relaxed);
        }
        self.direct.store(busy < DIRECT_BELOW, Ordering::Relaxed);
    }

    /// The hold stays the whole `max_hold` whatever the load (`hub.audio_hold_adaptive =
    /// false`); direct writes still follow it.
    pub fn keep_hold(&self) {
        self.adaptive.store(false, Ordering::Relaxed);
        self.hold_us
            .store(self.max_hold.as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether players may be written directly by the publisher now.
    pub fn direct_writes(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    /// How long audio may wait now.
    pub fn audio_hold(&self) -> Duration {
        Duration::from_micros(self.hold_us.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_follows_the_load() {
        let b = Batching::fixed(Duration::from_millis(40));
        assert_eq!(b.audio_hold(), Duration::from_millis(40), "until measured");
        b.observe(0.1);
        assert_eq!(b.audio_hold(), Duration::ZERO, "a core with time to spare");
        b.observe(0.5);
        assert_eq!(b.audio_hold(), Duration::from_millis(20));
        b.observe(0.95);
        assert_eq!(b.audio_hold(), Duration::from_millis(40));
        b.observe(f64::NAN);
        assert_eq!(b.audio_hold(), Duration::from_millis(40), "kept");
    }

    #[test]
    fn direct_writes_only_while_a_third_of_the_core_is_spare() {
        let b = Batching::fixed(Duration::from_millis(40));
        assert!(b.direct_writes(), "until measured");
        b.observe(0.3);
        assert!(b.direct_writes());
        b.observe(0.6);
        assert!(b.direct_writes());
        b.observe(0.7);
        assert!(!b.direct_writes());
        b.observe(0.2);
        assert!(b.direct_writes());
        b.keep_hold();
        b.observe(0.1);
        assert_eq!(
            b.audio_hold(),
            Duration::from_millis(40),
            "kept whatever the load"
        );
        b.observe(0.9);
        assert!(!b.direct_writes(), "still follows the load");
    }
}

//! Exponential backoff with jitter, for retrying a peer (an edge's upstream, a static relay).

use std::time::Duration;

pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The delay before the next attempt: doubling up to the cap, each drawn from its upper half
    /// so many edges retrying at once spread out.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_jittered(rand::random::<f64>())
    }

    /// [`next_delay`](Self::next_delay) with the jitter given: `unit` (in `[0, 1]`) picks the
    /// point in the upper half, so a caller that injects it (a sans-I/O state machine under
    /// test) gets deterministic delays.
    pub fn next_delay_jittered(&mut self, unit: f64) -> Duration {
        let current = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = current / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (d, cap) in delays.iter().zip([100, 200, 400, 800, 800, 800]) {
            assert!(
                *d >= Duration::from_millis(cap / 2) && *d <= Duration::from_millis(cap),
                "{d:?} vs {cap}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn injected_jitter_is_deterministic() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        assert_eq!(b.next_delay_jittered(0.0), Duration::from_millis(50));
        assert_eq!(b.next_delay_jittered(1.0), Duration::from_millis(200));
        assert_eq!(b.next_delay_jittered(0.5), Duration::from_millis(300));
    }
}

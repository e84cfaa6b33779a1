//! How many plays one connection may ask for. A player asks once or twice; a client that plays
//! name after name on one connection makes an edge look up, and start pulling, each of them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window of [`PlayBudget::max_per_minute`].
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    Total(u32),
    Rate(u32),
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Total(n) => write!(f, "more than {n} plays on one connection"),
            Self::Rate(n) => write!(f, "more than {n} plays a minute on one connection"),
        }
    }
}

/// Plays of one connection, counted in total and over the last minute. Zero turns a limit off.
#[derive(Debug)]
pub struct PlayBudget {
    max_total: u32,
    max_per_minute: u32,
    total: u32,
    recent: VecDeque<Instant>,
}

impl PlayBudget {
    pub fn new(max_total: u32, max_per_minute: u32) -> Self {
        Self {
            max_total,
            max_per_minute,
            total: 0,
            recent: VecDeque::new(),
        }
    }

    /// Counts a play asked for at `now`, or says which limit it is over (and counts nothing).
    pub fn take(&mut self, now: Instant) -> Result<(), OverBudget> {
        if self.max_total > 0 && self.total >= self.max_total {
            return Err(OverBudget::Total(self.max_total));
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.recent.pop_front();
        }
        if self.max_per_minute > 0 && self.recent.len() >= self.max_per_minute as usize {
            return Err(OverBudget::Rate(self.max_per_minute));
        }
        self.total += 1;
        if self.max_per_minute > 0 {
            self.recent.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_are_limited_per_minute_and_in_total() {
        let start = Instant::now();
        let mut budget = PlayBudget::new(5, 3);
        for i in 0..3 {
            assert_eq!(budget.take(start + Duration::from_secs(i)), Ok(()));
        }
        assert_eq!(
            budget.take(start + Duration::from_secs(59)),
            Err(OverBudget::Rate(3))
        );
        // The first play left the window: one more fits, then the window is full again.
        assert_eq!(budget.take(start + Duration::from_secs(60)), Ok(()));
        assert_eq!(
            budget.take(start + Duration::from_secs(60)),
            Err(OverBudget::Rate(3))
        );
        assert_eq!(budget.take(start + Duration::from_secs(200)), Ok(()));
        assert_eq!(
            budget.take(start + Duration::from_secs(400)),
            Err(OverBudget::Total(5)),
            "five plays in all, however slowly"
        );
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let now = Instant::now();
        let mut budget = PlayBudget::new(0, 0);
        for _ in 0..10_000 {
            assert_eq!(budget.take(now), Ok(()));
        }
        assert!(
            budget.recent.is_empty(),
            "nothing kept without a rate limit"
        );
    }
}

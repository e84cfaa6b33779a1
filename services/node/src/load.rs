//! Tells the hub how busy this process is, so that it batches viewer wakeups only when that
//! saves CPU the process is short of, and writes players directly only while it has CPU to
//! spare ([`liverelay_hub::Batching`]).
use std::time::{Duration, Instant};

use liverelay_hub::Hub;

/// Short enough to follow a ramp of viewers, long enough that one sample spans many polls.
const EVERY: Duration = Duration::from_millis(100);

/// Samples the tokio runtime's worker busy time forever.
pub(crate) async fn follow_load(hub: Hub) -> anyhow::Result<()> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let workers = metrics.num_workers();
    let busy_total = || {
        (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .sum::<Duration>()
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut at, mut busy) = (Instant::now(), busy_total());
    loop {
        tick.tick().await;
        let (now, total) = (Instant::now(), busy_total());
        hub.batching()
            .observe(busy_share(total.saturating_sub(busy), now - at, workers));
        (at, busy) = (now, total);
    }
}

/// The share of the workers' time spent running tasks: `busy` summed over `workers` during
/// `wall`.
fn busy_share(busy: Duration, wall: Duration, workers: usize) -> f64 {
    let capacity = wall.as_secs_f64() * workers.max(1) as f64;
    if capacity > 0.0 {
        busy.as_secs_f64() / capacity
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_of_all_workers() {
        let ms = Duration::from_millis;
        assert_eq!(busy_share(ms(50), ms(100), 1), 0.5);
        assert_eq!(busy_share(ms(50), ms(100), 2), 0.25);
        assert_eq!(busy_share(ms(0), ms(0), 1), 0.0);
    }

    /// The sampler lowers the hold of a hub that has nothing to do.
    #[tokio::test]
    async fn an_idle_runtime_holds_nothing() {
        let hub = Hub::new(liverelay_hub::HubConfig::default());
        assert!(hub.batching().audio_hold() > Duration::ZERO);
        let sampler = tokio::spawn(follow_load(hub.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.batching().audio_hold() > Duration::ZERO {
            assert!(
                Instant::now() < deadline,
                "still holding on an idle runtime"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sampler.abort();
    }
}

//! Requests held open per client address: a client that opens blocking requests without end
//! is refused (429) past `hls.max_held_per_client`, and the table holds only addresses that
//! have requests waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;

pub(super) struct HeldRequests {
    max: usize,
    by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    gauge: Gauge,
}

/// One held request; dropping it frees its place.
pub(super) struct Hold {
    by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
    gauge: Gauge,
}

impl HeldRequests {
    pub(super) fn new(max: usize, gauge: Gauge) -> Self {
        Self {
            max,
            by_client: Arc::default(),
            gauge,
        }
    }

    /// A place for one more held request of `client`, if it has one left.
    pub(super) fn hold(&self, client: IpAddr) -> Option<Hold> {
        let mut map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(client).or_insert(0);
        if *held >= self.max {
            return None;
        }
        *held += 1;
        self.gauge.inc();
        Some(Hold {
            by_client: self.by_client.clone(),
            client,
            gauge: self.gauge.clone(),
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.gauge.dec();
        let mut map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let held = HeldRequests::new(2, Gauge::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = held.hold(a).unwrap();
        let _second = held.hold(a).unwrap();
        assert!(held.hold(a).is_none(), "a third is refused");
        assert!(held.hold(b).is_some(), "others are not affected");
        drop(first);
        assert!(held.hold(a).is_some());
        drop(_second);
        assert!(
            held.by_client.lock().unwrap().is_empty() || held.by_client.lock().unwrap().len() <= 1
        );
    }
}

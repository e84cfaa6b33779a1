//! Connection slots: the global limit (one for the process's plain and RTMPS listeners) and,
//! optionally, a limit per client address, so that one address cannot take every slot. A connection holds one [`Slot`] for its life.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Global(usize),
    PerAddress(usize),
}

/// Open connections per client address.
type OpenPerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

pub(crate) struct Slots {
    global: Arc<Semaphore>,
    max: usize,
    /// Limit per address (0: none) and the open connections of each address.
    per_address: usize,
    open: OpenPerAddress,
    /// Woken each time a slot frees, for [`Slots::all_free`].
    freed: Arc<Notify>,
}

/// One open connection; its slots free on drop.
pub(crate) struct Slot {
    /// Taken on drop, so the slot is free before `freed` is signalled.
    permit: Option<OwnedSemaphorePermit>,
    address: Option<(IpAddr, OpenPerAddress)>,
    freed: Arc<Notify>,
}

impl Slots {
    pub(crate) fn new(max: usize, per_address: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(max)),
            max,
            per_address,
            open: Arc::default(),
            freed: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, counted against both limits.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Result<Slot, Full> {
        let permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Global(self.max))?;
        let address = if self.per_address == 0 {
            None
        } else {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(ip).or_default();
            if *count >= self.per_address {
                return Err(Full::PerAddress(self.per_address));
            }
            *count += 1;
            Some((ip, self.open.clone()))
        };
        Ok(Slot {
            permit: Some(permit),
            address,
            freed: self.freed.clone(),
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.max - self.global.available_permits()
    }

    /// Returns once every slot is free again. Takes no permit while it waits: with limits
    /// shared by several listeners, each waits for all of them, and a waiter holding the
    /// permits freed so far would make the others see every slot taken.
    pub(crate) async fn all_free(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between still wakes it.
            freed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            freed.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.freed.notify_waiters();
        if let Some((ip, open)) = &self.address {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_limit_counts_with_the_global_one() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let slots = Slots::new(3, 2);
        let a1 = slots.try_acquire(a).unwrap();
        let _a2 = slots.try_acquire(a).unwrap();
        assert_eq!(slots.try_acquire(a).err(), Some(Full::PerAddress(2)));
        let _b1 = slots.try_acquire(b).unwrap();
        assert_eq!(slots.try_acquire(b).err(), Some(Full::Global(3)));
        assert_eq!(slots.open(), 3);
        drop(a1);
        assert_eq!(slots.open(), 2);
        let _a3 = slots.try_acquire(a).unwrap();
        // No per-address limit: only the global one.
        let slots = Slots::new(2, 0);
        let _x = (slots.try_acquire(a).unwrap(), slots.try_acquire(a).unwrap());
        assert_eq!(slots.try_acquire(a).err(), Some(Full::Global(2)));
    }

    /// Two listeners sharing the slots both wait for every connection, and neither takes
    /// permits while waiting: the count stays true and the last connection wakes both.
    #[tokio::test]
    async fn all_free_waits_for_every_slot_without_taking_any() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots = Arc::new(Slots::new(3, 0));
        let (one, two) = (slots.try_acquire(a).unwrap(), slots.try_acquire(a).unwrap());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move { slots.all_free().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(slots.open(), 2, "a waiter took permits");
        drop(one);
        tokio::task::yield_now().await;
        assert_eq!(slots.open(), 1);
        assert!(waiters.iter().all(|w| !w.is_finished()));
        drop(two);
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("all_free returned once every slot was free")
                .unwrap();
        }
    }
}

//! Graceful shutdown of the RTMP side: stop accepting, let connections finish, then close the
//! ones left with a status.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// No new connections; existing ones go on.
    Draining,
    /// The grace period is over: remaining connections are told and closed.
    Closing,
}

/// Moves the listener and its connections through the shutdown phases.
#[derive(Clone)]
pub struct Drain {
    tx: watch::Sender<Phase>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            tx: watch::channel(Phase::Running).0,
        }
    }
}

impl Drain {
    pub fn set(&self, phase: Phase) {
        self.tx.send_replace(phase);
    }

    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }
}

/// Resolves once `phase` reaches `at_least`.
pub async fn reached(phase: &mut watch::Receiver<Phase>, at_least: Phase) {
    let rank = |p: Phase| p as u8;
    let _ = phase.wait_for(|p| rank(*p) >= rank(at_least)).await;
}

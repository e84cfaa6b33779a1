//! The publishes and plays running in this process, so that something outside a connection (a
//! revoked stream key, an operator's drop, a failed update callback) can end one within a
//! moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionRole {
    Publisher,
    Viewer,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The connection's client id.
    pub client_id: u64,
    pub addr: SocketAddr,
    pub role: SessionRole,
    pub app: String,
    pub name: String,
    /// What access tagged the session with (a stream key's id).
    pub tag: Option<String>,
}

struct Entry {
    info: SessionInfo,
    kick: oneshot::Sender<String>,
    /// Which registration made this entry: a connection's second play replaces its first
    /// under the same key, and the first's guard must not remove the second's entry.
    serial: u64,
}

/// A connection's publish and its play are entered separately.
type Key = (u64, SessionRole);

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<Key, Entry>>>,
    serials: Arc<AtomicU64>,
}

/// Removes its session from the table when the session ends.
pub struct Registered {
    sessions: Sessions,
    key: Key,
    serial: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut table = self.sessions.lock();
        if table
            .get(&self.key)
            .is_some_and(|e| e.serial == self.serial)
        {
            table.remove(&self.key);
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session, replacing the same connection's session of the same role; the receiver
    /// gets the reason if it is kicked (it is polled on every wakeup of a connection, so it is
    /// a bare channel, not a boxed future).
    pub fn register(&self, info: SessionInfo) -> (Registered, oneshot::Receiver<String>) {
        let (kick, kicked) = oneshot::channel();
        let key = (info.client_id, info.role);
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Entry { info, kick, serial });
        let registered = Registered {
            sessions: self.clone(),
            key,
            serial,
        };
        (registered, kicked)
    }

    /// Ends every session `which` selects; returns how many.
    pub fn kick(&self, which: impl Fn(&SessionInfo) -> bool, reason: &str) -> usize {
        let mut table = self.lock();
        let keys: Vec<Key> = table
            .iter()
            .filter(|(_, e)| which(&e.info))
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            if let Some(entry) = table.remove(key) {
                let _ = entry.kick.send(reason.to_string());
            }
        }
        keys.len()
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().values().map(|e| e.info.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(client_id: u64, role: SessionRole, tag: Option<&str>) -> SessionInfo {
        SessionInfo {
            client_id,
            addr: "127.0.0.1:1".parse().unwrap(),
            role,
            app: "live".into(),
            name: "cam".into(),
            tag: tag.map(String::from),
        }
    }

    #[tokio::test]
    async fn kicks_reach_only_the_selected_sessions_and_guards_unregister() {
        let sessions = Sessions::default();
        let (_a, kicked_a) = sessions.register(info(1, SessionRole::Publisher, Some("k1")));
        let (b, mut kicked_b) = sessions.register(info(2, SessionRole::Viewer, None));
        assert_eq!(
            sessions.kick(|s| s.tag.as_deref() == Some("k1"), "key revoked"),
            1
        );
        assert_eq!(kicked_a.await.unwrap(), "key revoked");
        assert!(kicked_b.try_recv().is_err());
        assert_eq!(sessions.list().len(), 1);
        drop(b);
        assert!(sessions.list().is_empty());
        assert_eq!(sessions.kick(|_| true, "x"), 0);
    }

    #[test]
    fn a_replaced_registration_leaves_its_successor_in_the_table() {
        let sessions = Sessions::default();
        let (first, _) = sessions.register(info(1, SessionRole::Viewer, None));
        let (_second, _) = sessions.register(info(1, SessionRole::Viewer, Some("new")));
        drop(first);
        let listed = sessions.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].tag.as_deref(), Some("new"));
    }
}

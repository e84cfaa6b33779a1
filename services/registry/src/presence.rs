//! Whether a stream's owner is still there, so that a publish on another ingest takes the stream
//! over at once instead of waiting out the dead owner's lease.
//!
//! Each ingest process keeps `{prefix}:alive:{pod}` = its instance id (a token per process run)
//! with a short expiry, rewritten well within it ([`Presence`]). A claim that finds the stream
//! owned looks at the owner ([`owner_gone`]): the owner is gone when that key has lapsed, holds
//! another run's id (the pod restarted under the same name), says `moving` (the pod drains), or
//! when the owner's relay endpoint refuses connections (the process died: nothing listens on
//! its port, which a `kill -9` makes true at once). Only then is the record taken over, by a
//! compare-and-swap on the generation seen, so the old owner's renewal finds itself superseded.
//!
//! The key also keeps pod ids unique ([`take_name`]): a process that finds another run's key
//! kept alive refuses to start, since two processes under one name would each take the other's
//! streams for those of a restarted pod.

use std::time::{Duration, Instant};

use liverelay_redis::RedisConn;
use liverelay_types::AbortOnDrop;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{RegistryError, StreamRecord};

/// How often a process says it is alive.
pub const PRESENCE_EVERY: Duration = Duration::from_millis(500);
/// How long that lasts: three writes, so one slow or lost write does not make a pod look dead;
/// short enough that a publisher retrying every second is taken over at its second attempt
/// even when nothing else tells that the owner died.
pub const PRESENCE_TTL: Duration = Duration::from_millis(1500);
/// How long the relay probe may take: a dead process on a reachable host refuses at once; an
/// unanswered connection (host gone, packets dropped) proves nothing and leaves it to the key.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// What a draining process writes instead of its instance id.
const MOVING: &str = "moving";

pub(crate) fn presence_key(prefix: &str, pod: &str) -> String {
    format!("{prefix}:alive:{{{pod}}}")
}

/// A token for this run of the process: a pod restarted under the same name gets a new one.
pub(crate) fn new_instance() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{nanos:x}", std::process::id())
}

/// Why the owner of `theirs` can no longer be holding its stream, if it cannot. A Redis error
/// proves nothing: the stream stays with its owner.
pub(crate) async fn owner_gone(conn: &RedisConn, theirs: &StreamRecord) -> Option<&'static str> {
    let key = presence_key(conn.key_prefix(), &theirs.owner);
    let alive: Option<String> = conn
        .query("presence", redis::cmd("GET").arg(key))
        .await
        .ok()?;
    match alive.as_deref() {
        None => return Some("its presence lapsed"),
        Some(MOVING) => return Some("it is draining"),
        Some(run) if !theirs.instance.is_empty() && run != theirs.instance => {
            return Some("it restarted");
        }
        Some(_) => {}
    }
    relay_refuses(&theirs.grpc_addr)
        .await
        .then_some("its relay endpoint refuses connections")
}

/// Takes `pod`'s presence key for this run (`instance`) before the process says it is alive.
/// A key another run holds lapses within [`PRESENCE_TTL`] if that run is gone (the pod
/// restarted under its name); one still there after that is being rewritten by a process that
/// runs: [`RegistryError::DuplicatePod`]. A Redis that cannot be asked proves nothing: the
/// process starts, and its presence loop reports a duplicate should it meet one later.
pub(crate) async fn take_name(
    conn: &RedisConn,
    pod: &str,
    instance: &str,
) -> Result<(), RegistryError> {
    let key = presence_key(conn.key_prefix(), pod);
    let deadline = Instant::now() + PRESENCE_TTL + PRESENCE_EVERY;
    loop {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(instance)
            .arg("NX")
            .arg("PX")
            .arg(PRESENCE_TTL.as_millis() as u64)
            .arg("GET");
        let held: Option<String> = match conn.query("presence", &cmd).await {
            Ok(held) => held,
            Err(e) => {
                warn!(error = %e, pod, "could not check that no other process runs as this pod");
                return Ok(());
            }
        };
        match held {
            None => return Ok(()),
            Some(theirs) if Instant::now() >= deadline => {
                return Err(RegistryError::DuplicatePod {
                    pod: pod.to_owned(),
                    instance: theirs,
                });
            }
            Some(_) => tokio::time::sleep(PRESENCE_EVERY / 5).await,
        }
    }
}

/// Whether nothing listens at the owner's relay address (a connection attempt is refused).
async fn relay_refuses(addr: &str) -> bool {
    let attempt = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await;
    matches!(attempt, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// This process saying it is alive, for as long as the value lives.
pub struct Presence {
    conn: RedisConn,
    key: String,
    moving: watch::Sender<bool>,
    _task: AbortOnDrop,
}

impl Presence {
    pub(crate) fn start(
        conn: RedisConn,
        pod: &str,
        instance: String,
        lapses: watch::Sender<u64>,
    ) -> Self {
        let key = presence_key(conn.key_prefix(), pod);
        let (moving, moving_rx) = watch::channel(false);
        let task = tokio::spawn(keep(conn.clone(), key.clone(), instance, moving_rx, lapses));
        Self {
            conn,
            key,
            moving,
            _task: AbortOnDrop::new(&task),
        }
    }

    /// The pod drains: from now on its streams are taken over by the first claim elsewhere (a
    /// publisher reconnecting to another ingest). Written at once, within `limit`.
    pub async fn moving(&self, limit: Duration) {
        self.moving.send_replace(true);
        let write = set_presence(&self.conn, &self.key, MOVING);
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(_)) => info!("streams marked as moving"),
            Ok(Err(e)) => warn!(error = %e, "could not mark streams as moving"),
            Err(_) => warn!("timed out marking streams as moving"),
        }
    }
}

async fn set_presence(
    conn: &RedisConn,
    key: &str,
    value: &str,
) -> Result<Option<String>, liverelay_redis::RedisError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(value)
        .arg("PX")
        .arg(PRESENCE_TTL.as_millis() as u64)
        .arg("GET");
    conn.query("presence", &cmd).await
}

/// Rewrites the key every [`PRESENCE_EVERY`]. A write that finds the key gone after it had been
/// written means the process looked dead for a while (cut off from Redis, paused): someone may
/// have taken its streams, so `lapses` tells the leases to check at once rather than at their
/// next renewal. A write that finds another run's id (a duplicate pod id that [`take_name`]
/// could not see: Redis was unreachable at start) is logged as an error, once per other run.
async fn keep(
    conn: RedisConn,
    key: String,
    instance: String,
    moving: watch::Receiver<bool>,
    lapses: watch::Sender<u64>,
) {
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut written, mut failing) = (false, false);
    let mut rival: Option<String> = None;
    loop {
        tick.tick().await;
        let value = if *moving.borrow() { MOVING } else { &instance };
        match set_presence(&conn, &key, value).await {
            Ok(previous) => {
                let theirs = previous
                    .as_deref()
                    .filter(|p| *p != instance && *p != MOVING);
                if let Some(theirs) = theirs.filter(|t| rival.as_deref() != Some(*t)) {
                    error!(
                        instance = theirs,
                        "another running process writes this pod's presence: pod ids must be unique, and the two take each other's streams"
                    );
                    rival = Some(theirs.to_owned());
                }
                if previous.is_none() && written {
                    warn!("presence had lapsed; checking the stream leases now");
                    lapses.send_modify(|n| *n += 1);
                }
                (written, failing) = (true, false);
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "could not write presence; other ingests may take over this pod's streams");
                }
                failing = true;
            }
        }
    }
}

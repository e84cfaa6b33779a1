//! The streams this server packages for HLS: one [`Packager`] per stream, fed by one hub
//! viewer (admitted like a play, so that an edge starts pulling), shared by every HLS client of
//! the stream, and stopped when no HLS request came for `hls.idle_secs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use liverelay_admission::{Admitted, Asker, Gate, PlayArgs, Refused};
use liverelay_hls::{Packager, PackagerConfig, playlist};
use liverelay_hub::{Viewer, ViewerItem};
use liverelay_types::{StreamId, unix_ms};
use tokio::sync::watch;
use tracing::{Instrument, debug, info};

/// Frames taken from the hub at a time.
const BATCH: usize = 64;

/// How often the streams with viewers are looked for.
const WATCHED_CHECK: Duration = Duration::from_secs(1);

/// One packaged stream.
pub(super) struct Packaged {
    packager: Mutex<Packager>,
    /// The packager's version: held requests wait for it to change.
    changed: watch::Sender<u64>,
    last_request_ms: AtomicU64,
    /// The playlist last rendered (full, delta) with its packager version: when a part comes,
    /// every held request of the stream answers with it, rendered once.
    rendered: Mutex<[Option<(u64, Bytes)>; 2]>,
}

impl Packaged {
    pub(super) fn lock(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The media playlist of `packager` (this stream's, locked by the caller). Without a query
    /// to carry into its URIs (no play token), every request between two changes shares one
    /// rendering.
    pub(super) fn playlist(&self, packager: &Packager, skip: bool, query: &str) -> Bytes {
        if !query.is_empty() {
            return Bytes::from(playlist::render(packager, skip, query));
        }
        let version = packager.version();
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut rendered[usize::from(skip)];
        if let Some((v, text)) = slot.as_ref()
            && *v == version
        {
            return text.clone();
        }
        let text = Bytes::from(playlist::render(packager, skip, ""));
        *slot = Some((version, text.clone()));
        text
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn touch(&self) {
        self.last_request_ms.store(unix_ms(), Ordering::Relaxed);
    }
}

/// The packaged streams, by name.
pub(super) struct Packagings {
    gate: Arc<Gate>,
    config: PackagerConfig,
    idle: Duration,
    streams: Mutex<HashMap<StreamId, Arc<Packaged>>>,
}

impl Packagings {
    pub(super) fn new(gate: Arc<Gate>, config: PackagerConfig, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            gate,
            config,
            idle,
            streams: Mutex::new(HashMap::new()),
        })
    }

    fn map(&self) -> MutexGuard<'_, HashMap<StreamId, Arc<Packaged>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's packaging if it runs (a request for it keeps it running).
    pub(super) fn get(&self, key: &StreamId) -> Option<Arc<Packaged>> {
        let p = self.map().get(key)?.clone();
        p.touch();
        Some(p)
    }

    /// The stream's packaging, started if it was not running: admitted like a play, so that an
    /// edge starts pulling and the hub's limits apply.
    pub(super) async fn get_or_start(
        self: &Arc<Self>,
        key: &StreamId,
    ) -> Result<Arc<Packaged>, Refused> {
        if let Some(p) = self.get(key) {
            return Ok(p);
        }
        let mut viewer = self
            .gate
            .play(Asker::Local(key.clone()), PlayArgs::default())
            .await?;
        // Its clients are counted as HLS sessions, not it.
        viewer.stop_counting();
        let mut map = self.map();
        if let Some(p) = map.get(key) {
            // Another request started it meanwhile; this viewer goes.
            p.touch();
            return Ok(p.clone());
        }
        let packaged = Arc::new(Packaged {
            packager: Mutex::new(Packager::new(self.config)),
            changed: watch::channel(0).0,
            last_request_ms: AtomicU64::new(unix_ms()),
            rendered: Mutex::default(),
        });
        map.insert(key.clone(), packaged.clone());
        drop(map);
        let span = viewer.span().clone();
        let run = package(Arc::downgrade(self), key.clone(), packaged.clone(), viewer);
        tokio::spawn(run.instrument(span));
        Ok(packaged)
    }

    /// Keeps every live stream that has viewers of another protocol packaged, so that the first
    /// HLS request for it is answered from parts already made (and an edge already pulls it).
    pub(super) async fn keep_watched_packaged(packagings: Weak<Self>) {
        let mut tick = tokio::time::interval(WATCHED_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(p) = packagings.upgrade() else {
                return;
            };
            for stream in p.gate.hub().streams() {
                // The packaging's own viewer is not counted.
                if stream.live
                    && stream.viewers > 0
                    && let Err(refused) = p.get_or_start(&stream.key).await
                {
                    debug!(stream = %stream.key, "not packaged: {refused}");
                }
            }
        }
    }

    fn remove(&self, key: &StreamId, packaged: &Arc<Packaged>) {
        let mut map = self.map();
        if map.get(key).is_some_and(|p| Arc::ptr_eq(p, packaged)) {
            map.remove(key);
        }
    }
}

/// Feeds the stream's frames to its packager until no HLS request came for the idle time or
/// the play is withdrawn.
async fn package(
    packagings: Weak<Packagings>,
    key: StreamId,
    packaged: Arc<Packaged>,
    mut viewer: Admitted<Viewer>,
) {
    let idle = match packagings.upgrade() {
        Some(p) => p.idle,
        None => return,
    };
    info!("HLS packaging started");
    let mut items = Vec::with_capacity(BATCH);
    let why = loop {
        let pending = viewer.poll(&mut items, BATCH);
        if !items.is_empty() {
            let version = {
                let mut packager = packaged.lock();
                for item in items.drain(..) {
                    match item {
                        ViewerItem::Frame(frame) => packager.push(&frame),
                        ViewerItem::Unpublished => packager.end(),
                        ViewerItem::Published => {}
                    }
                }
                packager.version()
            };
            packaged.changed.send_if_modified(|v| {
                let changed = *v != version;
                *v = version;
                changed
            });
        }
        if pending > 0 {
            tokio::task::yield_now().await;
            continue;
        }
        let last = packaged.last_request_ms.load(Ordering::Relaxed);
        let idle_for = Duration::from_millis(unix_ms().saturating_sub(last));
        let Some(left) = idle.checked_sub(idle_for) else {
            break "no HLS request for a while".to_owned();
        };
        let (viewer, withdrawn) = viewer.split();
        tokio::select! {
            () = viewer.changed() => {}
            why = withdrawn => break why,
            () = tokio::time::sleep(left) => {}
        }
    };
    info!(reason = %why, "HLS packaging stopped");
    if let Some(p) = packagings.upgrade() {
        p.remove(&key, &packaged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_between_two_changes_share_one_rendering() {
        let packaged = Packaged {
            packager: Mutex::new(Packager::new(PackagerConfig {
                segment_ms: 2000,
                part_ms: 200,
                window_segments: 10,
            })),
            changed: watch::channel(0).0,
            last_request_ms: AtomicU64::new(0),
            rendered: Mutex::default(),
        };
        let packager = packaged.lock();
        let a = packaged.playlist(&packager, false, "");
        let b = packaged.playlist(&packager, false, "");
        assert_eq!(a.as_ptr(), b.as_ptr(), "rendered once");
        let delta = packaged.playlist(&packager, true, "");
        assert_ne!(delta.as_ptr(), a.as_ptr(), "the delta is its own");
        let with_token = packaged.playlist(&packager, false, "?token=t");
        assert_ne!(
            with_token.as_ptr(),
            a.as_ptr(),
            "a query is carried into the URIs"
        );
    }
}

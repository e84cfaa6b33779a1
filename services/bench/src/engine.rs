//! The load engine: publishers and players as tokio tasks, measured in steps.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liverelay_rtmp_client::{ClientEvent, ClientOptions, RtmpClient, RtmpUrl};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

use crate::report::{Report, StepResult};
use crate::source::Source;
use crate::stats::{CoreSample, ProcSample, Summary, is_behind, median};
use crate::viewer::Viewer;
use crate::{flv, hls};

/// How players play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Rtmp,
    /// HTTP-FLV: one endless GET (`--play-url`).
    Flv,
    /// Low-Latency HLS as hls.js plays it: a blocking playlist reload for the next part, then
    /// that part.
    #[value(name = "llhls")]
    LlHls,
    /// Regular HLS: the playlist every target duration, each new complete segment.
    Hls,
}

impl Protocol {
    /// Segmented protocols receive in bursts, so their quality is whether they stall, not
    /// their rate over a few seconds.
    pub fn segmented(self) -> bool {
        matches!(self, Protocol::LlHls | Protocol::Hls)
    }
}

/// The HTTP URL players of stream `url` use: `{app}` and `{stream}` in the template replaced.
fn http_url(template: &str, url: &RtmpUrl) -> String {
    template
        .replace("{app}", &url.app)
        .replace("{stream}", &url.name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RampKind {
    /// Add players spread over the existing streams.
    Players,
    /// Add streams (a publisher each, when publishing in-process) with their players.
    Streams,
}

#[derive(Debug, Clone)]
pub struct Ramp {
    pub kind: RampKind,
    pub step: usize,
    pub interval: Duration,
    pub max: usize,
    /// Explicit targets for the first steps (players or streams); `step` continues after.
    pub points: Vec<usize>,
}

impl Ramp {
    /// The player (or stream) count after step `n` (1-based); `first` is the first step's
    /// size when no points are given.
    pub fn target(&self, n: usize, first: usize) -> usize {
        let t = match self.points.get(n - 1) {
            Some(&p) => p,
            None => match self.points.last() {
                Some(&last) => last + (n - self.points.len()) * self.step,
                None => first + (n - 1) * self.step,
            },
        };
        t.min(self.max)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where players play (and publishers publish, unless `publish_url` is set).
    pub url: RtmpUrl,
    /// Where publishers publish when that is another server (an ingest, with players on an
    /// edge); stream names follow the same rule as `url`'s.
    pub publish_url: Option<RtmpUrl>,
    /// Publish every stream from this process with this source.
    pub source: Option<Arc<Source>>,
    pub streams: usize,
    /// Fixed mode: players in total. Streams ramp: players per stream.
    pub players: usize,
    pub ramp: Option<Ramp>,
    /// Fixed mode: how long to measure (after `settle`).
    pub duration: Duration,
    /// Wait after adding players before measuring.
    pub settle: Duration,
    /// Every n-th player decodes every message (latency); the others only count bytes.
    pub sample_every: usize,
    pub rcvlowat: u32,
    /// Expected bits per second of a stream when nobody in this process publishes it.
    pub stream_bitrate: Option<u64>,
    pub behind_threshold: f64,
    /// Degradation limits for a ramp step to count as sustained.
    pub max_behind_pct: f64,
    pub max_latency_ms: f64,
    pub server_pid: Option<u32>,
    /// The core the server is pinned to: its busy % (softirq included) is reported too.
    pub server_core: Option<usize>,
    pub client: ClientOptions,
    pub protocol: Protocol,
    /// Players of HTTP protocols: URL template with `{app}` and `{stream}`.
    pub play_url: Option<String>,
    pub label: String,
    pub quiet: bool,
}

impl Plan {
    /// Where players of stream `i` play.
    pub fn stream_url(&self, i: usize) -> RtmpUrl {
        stream_at(&self.url, i)
    }

    /// Where stream `i` is published.
    pub fn publish_url(&self, i: usize) -> RtmpUrl {
        stream_at(self.publish_url.as_ref().unwrap_or(&self.url), i)
    }
}

fn stream_at(url: &RtmpUrl, i: usize) -> RtmpUrl {
    let name = if url.name.contains("{i}") {
        url.name.replace("{i}", &i.to_string())
    } else if url.name.is_empty() {
        format!("bench-{i}")
    } else {
        format!("{}-{i}", url.name)
    };
    url.with_name(name)
}

/// Counters shared by the tasks; everything is relaxed atomics or short mutexes.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) latency_ms: Mutex<Vec<f64>>,
    /// The same for video messages only (audio may wait for video; video never does).
    pub(crate) video_latency_ms: Mutex<Vec<f64>>,
    pub(crate) ttff: Mutex<Vec<(f64, bool)>>,
    pub(crate) failed: AtomicUsize,
    pub(crate) dropped: AtomicUsize,
    publishers_failed: AtomicUsize,
    last_error: Mutex<Option<String>>,
    /// The run is over: publishers leaving end HTTP players' answers, which is no failure.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn fail(&self, counter: &AtomicUsize, what: String) {
        counter.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap() = Some(what);
    }
}

pub(crate) struct PlayerSlot {
    stream: usize,
    pub(crate) bytes: AtomicU64,
    /// 0 connecting, 1 playing, 2 failed, 3 ended after playing.
    pub(crate) state: AtomicUsize,
    /// The first video frame arrived.
    pub(crate) flowing: AtomicBool,
    /// Times the player would have stopped to wait for media (HLS clients).
    pub(crate) stalls: AtomicU64,
}

impl PlayerSlot {
    pub(crate) fn new(stream: usize) -> Self {
        Self {
            stream,
            bytes: AtomicU64::new(0),
            state: AtomicUsize::new(0),
            flowing: AtomicBool::new(false),
            stalls: AtomicU64::new(0),
        }
    }
}

struct StreamSlot {
    /// Payload bytes sent by the in-process publisher.
    sent: AtomicU64,
}

pub async fn run(plan: Plan) -> Report {
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut streams: Vec<Arc<StreamSlot>> = Vec::new();
    let mut players: Vec<Arc<PlayerSlot>> = Vec::new();
    let mut steps = Vec::new();
    let started = Instant::now();

    let add_streams = |streams: &mut Vec<Arc<StreamSlot>>, n: usize| {
        for _ in 0..n {
            let i = streams.len();
            let slot = Arc::new(StreamSlot {
                sent: AtomicU64::new(0),
            });
            streams.push(slot.clone());
            if let Some(source) = &plan.source {
                tokio::spawn(publisher(
                    plan.publish_url(i),
                    source.clone(),
                    slot,
                    shared.clone(),
                    plan.client.clone(),
                    stop_rx.clone(),
                ));
            }
        }
    };

    let initial_streams = match &plan.ramp {
        Some(r) if r.kind == RampKind::Streams => r.target(1, r.step),
        _ => plan.streams,
    };
    add_streams(&mut streams, initial_streams);
    if plan.source.is_some() {
        // Let the publishers go live and fill the GOP cache, so players join a running stream.
        sleep(Duration::from_millis(2500)).await;
    }

    let mut step_no = 0;
    loop {
        step_no += 1;
        // How many players/streams after this step.
        let (want_players, want_streams) = match &plan.ramp {
            None => (plan.players, streams.len()),
            Some(r) if r.kind == RampKind::Players => {
                let first = if plan.players > 0 {
                    plan.players
                } else {
                    r.step
                };
                (r.target(step_no, first), streams.len())
            }
            Some(r) => {
                let s = r.target(step_no, r.step);
                (s * plan.players, s)
            }
        };
        if want_streams > streams.len() {
            let n = want_streams - streams.len();
            add_streams(&mut streams, n);
        }
        let step_start = Instant::now();
        let failed_before = shared.failed.load(Relaxed);
        let new = want_players.saturating_sub(players.len());
        let spread = Duration::from_millis(((new as u64) * 2).min(1000));
        for j in 0..new {
            let index = players.len();
            let stream = index % streams.len().max(1);
            let slot = Arc::new(PlayerSlot::new(stream));
            players.push(slot.clone());
            let sampled = plan.sample_every <= 1 || index.is_multiple_of(plan.sample_every);
            let viewer = Viewer::new(slot, shared.clone(), sampled);
            let url = plan.stream_url(stream);
            let stop = stop_rx.clone();
            match (&plan.play_url, plan.protocol) {
                (Some(template), protocol) if protocol != Protocol::Rtmp => {
                    let http = http_url(template, &url);
                    let timeout = plan.client.timeout;
                    match protocol {
                        Protocol::Flv => {
                            tokio::spawn(flv::player(http, viewer, plan.rcvlowat, timeout, stop))
                        }
                        _ => tokio::spawn(hls::client(
                            http,
                            viewer,
                            protocol == Protocol::LlHls,
                            timeout,
                            stop,
                        )),
                    };
                }
                _ => {
                    tokio::spawn(player(
                        url,
                        viewer,
                        plan.rcvlowat,
                        plan.client.clone(),
                        stop,
                    ));
                }
            }
            if new > 1 {
                sleep_until(step_start + spread.mul_f64((j + 1) as f64 / new as f64)).await;
            }
        }
        let measure = match &plan.ramp {
            None => plan.duration,
            Some(r) => r
                .interval
                .saturating_sub(plan.settle)
                .max(Duration::from_secs(1)),
        };
        sleep_until(step_start + plan.settle).await;
        let result = measure_step(
            &plan,
            step_no,
            &shared,
            &players,
            &streams,
            measure,
            failed_before,
            started,
        )
        .await;
        let ok = result.sustained;
        steps.push(result);
        let done = match &plan.ramp {
            None => true,
            Some(r) => {
                !ok || match r.kind {
                    RampKind::Players => players.len() >= r.max,
                    RampKind::Streams => streams.len() >= r.max,
                }
            }
        };
        if done {
            break;
        }
    }
    shared.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    // Give tasks a moment to close their sockets politely.
    sleep(Duration::from_millis(200)).await;
    let last_error = shared.last_error.lock().unwrap().clone();
    Report::new(
        &plan,
        steps,
        shared.publishers_failed.load(Relaxed),
        last_error,
    )
}

#[allow(clippy::too_many_arguments)]
async fn measure_step(
    plan: &Plan,
    step: usize,
    shared: &Shared,
    players: &[Arc<PlayerSlot>],
    streams: &[Arc<StreamSlot>],
    window: Duration,
    failed_before: usize,
    started: Instant,
) -> StepResult {
    // (bytes, playing, flowing) at the window's start.
    let snap_players: Vec<(u64, bool, bool)> = players
        .iter()
        .map(|p| {
            (
                p.bytes.load(Relaxed),
                p.state.load(Relaxed) == 1,
                p.flowing.load(Relaxed),
            )
        })
        .collect();
    let snap_stalls: Vec<u64> = players.iter().map(|p| p.stalls.load(Relaxed)).collect();
    let snap_streams: Vec<u64> = streams.iter().map(|s| s.sent.load(Relaxed)).collect();
    let srv0 = plan.server_pid.and_then(|p| ProcSample::read(Some(p)));
    let me0 = ProcSample::read(None);
    let core0 = plan.server_core.and_then(CoreSample::read);
    shared.latency_ms.lock().unwrap().clear();
    shared.video_latency_ms.lock().unwrap().clear();
    let t0 = Instant::now();
    let end = t0 + window;
    let mut latency_all: Vec<f64> = Vec::new();
    let mut video_latency: Vec<f64> = Vec::new();
    let mut srv_prev = srv0;
    let mut tick = t0;
    while Instant::now() < end {
        tick = (tick + Duration::from_secs(2)).min(end);
        sleep_until(tick).await;
        let mut lat = std::mem::take(&mut *shared.latency_ms.lock().unwrap());
        if !plan.quiet {
            let secs = tick.duration_since(t0).as_secs_f64();
            let bytes: u64 = players
                .iter()
                .zip(snap_players.iter().map(|s| s.0).chain(std::iter::repeat(0)))
                .map(|(p, b0)| p.bytes.load(Relaxed).saturating_sub(b0))
                .sum();
            let playing = players
                .iter()
                .filter(|p| p.state.load(Relaxed) == 1)
                .count();
            let srv = plan.server_pid.and_then(|p| ProcSample::read(Some(p)));
            let cpu = match (srv, srv_prev) {
                (Some(a), Some(b)) => format!("{:.0}%", a.cpu_percent_since(&b)),
                _ => "-".into(),
            };
            srv_prev = srv;
            let s = Summary::of(lat.clone());
            eprintln!(
                "[{:>6.1}s] step {step}: players {playing}/{} failed {} | egress {:.0} Mbit/s | latency p99 {} ms | server cpu {cpu}",
                started.elapsed().as_secs_f64(),
                players.len(),
                shared.failed.load(Relaxed),
                bytes as f64 * 8.0 / 1e6 / secs.max(0.001),
                s.p99.map_or("-".into(), |v| format!("{v:.1}")),
            );
        }
        latency_all.append(&mut lat);
        video_latency.append(&mut shared.video_latency_ms.lock().unwrap());
    }
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = plan.server_pid.and_then(|p| ProcSample::read(Some(p)));
    let me1 = ProcSample::read(None);
    let core1 = plan.server_core.and_then(CoreSample::read);

    // Per-stream expected rate.
    let stream_bps: Vec<f64> = streams
        .iter()
        .zip(&snap_streams)
        .map(|(s, &b0)| s.sent.load(Relaxed).saturating_sub(b0) as f64 * 8.0 / secs)
        .collect();
    // Measured: media flowing at the window's start and still playing at its end. Players
    // that played through the whole window without a single video frame are stalled.
    // Segmented clients (HLS) receive in bursts: they are behind when they stalled in the
    // window (see `viewer::Pace`) or received nothing, whatever their rate.
    let segmented = plan.protocol.segmented() && plan.play_url.is_some();
    let mut per_player: Vec<(usize, f64, bool)> = Vec::with_capacity(players.len());
    let mut starved = Vec::with_capacity(players.len());
    let mut stalled = 0;
    for (i, p) in players.iter().enumerate() {
        let (b0, was_playing, was_flowing) =
            snap_players.get(i).copied().unwrap_or((0, false, false));
        let bps = p.bytes.load(Relaxed).saturating_sub(b0) as f64 * 8.0 / secs;
        let playing = p.state.load(Relaxed) == 1;
        if was_playing && playing && !p.flowing.load(Relaxed) {
            stalled += 1;
        }
        per_player.push((p.stream, bps, was_flowing && playing));
        starved
            .push(bps == 0.0 || p.stalls.load(Relaxed) > snap_stalls.get(i).copied().unwrap_or(0));
    }
    let expected = |stream: usize| -> f64 {
        if plan.source.is_some() {
            return stream_bps.get(stream).copied().unwrap_or(0.0);
        }
        if let Some(b) = plan.stream_bitrate {
            return b as f64;
        }
        median(
            per_player
                .iter()
                .filter(|(s, _, m)| *s == stream && *m)
                .map(|(_, b, _)| *b)
                .collect(),
        )
    };
    let expected_by_stream: Vec<f64> = (0..streams.len()).map(expected).collect();
    let measured: Vec<&(usize, f64, bool)> = per_player.iter().filter(|p| p.2).collect();
    let behind = per_player
        .iter()
        .zip(&starved)
        .filter(|((s, b, m), starved)| {
            *m && if segmented {
                **starved
            } else {
                is_behind(
                    *b,
                    expected_by_stream.get(*s).copied().unwrap_or(0.0),
                    plan.behind_threshold,
                )
            }
        })
        .count()
        + stalled;
    let egress_bps: f64 = per_player.iter().map(|p| p.1).sum();
    let count = |state| {
        players
            .iter()
            .filter(|p| p.state.load(Relaxed) == state)
            .count()
    };
    let (connecting, playing) = (count(0), count(1));
    let ttff = std::mem::take(&mut *shared.ttff.lock().unwrap());
    let keyframe_first = ttff.iter().filter(|t| t.1).count();
    let failed_total = shared.failed.load(Relaxed);
    let latency = Summary::of(latency_all);
    let failed_step = failed_total - failed_before;
    let behind_pct = if measured.is_empty() && stalled == 0 {
        0.0
    } else {
        100.0 * behind as f64 / (measured.len() + stalled) as f64
    };
    let sustained = failed_step == 0
        && connecting == 0
        && behind_pct <= plan.max_behind_pct
        && latency.p99.is_none_or(|p| p <= plan.max_latency_ms);
    let mean_stream = if expected_by_stream.is_empty() {
        0.0
    } else {
        expected_by_stream.iter().sum::<f64>() / expected_by_stream.len() as f64
    };
    StepResult {
        step,
        streams: streams.len(),
        players: players.len(),
        playing,
        connecting,
        failed: failed_total,
        dropped: shared.dropped.load(Relaxed),
        measured: measured.len(),
        behind,
        seconds: secs,
        stream_mbps: mean_stream / 1e6,
        egress_mbps: egress_bps / 1e6,
        per_player_mbps: if measured.is_empty() {
            0.0
        } else {
            measured.iter().map(|p| p.1).sum::<f64>() / measured.len() as f64 / 1e6
        },
        latency_ms: latency,
        video_latency_ms: Summary::of(video_latency),
        ttff_ms: Summary::of(ttff.iter().map(|t| t.0).collect()),
        first_video_keyframe: keyframe_first,
        server_cpu_pct: match (srv1, srv0) {
            (Some(a), Some(b)) => Some(a.cpu_percent_since(&b)),
            _ => None,
        },
        server_core_busy_pct: match (core1, core0) {
            (Some(a), Some(b)) => Some(a.busy_percent_since(&b)),
            _ => None,
        },
        server_rss_mib: srv1.map(|s| s.rss_bytes as f64 / (1024.0 * 1024.0)),
        tool_cpu_pct: match (me1, me0) {
            (Some(a), Some(b)) => Some(a.cpu_percent_since(&b)),
            _ => None,
        },
        sustained,
    }
}

async fn publisher(
    url: RtmpUrl,
    source: Arc<Source>,
    slot: Arc<StreamSlot>,
    shared: Arc<Shared>,
    options: ClientOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = match RtmpClient::connect(&url, options).await {
        Ok(c) => c,
        Err(e) => return shared.fail(&shared.publishers_failed, format!("publish {url}: {e}")),
    };
    let id = match client.publish(&url.name).await {
        Ok(id) => id,
        Err(e) => return shared.fail(&shared.publishers_failed, format!("publish {url}: {e}")),
    };
    for h in source.headers() {
        client.send_media(id, &h.to_media());
    }
    let start = Instant::now();
    for frame in source.frames() {
        let due = start + Duration::from_millis(frame.timestamp);
        loop {
            tokio::select! {
                _ = sleep_until(due) => break,
                r = client.read() => match r {
                    Ok(n) if n > 0 => while client.try_event().is_some() {},
                    other => {
                        let why = other.map_or_else(|e| e.to_string(), |_| "closed by server".into());
                        return shared.fail(&shared.publishers_failed, format!("publish {url}: {why}"));
                    }
                },
                _ = stop.changed() => return,
            }
        }
        let media = frame.to_media();
        client.send_media(id, &media);
        if let Err(e) = client.flush().await {
            return shared.fail(&shared.publishers_failed, format!("publish {url}: {e}"));
        }
        slot.sent.fetch_add(media.payload.len() as u64, Relaxed);
    }
}

async fn player(
    url: RtmpUrl,
    mut viewer: Viewer,
    rcvlowat: u32,
    options: ClientOptions,
    mut stop: watch::Receiver<bool>,
) {
    let connected = async {
        let mut c = RtmpClient::connect(&url, options).await?;
        c.play(&url.name).await?;
        Ok::<_, liverelay_rtmp_client::Error>(c)
    };
    let mut client = tokio::select! {
        r = connected => match r {
            Ok(c) => c,
            Err(e) => return viewer.failed(format!("play {url}: {e}")),
        },
        _ = stop.changed() => return,
    };
    viewer.playing();
    // Decode until the first video frame (TTFF), and for good if sampled.
    while viewer.sampled || !viewer.has_frame() {
        while let Some(e) = client.try_event() {
            if let ClientEvent::Media { media, .. } = e {
                viewer.media(media.kind, &media.payload);
            }
        }
        if !viewer.sampled && viewer.has_frame() {
            break;
        }
        tokio::select! {
            r = client.read() => match r {
                Ok(0) => return viewer.ended(format!("play {url}: closed by server")),
                Ok(_) => viewer.bytes(client.bytes_received()),
                Err(e) => return viewer.ended(format!("play {url}: {e}")),
            },
            _ = stop.changed() => return,
        }
    }
    let mut bulk = client.into_bulk();
    let _ = bulk.set_recv_lowat(rcvlowat);
    loop {
        tokio::select! {
            r = bulk.read() => match r {
                Ok(0) => return viewer.ended(format!("play {url}: closed by server")),
                Ok(_) => viewer.bytes(bulk.total()),
                Err(e) => return viewer.ended(format!("play {url}: {e}")),
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(step: usize, max: usize, points: Vec<usize>) -> Ramp {
        Ramp {
            kind: RampKind::Players,
            step,
            interval: Duration::from_secs(1),
            max,
            points,
        }
    }

    #[test]
    fn ramp_targets() {
        let r = ramp(100, 350, vec![]);
        let t: Vec<usize> = (1..=5).map(|n| r.target(n, 50)).collect();
        assert_eq!(t, [50, 150, 250, 350, 350]);
        let r = ramp(1000, 5000, vec![100, 500, 1000]);
        let t: Vec<usize> = (1..=6).map(|n| r.target(n, 1)).collect();
        assert_eq!(t, [100, 500, 1000, 2000, 3000, 4000]);
    }

    #[test]
    fn stream_names() {
        let plan = |url: &str| Plan {
            url: url.parse().unwrap(),
            publish_url: None,
            source: None,
            streams: 1,
            players: 1,
            ramp: None,
            duration: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            sample_every: 1,
            rcvlowat: 1,
            stream_bitrate: None,
            behind_threshold: 0.9,
            max_behind_pct: 1.0,
            max_latency_ms: 1.0,
            server_pid: None,
            server_core: None,
            client: ClientOptions::default(),
            protocol: Protocol::Rtmp,
            play_url: None,
            label: String::new(),
            quiet: true,
        };
        assert_eq!(plan("rtmp://h/live/s").stream_url(3).name, "s-3");
        assert_eq!(plan("rtmp://h/live/a{i}b").stream_url(3).name, "a3b");
        assert_eq!(plan("rtmp://h/live").stream_url(0).name, "bench-0");
    }
}

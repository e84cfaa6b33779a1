//! Run results: per-step figures, the ramp's outcome, a text table and JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::engine::{Plan, RampKind};
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub step: usize,
    pub streams: usize,
    /// Players started so far.
    pub players: usize,
    /// Playing at the end of the step.
    pub playing: usize,
    /// Still connecting at the end of the step.
    pub connecting: usize,
    /// Connect/play failures so far.
    pub failed: usize,
    /// Players the server disconnected after they played, so far.
    pub dropped: usize,
    /// Players playing through the whole measurement window.
    pub measured: usize,
    /// Measured players that received less than 90% of their stream's rate, plus players
    /// that played through the whole window without a video frame (stalled).
    pub behind: usize,
    pub seconds: f64,
    pub stream_mbps: f64,
    pub egress_mbps: f64,
    pub per_player_mbps: f64,
    /// Delivery latency of every live message.
    pub latency_ms: Summary,
    /// The same for video messages only.
    #[serde(default)]
    pub video_latency_ms: Summary,
    /// Time to first video frame of players that started in this step.
    pub ttff_ms: Summary,
    /// How many of those got a keyframe as their first video frame.
    pub first_video_keyframe: usize,
    pub server_cpu_pct: Option<f64>,
    /// Busy % of the server's core (`--server-core`), softirq included.
    #[serde(default)]
    pub server_core_busy_pct: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub tool_cpu_pct: Option<f64>,
    pub sustained: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub command: Vec<String>,
    pub ramp: Option<String>,
    pub source: Option<String>,
    pub publishers_failed: usize,
    pub last_error: Option<String>,
    pub steps: Vec<StepResult>,
    /// The largest player count of a sustained step (ramp), else of the run.
    pub max_sustained_players: usize,
    pub max_sustained_streams: usize,
    /// The ramp ended at its maximum with every step sustained: the maxima are lower bounds.
    #[serde(default)]
    pub reached_ramp_max: bool,
}

impl Report {
    pub fn new(
        plan: &Plan,
        steps: Vec<StepResult>,
        publishers_failed: usize,
        last_error: Option<String>,
    ) -> Self {
        let best = steps
            .iter()
            .filter(|s| s.sustained)
            .max_by_key(|s| s.players);
        Self {
            label: plan.label.clone(),
            url: plan.url.to_string(),
            command: std::env::args().collect(),
            ramp: plan.ramp.as_ref().map(|r| {
                let what = match r.kind {
                    RampKind::Players => "players",
                    RampKind::Streams => "streams",
                };
                format!("+{} {what} every {:?} up to {}", r.step, r.interval, r.max)
            }),
            source: plan.source.as_ref().map(|s| match s.as_ref() {
                crate::source::Source::Synthetic(x) => format!(
                    "synthetic {:.2} Mbit/s, {} fps, GOP {} s",
                    x.bitrate as f64 / 1e6,
                    x.fps,
                    x.gop_secs
                ),
                crate::source::Source::Flv(f) => format!(
                    "FLV, {:.2} Mbit/s, loop {} ms",
                    f.bitrate().unwrap_or(0) as f64 / 1e6,
                    f.period
                ),
            }),
            publishers_failed,
            last_error,
            reached_ramp_max: plan.ramp.is_some()
                && !steps.is_empty()
                && steps.iter().all(|s| s.sustained),
            max_sustained_players: best.map_or(0, |s| s.players),
            max_sustained_streams: best.map_or(0, |s| s.streams),
            steps,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |x| format!("{x:.d$}"));
        let _ = writeln!(out, "{}  {}", self.label, self.url);
        if let Some(s) = &self.source {
            let _ = writeln!(out, "source: {s}");
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(out, "ramp: {r}");
        }
        let _ = writeln!(
            out,
            "{:>4} {:>6} {:>7} {:>7} {:>5} {:>5} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6} {:>7} {:>6} {:>3}",
            "step",
            "strms",
            "players",
            "playing",
            "fail",
            "drop",
            "behind",
            "egress",
            "per-pl",
            "lat50",
            "lat99",
            "latmax",
            "ttff50",
            "ttff99",
            "key%",
            "srvCPU",
            "srvRSS",
            "tool",
            "ok"
        );
        let _ = writeln!(
            out,
            "{:>4} {:>6} {:>7} {:>7} {:>5} {:>5} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6} {:>7} {:>6} {:>3}",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "Mbit/s",
            "Mbit/s",
            "ms",
            "ms",
            "ms",
            "ms",
            "ms",
            "",
            "%",
            "MiB",
            "CPU%",
            ""
        );
        for s in &self.steps {
            let key = if s.ttff_ms.count > 0 {
                format!(
                    "{:.0}",
                    100.0 * s.first_video_keyframe as f64 / s.ttff_ms.count as f64
                )
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:>4} {:>6} {:>7} {:>7} {:>5} {:>5} {:>6} {:>9.0} {:>8.3} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6} {:>5} {:>7} {:>6} {:>3}",
                s.step,
                s.streams,
                s.players,
                s.playing,
                s.failed,
                s.dropped,
                s.behind,
                s.egress_mbps,
                s.per_player_mbps,
                f(s.latency_ms.p50, 1),
                f(s.latency_ms.p99, 1),
                f(s.latency_ms.max, 1),
                f(s.ttff_ms.p50, 1),
                f(s.ttff_ms.p99, 1),
                key,
                f(s.server_cpu_pct, 0),
                f(s.server_core_busy_pct, 0),
                f(s.server_rss_mib, 1),
                f(s.tool_cpu_pct, 0),
                if s.sustained { "yes" } else { "NO" },
            );
        }
        let _ = writeln!(
            out,
            "max sustained: {}{} players on {} streams{}",
            if self.reached_ramp_max { ">= " } else { "" },
            self.max_sustained_players,
            self.max_sustained_streams,
            if self.publishers_failed > 0 {
                format!(" ({} publishers failed)", self.publishers_failed)
            } else {
                String::new()
            }
        );
        if let Some(e) = &self.last_error {
            let _ = writeln!(out, "last error: {e}");
        }
        out
    }
}

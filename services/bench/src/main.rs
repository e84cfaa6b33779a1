//! liverelay-bench: an RTMP load generator.
//!
//! `publish` N streams, `play` M players (optionally ramping), or `run` both in one process
//! (needed for delivery latency with FLV sources and for publisher-side stream rates). Reports
//! a table on stdout, JSON with `--json`, a PNG plot with `--plot`; `plot` merges JSON reports
//! into one comparison plot.

mod compare;
mod engine;
mod flv;
mod hls;
mod http1;
mod plot;
mod report;
mod source;
mod stats;
mod units;
mod viewer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use liverelay_rtmp::handshake::ClientKind;
use liverelay_rtmp_client::{ClientOptions, RtmpUrl};

use engine::{Plan, Protocol, Ramp, RampKind};
use report::Report;
use source::{FlvFile, Source, SyntheticSpec};

#[derive(Parser)]
#[command(
    name = "liverelay-bench",
    version,
    about = "RTMP load generator: publishers, players, ramps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish N streams (rtmp://host/app/NAME-{i}) until --duration or ctrl-c.
    Publish {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Play streams published elsewhere; fixed count or ramp.
    Play {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Publish and play from this process (latency and stream rates measured end to end).
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Markdown table of runs side by side: min / median / max per label.
    Compare {
        /// `LABEL=PATH` of JSON reports; several per label (repeated runs).
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Figures at these player counts (steps that hit them exactly).
        #[arg(long, value_delimiter = ',')]
        at: Vec<usize>,
    },
    /// Draw JSON reports of ramps into one PNG (server CPU and latency p99 vs players).
    Plot {
        /// Reports written with --json; `LABEL=PATH` overrides the report's label.
        #[arg(required = true)]
        inputs: Vec<String>,
        #[arg(long, short)]
        out: PathBuf,
        #[arg(long, default_value = "RTMP fan-out ramp")]
        title: String,
        #[arg(long)]
        font: Option<PathBuf>,
    },
}

#[derive(Args)]
struct Common {
    /// rtmp://host[:port]/app/name; stream i is `name-{i}` (or `{i}` in the name is replaced).
    #[arg(long, default_value = "rtmp://127.0.0.1:1935/live/bench")]
    url: String,
    /// Publish to this server instead (e.g. an ingest, with `--url` on an edge of it).
    #[arg(long)]
    publish_url: Option<String>,
    /// Streams (publishers, or streams the players spread over).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Fixed mode: how long to measure after the players settled.
    #[arg(long, value_parser = units::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Per-step limit for connect/handshake/play.
    #[arg(long, value_parser = units::parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Simple (not digest) handshake.
    #[arg(long)]
    simple_handshake: bool,
    /// For `rtmps://` URLs: trust the CA certificates in this PEM file instead of the
    /// system's roots (e.g. a test server's self-signed certificate).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Label in the report and plot legend.
    #[arg(long, default_value = "run")]
    label: String,
    /// Server process to sample CPU and RSS of (/proc/PID).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The core the server is pinned to: also report that core's busy % (/proc/stat).
    #[arg(long)]
    server_core: Option<usize>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a PNG plot of the steps here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// TrueType font for the plot (default: DejaVu Sans from fonts-dejavu-core).
    #[arg(long)]
    font: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SourceArgs {
    /// Loop this FLV file (paced by its timestamps) instead of a synthetic stream.
    #[arg(long)]
    flv: Option<PathBuf>,
    /// Write send stamps into FLV frames (breaks the picture; gives latency figures).
    #[arg(long)]
    stamp_flv: bool,
    /// Synthetic stream: total bitrate (video + audio).
    #[arg(long, value_parser = units::parse_bitrate, default_value = "2.5M")]
    bitrate: u64,
    /// Synthetic stream: audio part of the bitrate (0: no audio).
    #[arg(long, value_parser = units::parse_bitrate_or_zero, default_value = "128k")]
    audio_bitrate: u64,
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Keyframe interval.
    #[arg(long, value_parser = units::parse_duration, default_value = "2s")]
    gop: Duration,
}

#[derive(Args)]
struct PlayArgs {
    /// How players play: rtmp (from --url), or over HTTP from --play-url: flv (HTTP-FLV),
    /// llhls (blocking playlist reloads and parts, as hls.js in low-latency mode), hls
    /// (playlist polls and complete segments).
    #[arg(long, value_enum, default_value = "rtmp")]
    protocol: Protocol,
    /// HTTP players: the URL, `{app}` and `{stream}` replaced by the app and stream i's name
    /// of --url, e.g. http://127.0.0.1:8080/hls/{app}/{stream}/index.m3u8.
    #[arg(long)]
    play_url: Option<String>,
    /// Fixed mode: players in total (spread over the streams). Players ramp: the first step.
    /// Streams ramp: players per stream.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Ramp: add this many players (or streams, with --ramp-streams) per step.
    #[arg(long)]
    ramp_step: Option<usize>,
    /// Ramp: explicit targets for the first steps, e.g. 100,500,1000 (--ramp-step continues).
    #[arg(long, value_delimiter = ',')]
    ramp_at: Vec<usize>,
    /// Ramp streams (a publisher each with `run`) instead of players.
    #[arg(long)]
    ramp_streams: bool,
    #[arg(long, value_parser = units::parse_duration, default_value = "6s")]
    ramp_interval: Duration,
    /// Ramp: stop at this many players (streams).
    #[arg(long, default_value_t = 10_000)]
    ramp_max: usize,
    /// Wait after adding players before measuring.
    #[arg(long, value_parser = units::parse_duration, default_value = "2s")]
    settle: Duration,
    /// Every n-th player decodes every message and measures latency; the rest read in bulk.
    #[arg(long, default_value_t = 25)]
    sample_every: usize,
    /// SO_RCVLOWAT for bulk players, bytes.
    #[arg(long, default_value_t = 32 * 1024)]
    rcvlowat: u32,
    /// Expected stream bitrate when the publisher is elsewhere (default: median of players).
    #[arg(long, value_parser = units::parse_bitrate)]
    stream_bitrate: Option<u64>,
    /// A player is behind below this fraction of its stream's rate.
    #[arg(long, default_value_t = 0.9)]
    behind_threshold: f64,
    /// A ramp step is sustained with at most this % of players behind...
    #[arg(long, default_value_t = 1.0)]
    max_behind_pct: f64,
    /// ...and a delivery latency p99 of at most this (default 500; none for HLS clients,
    /// whose quality is not stalling), no failed or pending connects.
    #[arg(long)]
    max_latency_ms: Option<f64>,
}

fn client_options(c: &Common) -> anyhow::Result<ClientOptions> {
    let tls = match &c.ca {
        Some(ca) => Some(Arc::new(
            liverelay_tls::client_config(Some(ca), None)
                .with_context(|| format!("loading CA certificates from {}", ca.display()))?,
        )),
        None => None,
    };
    Ok(ClientOptions {
        timeout: c.timeout,
        handshake: if c.simple_handshake {
            ClientKind::Simple
        } else {
            ClientKind::Digest
        },
        tls,
        ..ClientOptions::default()
    })
}

fn make_source(s: &SourceArgs) -> anyhow::Result<Source> {
    Ok(match &s.flv {
        Some(path) => Source::Flv(FlvFile::open(path, s.stamp_flv)?),
        None => Source::Synthetic(SyntheticSpec {
            bitrate: s.bitrate,
            audio_bitrate: s.audio_bitrate.min(s.bitrate / 2),
            fps: s.fps.clamp(1.0, 240.0),
            gop_secs: s.gop.as_secs_f64().max(1.0 / s.fps.clamp(1.0, 240.0)),
            ..SyntheticSpec::default()
        }),
    })
}

fn plan(common: &Common, source: Option<Source>, play: Option<&PlayArgs>) -> anyhow::Result<Plan> {
    let url: RtmpUrl = common.url.parse()?;
    let nominal = source.as_ref().and_then(Source::nominal_bitrate);
    let (players, ramp) = match play {
        None => (0, None),
        Some(p) => (
            p.players,
            (p.ramp_step.is_some() || !p.ramp_at.is_empty()).then(|| Ramp {
                kind: if p.ramp_streams {
                    RampKind::Streams
                } else {
                    RampKind::Players
                },
                step: p.ramp_step.unwrap_or(p.players.max(1)).max(1),
                interval: p.ramp_interval,
                max: p.ramp_max,
                points: p.ramp_at.clone(),
            }),
        ),
    };
    let d = PlayArgs::defaults();
    let p = play.unwrap_or(&d);
    if p.protocol != Protocol::Rtmp && p.play_url.is_none() {
        anyhow::bail!("--protocol {:?} needs --play-url", p.protocol);
    }
    Ok(Plan {
        url,
        publish_url: common.publish_url.as_deref().map(str::parse).transpose()?,
        source: source.map(Arc::new),
        streams: common.streams.max(1),
        players,
        ramp,
        duration: common.duration,
        settle: p.settle,
        sample_every: p.sample_every.max(1),
        rcvlowat: p.rcvlowat,
        stream_bitrate: p.stream_bitrate.or(nominal),
        behind_threshold: p.behind_threshold,
        max_behind_pct: p.max_behind_pct,
        max_latency_ms: p.max_latency_ms.unwrap_or(if p.protocol.segmented() {
            f64::INFINITY
        } else {
            500.0
        }),
        protocol: p.protocol,
        play_url: p.play_url.clone(),
        server_pid: common.server_pid,
        server_core: common.server_core,
        client: client_options(common)?,
        label: common.label.clone(),
        quiet: common.quiet,
    })
}

impl PlayArgs {
    fn defaults() -> Self {
        Self {
            protocol: Protocol::Rtmp,
            play_url: None,
            players: 0,
            ramp_step: None,
            ramp_at: Vec::new(),
            ramp_streams: false,
            ramp_interval: Duration::from_secs(6),
            ramp_max: 0,
            settle: Duration::from_secs(2),
            sample_every: 1,
            rcvlowat: 1,
            stream_bitrate: None,
            behind_threshold: 0.9,
            max_behind_pct: 100.0,
            max_latency_ms: Some(f64::INFINITY),
        }
    }
}

fn finish(report: &Report, common: &Common) -> anyhow::Result<()> {
    print!("{}", report.table());
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &common.plot {
        plot::register_font(common.font.as_deref())?;
        plot::ramp_plot(std::slice::from_ref(report), &report.label, path)?;
    }
    Ok(())
}

async fn run_plan(plan: Plan) -> anyhow::Result<Report> {
    tokio::select! {
        r = engine::run(plan) => Ok(r),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

fn read_report(path: &str) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Publish { common, source } => {
            let plan = plan(&common, Some(make_source(&source)?), None)?;
            let report = rt.block_on(run_plan(plan))?;
            finish(&report, &common)
        }
        Command::Play { common, play } => {
            let plan = plan(&common, None, Some(&play))?;
            let report = rt.block_on(run_plan(plan))?;
            finish(&report, &common)
        }
        Command::Run {
            common,
            source,
            play,
        } => {
            let plan = plan(&common, Some(make_source(&source)?), Some(&play))?;
            let report = rt.block_on(run_plan(plan))?;
            finish(&report, &common)
        }
        Command::Compare { inputs, at } => {
            let mut groups = std::collections::BTreeMap::<String, Vec<Report>>::new();
            let mut order = Vec::new();
            for input in inputs {
                let (label, path) = input
                    .split_once('=')
                    .with_context(|| format!("expected LABEL=PATH, got {input}"))?;
                let r = read_report(path)?;
                if !groups.contains_key(label) {
                    order.push(label.to_owned());
                }
                groups.entry(label.to_owned()).or_default().push(r);
            }
            print!("{}", compare::markdown(&groups, &order, &at));
            Ok(())
        }
        Command::Plot {
            inputs,
            out,
            title,
            font,
        } => {
            let mut reports = Vec::new();
            for input in inputs {
                let (label, path) = match input.split_once('=') {
                    Some((l, p)) => (Some(l.to_owned()), p.to_owned()),
                    None => (None, input),
                };
                let mut r = read_report(&path)?;
                if let Some(l) = label {
                    r.label = l;
                }
                reports.push(r);
            }
            plot::register_font(font.as_deref())?;
            plot::ramp_plot(&reports, &title, &out)
        }
    }
}

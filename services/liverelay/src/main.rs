//! The `liverelay` binary: parses flags, loads settings, sets up logging and runs one role.

mod metrics;

use liverelay_types::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use liverelay_config::{LogFormat, Overrides, Settings};
use liverelay_telemetry::LogFormat as TelemetryFormat;

#[derive(Parser)]
#[command(
    name = "liverelay",
    version,
    about = "Clustered RTMP live-streaming relay"
)]
struct Cli {
    #[command(subcommand)]
    role: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process, state in memory (no Redis).
    Standalone(Common),
    /// Cluster ingest: accepts publishers, registers streams in Redis, serves edges over gRPC.
    Ingest(Common),
    /// Cluster edge: serves viewers, pulling streams from ingests over gRPC.
    Edge(Common),
    /// Control service: stream keys, auth callbacks, routing.
    Control(Common),
    /// Print the `Relay` CustomResourceDefinition (YAML) that control reconciles.
    Crd,
}

#[derive(Args)]
struct Common {
    /// TOML configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// RTMP listen address [default: 0.0.0.0:1935].
    #[arg(long, value_name = "ADDR")]
    rtmp_listen: Option<SocketAddr>,
    /// HTTP listen address for /healthz, /readyz and the API [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Public HTTP listen address: only the playback routes (HTTP-FLV, HLS, the player page)
    /// [default: none].
    #[arg(long, value_name = "ADDR")]
    public_http_listen: Option<SocketAddr>,
    /// Print the effective settings (defaults < file < environment < flags) as JSON and exit.
    #[arg(long)]
    print_config: bool,
    /// Log format: text (default) or json.
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Cluster registry (ingest, edge) [default: redis://127.0.0.1:6379].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Relay gRPC listen address of an ingest [default: 0.0.0.0:50051].
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Shared secret of the cluster's relay calls (ingest, edge).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LIVERELAY_CLUSTER_TOKEN",
        hide_env_values = true
    )]
    cluster_token: Option<String>,
    /// Control's gRPC endpoint (ingest: check stream keys with it), e.g. http://control:50051.
    #[arg(long, value_name = "URL")]
    control_url: Option<String>,
    /// Bearer token of control's admin API.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LIVERELAY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format '{other}' (text or json)")),
    }
}

impl Common {
    fn settings(&self) -> anyhow::Result<Settings> {
        let overrides = Overrides {
            rtmp_listen: self.rtmp_listen,
            http_listen: self.http_listen,
            public_http_listen: self.public_http_listen,
            log_format: self.log_format,
            redis_url: self.redis_url.clone(),
            grpc_listen: self.grpc_listen,
            cluster_token: self.cluster_token.clone(),
            control_url: self.control_url.clone(),
            admin_token: self.admin_token.clone(),
        };
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

/// Log format: as configured, else JSON lines in the cluster roles and text in standalone.
fn log_format(settings: &Settings, role: Role) -> TelemetryFormat {
    match settings.log.format {
        Some(LogFormat::Json) => TelemetryFormat::Json,
        Some(LogFormat::Text) => TelemetryFormat::Text,
        None if role == Role::Standalone => TelemetryFormat::Text,
        None => TelemetryFormat::Json,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, role) = match &cli.role {
        Command::Standalone(c) => (c, Role::Standalone),
        Command::Ingest(c) => (c, Role::Ingest),
        Command::Edge(c) => (c, Role::Edge),
        Command::Control(c) => (c, Role::Control),
        Command::Crd => {
            print!("{}", liverelay_control::kubernetes::crd_yaml());
            return ExitCode::SUCCESS;
        }
    };
    let settings = match common.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("liverelay: {e:#}");
            return ExitCode::from(2);
        }
    };
    if common.print_config {
        match serde_json::to_string_pretty(&settings) {
            Ok(json) => {
                println!("{json}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("liverelay: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("liverelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = log_format(&settings, role);
    let filter = settings.log.filter.clone();
    let telemetry = runtime
        .block_on(async { liverelay_telemetry::init(role.as_str(), format, filter.as_deref()) });
    let metrics = metrics::Families::register(role);
    let result = runtime.block_on(async move {
        match role {
            Role::Ingest => {
                liverelay_ingest::run(settings, metrics.ingest(), shutdown_signal()).await
            }
            Role::Edge => liverelay_edge::run(settings, metrics.edge(), shutdown_signal()).await,
            Role::Control => {
                liverelay_control::run(settings, metrics.control(), shutdown_signal()).await
            }
            Role::Standalone => {
                liverelay_standalone::run(settings, metrics.standalone(), shutdown_signal()).await
            }
        }
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    // Flushes buffered spans while the runtime is still there.
    drop(telemetry);
    code
}

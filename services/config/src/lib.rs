//! Settings shared by every role, loaded through the `config` crate in this order (later wins):
//! built-in defaults, the TOML file given with `--config`, `LIVERELAY_*` environment variables
//! (`LIVERELAY_RTMP__CHUNK_SIZE=8192`: sections and keys joined by a double underscore), and
//! command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use liverelay_hub::{FanoutEncoding, HubConfig};
use liverelay_redis::{RedisConfig, RedisTls};
use liverelay_registry::RedisRegistryConfig;
use liverelay_rtmp::chunk::{ChunkLimits, MAX_CHUNK_SIZE, MAX_MESSAGE_LENGTH};
use liverelay_rtmp::session::ServerConfig;
use liverelay_rtmp_server::RtmpServerConfig;
use liverelay_static_relay::{RelayConfig, RelaySpec};
use serde::{Deserialize, Serialize};

mod access;
pub mod redact;

pub use access::{
    AuthSettings, ControlSettings, ControlUnavailable, NotifyMethod, NotifySettings, PlayAuth,
    PublishAuth, WebhookSettings,
};

// Unknown top-level keys are tolerated (unlike inside sections): every `LIVERELAY_*` variable
// lands here, including ones meant for flags such as `LIVERELAY_CLUSTER_TOKEN`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default)]
pub struct Settings {
    pub rtmp: RtmpSettings,
    pub http: HttpSettings,
    pub hub: HubSettings,
    pub hls: HlsSettings,
    pub log: LogSettings,
    pub redis: RedisSettings,
    pub cluster: ClusterSettings,
    pub metrics: MetricsSettings,
    /// Static pull and push relays (`[[relays]]`), run once per cluster.
    #[serde(serialize_with = "redact::relays")]
    pub relays: Vec<RelayConfig>,
    pub auth: AuthSettings,
    /// nginx-rtmp style HTTP callbacks, per app.
    pub notify: Vec<NotifySettings>,
    pub control: ControlSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Streams that get their own per-stream series on `/metrics` (the most watched first).
    pub max_stream_series: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            max_stream_series: 500,
        }
    }
}

/// The cluster registry (ingest and edge roles).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` or `rediss://...`; for Redis Cluster, the seed
    /// nodes separated by commas. Also `--redis-url`.
    #[serde(serialize_with = "redact::redis_url")]
    pub url: String,
    /// Use the Redis Cluster client.
    pub cluster: bool,
    pub key_prefix: String,
    /// How long a stream's ownership lasts without a heartbeat (renewed every third of it).
    pub lease_ttl_ms: u64,
    /// Each Redis operation fails after this long.
    pub op_timeout_ms: u64,
    /// PEM CA bundle a `rediss://` server's certificate must chain to (default: system roots).
    pub tls_ca: Option<String>,
    /// PEM certificate and key shown to a `rediss://` server that requires client certificates.
    pub tls_client_cert: Option<String>,
    pub tls_client_key: Option<String>,
    /// About how many webhook events the Redis queue keeps for control (`XADD MAXLEN ~`).
    pub webhook_queue_len: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            key_prefix: "liverelay".into(),
            lease_ttl_ms: 5000,
            op_timeout_ms: 1000,
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
            webhook_queue_len: 10_000,
        }
    }
}

/// How pods of a cluster find and trust each other.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Shared secret every relay call carries (`--cluster-token`, `LIVERELAY_CLUSTER_TOKEN`).
    #[serde(serialize_with = "redact::secret")]
    pub token: Option<String>,
    /// This pod's id in the registry; defaults to `POD_NAME`, then `HOSTNAME`.
    pub pod_id: Option<String>,
    /// Where an ingest serves the relay (`--grpc-listen`).
    pub grpc_listen: SocketAddr,
    /// Address edges use to reach this ingest; defaults to `POD_IP` (or 127.0.0.1) with the
    /// port of `grpc_listen` when that listens on all interfaces.
    pub advertise_addr: Option<String>,
    /// How long an edge keeps pulling a stream after its last viewer left.
    pub upstream_linger_secs: u64,
    /// How long an edge keeps its viewers connected while it looks for a new source after its
    /// upstream broke; then they get `NetStream.Play.UnpublishNotify`.
    pub reconnect_window_secs: u64,
    /// Streams an edge pulls (or waits for) at once; plays of further names are refused.
    pub max_upstreams: usize,
    /// Let RTMP players play from an ingest directly.
    pub ingest_allow_play: bool,
    /// PEM certificate chain and key: an ingest serves the relay over TLS when both are set.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// PEM CA bundle: an edge connects to ingests over TLS, trusting these CAs, when set.
    pub tls_ca: Option<String>,
    /// Name the ingests' certificates are checked against (default: the host of the address).
    pub tls_domain: Option<String>,
    /// PEM CA bundle: the relay and control gRPC servers require a client certificate signed
    /// by one of these CAs (mutual TLS, in addition to the cluster token).
    pub tls_client_ca: Option<String>,
    /// PEM certificate and key edges and ingests show to the relay and control gRPC servers.
    pub tls_client_cert: Option<String>,
    pub tls_client_key: Option<String>,
    /// RTMP URL players use to reach this pod (control's route answer); defaults to
    /// `rtmp://POD_IP:<rtmp port>`.
    pub public_rtmp_url: Option<String>,
    /// How often a pod reports its load (viewers per stream, draining) to the registry.
    pub report_interval_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            token: None,
            pod_id: None,
            grpc_listen: "0.0.0.0:50051".parse().expect("valid address"),
            advertise_addr: None,
            upstream_linger_secs: 10,
            reconnect_window_secs: 10,
            max_upstreams: 1000,
            ingest_allow_play: false,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_domain: None,
            tls_client_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
            public_rtmp_url: None,
            report_interval_secs: 5,
        }
    }
}

/// This pod's address as other pods and players reach it: `POD_IP` (the Kubernetes downward
/// API), else 127.0.0.1.
fn pod_host() -> String {
    std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into())
}

impl ClusterSettings {
    pub fn pod_id(&self) -> String {
        self.pod_id
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("liverelay-{}", std::process::id()))
    }

    pub fn advertise_addr(&self) -> String {
        if let Some(addr) = &self.advertise_addr {
            return addr.clone();
        }
        if self.grpc_listen.ip().is_unspecified() {
            format!("{}:{}", pod_host(), self.grpc_listen.port())
        } else {
            self.grpc_listen.to_string()
        }
    }

    /// Where players reach this pod: `public_rtmp_url`, else `rtmp://POD_IP:<rtmp port>`
    /// (`rtmps://` and the RTMPS port when the pod serves RTMPS only).
    pub fn public_rtmp_url(&self, rtmp: &RtmpSettings) -> String {
        self.public_rtmp_url.clone().unwrap_or_else(|| {
            let host = pod_host();
            match rtmp.tls_listen.filter(|_| rtmp.tls_only) {
                Some(tls) => format!("rtmps://{host}:{}", tls.port()),
                None => format!("rtmp://{host}:{}", rtmp.listen.port()),
            }
        })
    }

    /// The certificate and key files this pod shows to gRPC servers that require one.
    pub fn client_identity(&self) -> Option<(PathBuf, PathBuf)> {
        let cert = self.tls_client_cert.as_ref()?;
        let key = self.tls_client_key.as_ref()?;
        Some((cert.into(), key.into()))
    }

    /// The token, which cluster roles cannot run without.
    pub fn require_token(&self) -> Result<&str, SettingsError> {
        match self.token.as_deref() {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(SettingsError::Invalid(
                "cluster.token is required for cluster roles (--cluster-token or LIVERELAY_CLUSTER_TOKEN)".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSettings {
    pub listen: SocketAddr,
    /// RTMPS listener (e.g. "0.0.0.0:443"); needs `tls_cert` and `tls_key`. Unset: no RTMPS.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key of the RTMPS listener; reloaded when they change.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Serve RTMPS only: the plain `listen` is not opened.
    pub tls_only: bool,
    /// Chunk size we send with (announced to every peer).
    pub chunk_size: u32,
    /// Largest chunk size a peer may set.
    pub max_chunk_size: u32,
    pub max_message_size: u32,
    /// Largest message before a publish is accepted (connect, play, ...).
    pub max_message_size_before_publish: u32,
    pub ack_window: u32,
    pub handshake_timeout_secs: u64,
    /// `connect` must come this soon after the handshake...
    pub connect_timeout_secs: u64,
    /// ...and a publish or play this soon after `connect`.
    pub start_timeout_secs: u64,
    /// Longest app or stream name, in bytes.
    pub max_name_len: usize,
    pub ping_interval_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    /// Connections one client address may hold at once (0: no limit of its own).
    pub max_connections_per_ip: usize,
    /// Plays one connection may ask for in all, and within a minute (0: no limit).
    pub max_plays_per_connection: u32,
    pub max_plays_per_minute: u32,
    pub tcp_nodelay: bool,
    /// On SIGTERM: how long existing connections may go on before they are closed.
    pub drain_grace_secs: u64,
    /// Write to each player at most once per this many milliseconds (0: at every frame).
    pub write_coalesce_ms: u64,
    /// The publisher writes each frame to the players that keep up itself, as it arrives
    /// (plain TCP players; not with `write_coalesce_ms`).
    pub direct_writes: bool,
}

/// The runtime configs' defaults (`RtmpServerConfig` and the session's `ServerConfig`) in the
/// settings' units, plus what only the settings have (listeners, TLS, drain).
impl Default for RtmpSettings {
    fn default() -> Self {
        let server = RtmpServerConfig::default();
        let session = &server.session;
        Self {
            listen: "0.0.0.0:1935".parse().expect("valid address"),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_only: false,
            chunk_size: session.chunk_size,
            max_chunk_size: session.limits.max_chunk_size,
            max_message_size: session.limits.max_message_size,
            max_message_size_before_publish: session.max_message_size_before_publish,
            ack_window: session.ack_window,
            handshake_timeout_secs: server.handshake_timeout.as_secs(),
            connect_timeout_secs: session.connect_timeout.as_secs(),
            start_timeout_secs: session.start_timeout.as_secs(),
            max_name_len: session.max_name_len,
            ping_interval_secs: session.ping_interval.as_secs(),
            idle_timeout_secs: session.idle_timeout.as_secs(),
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            max_plays_per_connection: server.max_plays_per_connection,
            max_plays_per_minute: server.max_plays_per_minute,
            tcp_nodelay: server.tcp_nodelay,
            drain_grace_secs: 30,
            write_coalesce_ms: server.write_coalesce.as_millis() as u64,
            direct_writes: server.direct_writes,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// A second listener that serves only what viewers need (HTTP-FLV, HLS, the player page),
    /// never `/metrics`, `/healthz` or the `/v1` APIs: the one to expose to the internet. Same
    /// TLS settings and limits as `listen`.
    pub public_listen: Option<SocketAddr>,
    /// PEM certificate chain and key: the HTTP endpoints (health, metrics, APIs) are served
    /// over HTTPS instead, on the same address; reloaded when the files change.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Open connections at once; further ones are closed at accept.
    pub max_connections: usize,
    /// A request's headers must arrive within this (and an idle keep-alive connection is
    /// closed after it): a slowloris client costs one connection for this long.
    pub header_read_timeout_secs: u64,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// Request bodies beyond this get 413, on every route.
    pub max_body_bytes: usize,
    /// Requests one HTTP/2 connection may have open at once (each HTTP-FLV viewer is one):
    /// `http.max_connections` bounds connections, this bounds what each carries.
    pub max_streams_per_connection: u32,
    /// How long an HTTP-FLV viewer of a stream that is not live waits for it (on an edge, for
    /// the pull from the ingest too) before the answer is 404.
    pub flv_wait_secs: u64,
    /// Where the player page's scripts are (`make player` puts them in `player/dist`);
    /// relative to the working directory.
    pub player_dir: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".parse().expect("valid address"),
            public_listen: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 1024,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_body_bytes: 64 * 1024,
            max_streams_per_connection: 64,
            flv_wait_secs: 10,
            player_dir: "player/dist".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HubSettings {
    pub gop_cache: bool,
    pub gop_max_bytes: usize,
    pub gop_max_duration_ms: u64,
    pub viewer_queue_frames: usize,
    pub viewer_queue_bytes: usize,
    pub max_streams: usize,
    /// Streams with viewers but no publisher, counted apart from `max_streams`.
    pub max_waiting_streams: usize,
    pub gop_max_frames: usize,
    /// Audio rides with the next video frame unless the viewers were not woken for this long.
    pub audio_hold_ms: u64,
    /// The hold follows the load: none while the process has CPU to spare, all of
    /// `audio_hold_ms` when it is busy. Off: always `audio_hold_ms`.
    pub audio_hold_adaptive: bool,
}

impl Default for HubSettings {
    fn default() -> Self {
        let d = HubConfig::default();
        Self {
            gop_cache: d.gop_cache,
            gop_max_bytes: d.gop_max_bytes,
            gop_max_duration_ms: d.gop_max_duration_ms,
            viewer_queue_frames: d.viewer_queue_frames,
            viewer_queue_bytes: d.viewer_queue_bytes,
            max_streams: d.max_streams,
            max_waiting_streams: d.max_waiting_streams,
            gop_max_frames: d.gop_max_frames,
            audio_hold_ms: d.audio_hold.as_millis() as u64,
            audio_hold_adaptive: true,
        }
    }
}

/// Low-Latency HLS (`/hls/{app}/{stream}/index.m3u8`) on the roles that serve viewers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSettings {
    pub enabled: bool,
    /// Segments start at the first keyframe this long after the previous start. In a cluster
    /// the ingest's setting decides (edges keep its cuts); give every role the same value.
    pub segment_duration_ms: u64,
    /// Partial segments (`EXT-X-PART`) last at most this long.
    pub part_duration_ms: u64,
    /// Complete segments a playlist lists (and the server keeps).
    pub window_segments: usize,
    /// How long the first request for a stream that is not live yet (on an edge: not pulled
    /// yet) waits before 404.
    pub wait_secs: u64,
    /// A stream is packaged until this long after its last HLS request.
    pub idle_secs: u64,
    /// Blocking playlist and part requests one client address may have waiting at once.
    pub max_held_per_client: usize,
}

impl Default for HlsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_duration_ms: HubConfig::default().segment_target_ms,
            part_duration_ms: 200,
            window_segments: 10,
            wait_secs: 10,
            idle_secs: 30,
            max_held_per_client: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Unset: JSON lines for the cluster roles, readable text for standalone.
    pub format: Option<LogFormat>,
    /// `tracing` filter directives (e.g. "info,liverelay_rtmp_server=debug"); RUST_LOG wins.
    pub filter: Option<String>,
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub rtmp_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub public_http_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    pub redis_url: Option<String>,
    pub grpc_listen: Option<SocketAddr>,
    pub cluster_token: Option<String>,
    pub control_url: Option<String>,
    pub admin_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads settings from the file (if any), the process environment and the flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, SettingsError> {
        Self::load_from(file, Environment::with_prefix("LIVERELAY"), overrides)
    }

    fn load_from(
        file: Option<&Path>,
        env: Environment,
        overrides: &Overrides,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            // TOML, or YAML by extension (what Helm renders without turning integers into floats).
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => FileFormat::Yaml,
                _ => FileFormat::Toml,
            };
            builder = builder.add_source(File::from(path).format(format).required(true));
        }
        builder = builder.add_source(env.prefix_separator("_").separator("__").try_parsing(true));
        if let Some(addr) = overrides.rtmp_listen {
            builder = builder.set_override("rtmp.listen", addr.to_string())?;
        }
        if let Some(addr) = overrides.http_listen {
            builder = builder.set_override("http.listen", addr.to_string())?;
        }
        if let Some(addr) = overrides.public_http_listen {
            builder = builder.set_override("http.public_listen", addr.to_string())?;
        }
        if let Some(url) = &overrides.redis_url {
            builder = builder.set_override("redis.url", url.as_str())?;
        }
        if let Some(addr) = overrides.grpc_listen {
            builder = builder.set_override("cluster.grpc_listen", addr.to_string())?;
        }
        if let Some(token) = &overrides.cluster_token {
            builder = builder.set_override("cluster.token", token.as_str())?;
        }
        if let Some(url) = &overrides.control_url {
            builder = builder.set_override("auth.control_url", url.as_str())?;
        }
        if let Some(token) = &overrides.admin_token {
            builder = builder.set_override("control.admin_token", token.as_str())?;
        }
        if let Some(format) = overrides.log_format {
            let name = match format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            };
            builder = builder.set_override("log.format", name)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let r = &self.rtmp;
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        if r.chunk_size == 0 || r.chunk_size > MAX_CHUNK_SIZE {
            return invalid(format!("rtmp.chunk_size must be 1..={MAX_CHUNK_SIZE}"));
        }
        if r.max_chunk_size < 128 || r.max_chunk_size > MAX_CHUNK_SIZE {
            return invalid(format!(
                "rtmp.max_chunk_size must be 128..={MAX_CHUNK_SIZE}"
            ));
        }
        // The chunk codec carries 24-bit message lengths.
        if r.max_message_size == 0 || r.max_message_size > MAX_MESSAGE_LENGTH {
            return invalid(format!(
                "rtmp.max_message_size must be 1..={MAX_MESSAGE_LENGTH}"
            ));
        }
        if r.max_message_size_before_publish < 4096 {
            return invalid("rtmp.max_message_size_before_publish must be at least 4096".into());
        }
        if r.max_name_len == 0 {
            return invalid("rtmp.max_name_len must be positive".into());
        }
        if r.connect_timeout_secs == 0 || r.start_timeout_secs == 0 {
            return invalid(
                "rtmp.connect_timeout_secs and rtmp.start_timeout_secs must be positive".into(),
            );
        }
        if r.ping_interval_secs == 0 || r.idle_timeout_secs < r.ping_interval_secs {
            return invalid("rtmp.idle_timeout_secs must be >= rtmp.ping_interval_secs > 0".into());
        }
        if r.tls_listen.is_some() && (r.tls_cert.is_none() || r.tls_key.is_none()) {
            return invalid("rtmp.tls_listen needs rtmp.tls_cert and rtmp.tls_key".into());
        }
        if r.tls_only && r.tls_listen.is_none() {
            return invalid("rtmp.tls_only needs rtmp.tls_listen".into());
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return invalid("http.tls_cert and http.tls_key go together".into());
        }
        let h = &self.http;
        if h.max_connections == 0
            || h.header_read_timeout_secs == 0
            || h.idle_timeout_secs == 0
            || h.max_streams_per_connection == 0
        {
            return invalid(
                "http.max_connections, header_read_timeout_secs, idle_timeout_secs and \
                 max_streams_per_connection must be > 0"
                    .into(),
            );
        }
        let c = &self.cluster;
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return invalid("cluster.tls_cert and cluster.tls_key go together".into());
        }
        if c.tls_client_cert.is_some() != c.tls_client_key.is_some() {
            return invalid(
                "cluster.tls_client_cert and cluster.tls_client_key go together".into(),
            );
        }
        if c.tls_client_ca.is_some() && c.tls_cert.is_none() {
            return invalid(
                "cluster.tls_client_ca needs cluster.tls_cert and cluster.tls_key".into(),
            );
        }
        if self.redis.tls_client_cert.is_some() != self.redis.tls_client_key.is_some() {
            return invalid("redis.tls_client_cert and redis.tls_client_key go together".into());
        }
        if self.redis.webhook_queue_len == 0 || self.control.webhook_takeover_secs == 0 {
            return invalid(
                "redis.webhook_queue_len and control.webhook_takeover_secs must be > 0".into(),
            );
        }
        if self.redis.lease_ttl_ms < 300 {
            return invalid("redis.lease_ttl_ms must be at least 300".into());
        }
        if self.hub.viewer_queue_frames == 0 {
            return invalid("hub.viewer_queue_frames must be positive".into());
        }
        let hls = &self.hls;
        if hls.part_duration_ms < 50 || hls.segment_duration_ms < hls.part_duration_ms {
            return invalid(
                "hls.part_duration_ms must be at least 50 and at most hls.segment_duration_ms"
                    .into(),
            );
        }
        if hls.window_segments < 3 || hls.max_held_per_client == 0 {
            return invalid(
                "hls.window_segments must be at least 3 and hls.max_held_per_client positive"
                    .into(),
            );
        }
        self.relay_specs()?;
        Ok(())
    }

    pub fn rtmp_server(&self) -> RtmpServerConfig {
        let r = &self.rtmp;
        RtmpServerConfig {
            session: ServerConfig {
                chunk_size: r.chunk_size,
                ack_window: r.ack_window,
                limits: ChunkLimits {
                    max_chunk_size: r.max_chunk_size,
                    max_message_size: r.max_message_size,
                    // Room for a whole message on each of video, audio and data at once.
                    max_pending_bytes: 2 * r.max_message_size as usize,
                    ..ChunkLimits::default()
                },
                max_message_size_before_publish: r.max_message_size_before_publish,
                max_name_len: r.max_name_len,
                connect_timeout: Duration::from_secs(r.connect_timeout_secs),
                start_timeout: Duration::from_secs(r.start_timeout_secs),
                ping_interval: Duration::from_secs(r.ping_interval_secs),
                idle_timeout: Duration::from_secs(r.idle_timeout_secs),
                ..ServerConfig::default()
            },
            handshake_timeout: Duration::from_secs(r.handshake_timeout_secs),
            max_connections: r.max_connections,
            max_connections_per_ip: r.max_connections_per_ip,
            max_plays_per_connection: r.max_plays_per_connection,
            max_plays_per_minute: r.max_plays_per_minute,
            tcp_nodelay: r.tcp_nodelay,
            write_coalesce: Duration::from_millis(r.write_coalesce_ms),
            direct_writes: r.direct_writes,
            ..RtmpServerConfig::default()
        }
    }

    /// The cluster's Redis connection.
    pub fn redis_connection(&self) -> RedisConfig {
        let r = &self.redis;
        RedisConfig {
            urls: r
                .url
                .split(',')
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            cluster: r.cluster,
            key_prefix: r.key_prefix.clone(),
            op_timeout: Duration::from_millis(r.op_timeout_ms),
            tls: RedisTls {
                ca: r.tls_ca.as_ref().map(PathBuf::from),
                client_cert: r.tls_client_cert.as_ref().map(PathBuf::from),
                client_key: r.tls_client_key.as_ref().map(PathBuf::from),
            },
            webhook_queue_len: r.webhook_queue_len,
        }
    }

    pub fn redis_registry(&self) -> RedisRegistryConfig {
        RedisRegistryConfig {
            redis: self.redis_connection(),
            lease_ttl: Duration::from_millis(self.redis.lease_ttl_ms),
        }
    }

    /// The `[[relays]]` entries, checked.
    pub fn relay_specs(&self) -> Result<Vec<RelaySpec>, SettingsError> {
        RelaySpec::parse_all(&self.relays).map_err(|e| SettingsError::Invalid(e.to_string()))
    }

    pub fn hub(&self) -> HubConfig {
        let h = &self.hub;
        HubConfig {
            encoding: FanoutEncoding {
                chunk_size: self.rtmp.chunk_size,
                stream_id: 1,
            },
            gop_cache: h.gop_cache,
            gop_max_bytes: h.gop_max_bytes,
            gop_max_duration_ms: h.gop_max_duration_ms,
            viewer_queue_frames: h.viewer_queue_frames,
            viewer_queue_bytes: h.viewer_queue_bytes,
            max_streams: h.max_streams,
            max_waiting_streams: h.max_waiting_streams,
            gop_max_frames: h.gop_max_frames,
            audio_hold: Duration::from_millis(h.audio_hold_ms),
            segment_target_ms: self.hls.segment_duration_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::with_prefix("LIVERELAY").source(Some(map))
    }

    #[test]
    fn defaults() {
        let s = Settings::load_from(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.rtmp.listen.to_string(), "0.0.0.0:1935");
        assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn default_rtmp_settings_are_the_runtime_defaults() {
        assert_eq!(
            format!("{:?}", Settings::default().rtmp_server()),
            format!("{:?}", RtmpServerConfig::default())
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir =
            std::env::temp_dir().join(format!("liverelay-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("liverelay.toml");
        std::fs::write(
            &path,
            "[rtmp]\nlisten = \"127.0.0.1:1000\"\nchunk_size = 8192\nmax_connections = 5\n[hub]\ngop_cache = false\n",
        )
        .unwrap();
        let vars = env(&[
            ("LIVERELAY_RTMP__CHUNK_SIZE", "60000"),
            ("LIVERELAY_LOG__FORMAT", "json"),
        ]);
        let flags = Overrides {
            rtmp_listen: Some("127.0.0.1:2000".parse().unwrap()),
            public_http_listen: Some("127.0.0.1:2001".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::load_from(Some(&path), vars, &flags).unwrap();
        assert_eq!(
            s.rtmp.listen.to_string(),
            "127.0.0.1:2000",
            "flag beats file"
        );
        assert_eq!(
            s.http.public_listen,
            Some("127.0.0.1:2001".parse().unwrap())
        );
        assert_eq!(Settings::default().http.public_listen, None);
        assert_eq!(s.rtmp.chunk_size, 60000, "env beats file");
        assert_eq!(s.rtmp.max_connections, 5, "file beats default");
        assert!(!s.hub.gop_cache);
        assert_eq!(s.log.format, Some(LogFormat::Json));
        assert_eq!(s.hub().encoding.chunk_size, 60000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cluster_settings_from_env_and_flags() {
        let vars = env(&[
            ("LIVERELAY_REDIS__LEASE_TTL_MS", "2000"),
            ("LIVERELAY_CLUSTER_TOKEN", "ignored-here"),
        ]);
        let flags = Overrides {
            redis_url: Some("redis://10.0.0.1:6380".into()),
            grpc_listen: Some("0.0.0.0:7000".parse().unwrap()),
            cluster_token: Some("s3cret".into()),
            ..Default::default()
        };
        let s = Settings::load_from(None, vars, &flags).unwrap();
        assert_eq!(s.redis.url, "redis://10.0.0.1:6380");
        assert_eq!(s.redis.lease_ttl_ms, 2000);
        assert_eq!(s.cluster.require_token().unwrap(), "s3cret");
        assert!(s.cluster.advertise_addr().ends_with(":7000"));
        assert!(Settings::default().cluster.require_token().is_err());
    }

    #[test]
    fn yaml_file_by_extension() {
        let dir =
            std::env::temp_dir().join(format!("liverelay-config-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("liverelay.yaml");
        std::fs::write(
            &path,
            "rtmp:\n  chunk_size: 8192\n  drain_grace_secs: 60\nredis:\n  lease_ttl_ms: 3000\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            (
                s.rtmp.chunk_size,
                s.rtmp.drain_grace_secs,
                s.redis.lease_ttl_ms
            ),
            (8192, 60, 3000)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn relays_in_the_issue_form() {
        let dir =
            std::env::temp_dir().join(format!("liverelay-config-relays-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("liverelay.toml");
        std::fs::write(
            &path,
            "[[relays]]\nkind = \"pull\"\nurl = \"rtmp://upstream:1935/app/name\"\nstream = \"live/foo\"\nmode = \"on-demand\"\n\n[[relays]]\nkind = \"push\"\nurl = \"rtmp://target/app/key\"\nstream = \"live/foo\"\nmax_attempts = 3\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[]), &Overrides::default()).unwrap();
        let specs = s.relay_specs().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].stream.to_string(), "live/foo");
        assert_eq!(specs[1].reconnect.max_attempts, Some(3));
        std::fs::write(
            &path,
            "[[relays]]\nkind = \"pull\"\nurl = \"rtmp://upstream/app/name\"\nstream = \"foo\"\n",
        )
        .unwrap();
        let err = Settings::load_from(Some(&path), env(&[]), &Overrides::default());
        assert!(
            matches!(&err, Err(SettingsError::Invalid(m)) if m.contains("relays[0]")),
            "{err:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn redis_tls_and_webhook_queue_settings_reach_their_users() {
        let s = Settings::load_from(
            None,
            env(&[
                ("LIVERELAY_REDIS__URL", "rediss://r:6380"),
                ("LIVERELAY_REDIS__TLS_CA", "/ca.pem"),
                ("LIVERELAY_CONTROL__WEBHOOK_TAKEOVER_SECS", "7"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let c = s.redis_connection();
        assert_eq!(c.tls.ca, Some("/ca.pem".into()));
        assert_eq!((c.tls.client_cert, c.tls.client_key), (None, None));
        assert_eq!(c.webhook_queue_len, 10_000);
        assert_eq!(s.control.webhook_takeover_secs, 7);
    }

    #[test]
    fn tls_settings_are_checked() {
        for (vars, problem) in [
            (
                &[("LIVERELAY_RTMP__TLS_LISTEN", "0.0.0.0:1936")][..],
                "rtmp.tls_listen needs rtmp.tls_cert and rtmp.tls_key",
            ),
            (
                &[("LIVERELAY_RTMP__TLS_ONLY", "true")][..],
                "rtmp.tls_only needs rtmp.tls_listen",
            ),
            (
                &[("LIVERELAY_CLUSTER__TLS_CERT", "/c.pem")][..],
                "cluster.tls_cert and cluster.tls_key go together",
            ),
            (
                &[("LIVERELAY_CLUSTER__TLS_CLIENT_KEY", "/k.pem")][..],
                "cluster.tls_client_cert and cluster.tls_client_key go together",
            ),
            (
                &[("LIVERELAY_CLUSTER__TLS_CLIENT_CA", "/ca.pem")][..],
                "cluster.tls_client_ca needs cluster.tls_cert and cluster.tls_key",
            ),
            (
                &[("LIVERELAY_HTTP__TLS_KEY", "/k.pem")][..],
                "http.tls_cert and http.tls_key go together",
            ),
            (
                &[("LIVERELAY_REDIS__TLS_CLIENT_CERT", "/c.pem")][..],
                "redis.tls_client_cert and redis.tls_client_key go together",
            ),
        ] {
            let err = Settings::load_from(None, env(vars), &Overrides::default());
            assert!(
                matches!(&err, Err(SettingsError::Invalid(m)) if m == problem),
                "{vars:?}: {err:?}"
            );
        }
        let s = Settings::load_from(
            None,
            env(&[
                ("LIVERELAY_RTMP__TLS_LISTEN", "127.0.0.1:1936"),
                ("LIVERELAY_RTMP__TLS_CERT", "/c.pem"),
                ("LIVERELAY_RTMP__TLS_KEY", "/k.pem"),
                ("LIVERELAY_RTMP__TLS_ONLY", "true"),
                ("LIVERELAY_CLUSTER__TLS_CLIENT_CERT", "/cc.pem"),
                ("LIVERELAY_CLUSTER__TLS_CLIENT_KEY", "/ck.pem"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.rtmp.tls_listen, Some("127.0.0.1:1936".parse().unwrap()));
        assert!(s.rtmp.tls_only);
        assert_eq!(
            s.cluster.client_identity(),
            Some(("/cc.pem".into(), "/ck.pem".into()))
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let err = Settings::load_from(
            None,
            env(&[("LIVERELAY_RTMP__CHUNK_SIZE", "0")]),
            &Overrides::default(),
        );
        assert!(matches!(err, Err(SettingsError::Invalid(m)) if m.contains("chunk_size")));
        let err = Settings::load_from(
            None,
            env(&[("LIVERELAY_RTMP__LISTEN", "nowhere")]),
            &Overrides::default(),
        );
        assert!(matches!(err, Err(SettingsError::Load(_))));
    }

    #[test]
    fn abuse_limits_are_validated_and_passed_on() {
        // Above the chunk codec's 24-bit message length: refused at startup, not at runtime.
        for (key, value, refused) in [
            ("LIVERELAY_RTMP__MAX_MESSAGE_SIZE", "16777216", true),
            ("LIVERELAY_RTMP__MAX_MESSAGE_SIZE", "16777215", false),
            ("LIVERELAY_RTMP__MAX_NAME_LEN", "0", true),
            ("LIVERELAY_RTMP__CONNECT_TIMEOUT_SECS", "0", true),
            ("LIVERELAY_RTMP__START_TIMEOUT_SECS", "0", true),
            (
                "LIVERELAY_RTMP__MAX_MESSAGE_SIZE_BEFORE_PUBLISH",
                "100",
                true,
            ),
        ] {
            let loaded = Settings::load_from(None, env(&[(key, value)]), &Overrides::default());
            let name = key.trim_start_matches("LIVERELAY_RTMP__").to_lowercase();
            match loaded {
                Err(SettingsError::Invalid(m)) => {
                    assert!(refused && m.contains(&name), "{key}={value}: {m}")
                }
                Ok(_) => assert!(!refused, "{key}={value} accepted"),
                Err(e) => panic!("{key}={value}: {e}"),
            }
        }
        let s = Settings::load_from(
            None,
            env(&[
                ("LIVERELAY_RTMP__MAX_NAME_LEN", "32"),
                ("LIVERELAY_RTMP__CONNECT_TIMEOUT_SECS", "3"),
                ("LIVERELAY_RTMP__START_TIMEOUT_SECS", "4"),
                ("LIVERELAY_RTMP__MAX_CONNECTIONS_PER_IP", "5"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let c = s.rtmp_server();
        assert_eq!(c.session.max_name_len, 32);
        assert_eq!(c.session.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.session.start_timeout, Duration::from_secs(4));
        assert_eq!(c.session.max_message_size_before_publish, 64 * 1024);
        assert_eq!(c.session.limits.max_pending_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_connections_per_ip, 5);
    }
}

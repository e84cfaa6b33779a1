//! What a `[[relays]]` entry says, and its checked form: a parsed URL, the stream inside
//! liverelay, the reconnect policy, and an id that is the same on every pod.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use liverelay_rtmp_client::RtmpUrl;
use liverelay_tls::CertFiles;
use liverelay_types::StreamId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayKind {
    /// Bring `url` in as `stream`.
    Pull,
    /// Send `stream` out to `url`.
    Push,
}

impl RelayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// Always on.
    #[default]
    Static,
    /// A pull that runs while someone watches (plus the linger).
    OnDemand,
}

impl RelayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::OnDemand => "on-demand",
        }
    }
}

/// One `[[relays]]` entry as written in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub kind: RelayKind,
    /// `rtmp://host[:port]/app/name`: the upstream of a pull, the target of a push.
    pub url: String,
    /// `app/name` inside liverelay.
    pub stream: String,
    #[serde(default)]
    pub mode: RelayMode,
    /// First retry delay; doubles per failed attempt (jittered) up to `max_backoff_ms`.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// A pull with no media for this long (and any connection step taking longer) counts as
    /// failed.
    #[serde(default = "defaults::stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Give up after this many failed attempts in a row; unset: retry forever.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// An on-demand pull keeps running this long after its last viewer left.
    #[serde(default = "defaults::linger_secs")]
    pub linger_secs: u64,
    /// PEM CA bundle an `rtmps://` peer's certificate is checked against; unset: the system's
    /// roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// PEM certificate and key shown to an `rtmps://` peer that requires a client certificate
    /// (mutual TLS); both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<String>,
}

mod defaults {
    pub fn initial_backoff_ms() -> u64 {
        500
    }
    pub fn max_backoff_ms() -> u64 {
        30_000
    }
    pub fn stall_timeout_ms() -> u64 {
        10_000
    }
    pub fn linger_secs() -> u64 {
        10
    }
}

/// How a relay retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub stall_timeout: Duration,
    pub max_attempts: Option<u32>,
}

/// A relay ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    /// Stable across pods and restarts: the lease and status key.
    pub id: String,
    pub kind: RelayKind,
    pub mode: RelayMode,
    pub url: RtmpUrl,
    pub stream: StreamId,
    pub reconnect: Reconnect,
    pub linger: Duration,
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key files (read at each attempt).
    pub tls_client: Option<CertFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relays[{index}] ({stream}): {problem}")]
pub struct SpecError {
    pub index: usize,
    pub stream: String,
    pub problem: String,
}

impl RelaySpec {
    /// Checks entry `index` of the config; every problem names the entry.
    pub fn parse(index: usize, c: &RelayConfig) -> Result<Self, SpecError> {
        let fail = |problem: String| SpecError {
            index,
            stream: c.stream.clone(),
            problem,
        };
        let url: RtmpUrl = c.url.parse().map_err(|e| fail(format!("{e}")))?;
        if url.name.is_empty() {
            return Err(fail(format!(
                "url '{}' has no stream name (rtmp://host/app/name)",
                redact(c.kind, &url)
            )));
        }
        let Ok(stream) = c.stream.parse::<StreamId>() else {
            return Err(fail("stream must be 'app/name'".into()));
        };
        if c.kind == RelayKind::Push && c.mode == RelayMode::OnDemand {
            return Err(fail("mode 'on-demand' is for pulls only".into()));
        }
        if c.initial_backoff_ms == 0 || c.max_backoff_ms < c.initial_backoff_ms {
            return Err(fail("need 0 < initial_backoff_ms <= max_backoff_ms".into()));
        }
        if c.stall_timeout_ms < 100 {
            return Err(fail("stall_timeout_ms must be at least 100".into()));
        }
        let tls_client = match (&c.tls_client_cert, &c.tls_client_key) {
            (Some(cert), Some(key)) => Some(CertFiles::new(cert, key)),
            (None, None) => None,
            _ => {
                return Err(fail(
                    "tls_client_cert and tls_client_key go together".into(),
                ));
            }
        };
        Ok(Self {
            id: relay_id(c.kind, &c.url, &stream),
            kind: c.kind,
            mode: c.mode,
            url,
            stream,
            reconnect: Reconnect {
                initial_backoff: Duration::from_millis(c.initial_backoff_ms),
                max_backoff: Duration::from_millis(c.max_backoff_ms),
                stall_timeout: Duration::from_millis(c.stall_timeout_ms),
                max_attempts: c.max_attempts,
            },
            linger: Duration::from_secs(c.linger_secs),
            tls_ca: c.tls_ca.as_ref().map(PathBuf::from),
            tls_client,
        })
    }

    /// Parses every entry, failing on the first bad one or on two entries with the same id.
    pub fn parse_all(configs: &[RelayConfig]) -> Result<Vec<Self>, SpecError> {
        let mut specs: Vec<Self> = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let spec = Self::parse(i, c)?;
            if specs.iter().any(|s| s.id == spec.id) {
                return Err(SpecError {
                    index: i,
                    stream: c.stream.clone(),
                    problem: "the same relay is declared twice".into(),
                });
            }
            if spec.kind == RelayKind::Pull
                && let Some(other) = specs
                    .iter()
                    .find(|s| s.kind == RelayKind::Pull && s.stream == spec.stream)
            {
                return Err(SpecError {
                    index: i,
                    stream: c.stream.clone(),
                    problem: format!("stream already pulled by relay {}", other.id),
                });
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// The URL as shown in logs and the API.
    pub fn display_url(&self) -> String {
        redact(self.kind, &self.url)
    }
}

impl fmt::Display for RelaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// A push target's name is usually the platform's secret stream key, and query strings carry
/// tokens: neither is shown.
fn redact(kind: RelayKind, url: &RtmpUrl) -> String {
    let (name, query) = url.name.split_once('?').unwrap_or((&url.name, ""));
    let name = match kind {
        RelayKind::Pull => name.to_owned(),
        RelayKind::Push => {
            let shown: String = name.chars().take(4).collect();
            if shown.len() < name.len() {
                format!("{shown}…")
            } else {
                shown
            }
        }
    };
    let query = if query.is_empty() { "" } else { "?…" };
    format!("{}/{name}{query}", url.tc_url())
}

/// `kind:app/name:hash` with a hash of the URL (FNV-1a: stable across builds, unlike std's
/// hasher), so the id is readable yet distinct for several targets of one stream.
fn relay_id(kind: RelayKind, url: &str, stream: &StreamId) -> String {
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{}:{stream}:{:08x}", kind.as_str(), hash as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: RelayKind, url: &str, stream: &str) -> RelayConfig {
        RelayConfig {
            kind,
            url: url.into(),
            stream: stream.into(),
            mode: RelayMode::Static,
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            stall_timeout_ms: defaults::stall_timeout_ms(),
            max_attempts: None,
            linger_secs: defaults::linger_secs(),
            tls_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a =
            RelaySpec::parse(0, &config(RelayKind::Push, "rtmp://a/live/k1", "live/foo")).unwrap();
        let b =
            RelaySpec::parse(1, &config(RelayKind::Push, "rtmp://b/live/k1", "live/foo")).unwrap();
        assert!(a.id.starts_with("push:live/foo:"), "{}", a.id);
        assert_eq!(
            a.id,
            RelaySpec::parse(5, &config(RelayKind::Push, "rtmp://a/live/k1", "live/foo"))
                .unwrap()
                .id
        );
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn bad_entries_are_named() {
        let err =
            RelaySpec::parse(3, &config(RelayKind::Pull, "http://x/a/b", "live/foo")).unwrap_err();
        assert_eq!(err.index, 3);
        assert!(err.to_string().contains("relays[3]"), "{err}");
        assert!(RelaySpec::parse(0, &config(RelayKind::Pull, "rtmp://x/app", "live/foo")).is_err());
        assert!(RelaySpec::parse(0, &config(RelayKind::Pull, "rtmp://x/a/b", "foo")).is_err());
        let mut on_demand_push = config(RelayKind::Push, "rtmp://x/a/b", "live/foo");
        on_demand_push.mode = RelayMode::OnDemand;
        assert!(RelaySpec::parse(0, &on_demand_push).is_err());
        let mut half_identity = config(RelayKind::Push, "rtmps://x/a/b", "live/foo");
        half_identity.tls_client_cert = Some("/tls/client.pem".into());
        let err = RelaySpec::parse(0, &half_identity).unwrap_err();
        assert!(err.problem.contains("go together"), "{err}");
        half_identity.tls_client_key = Some("/tls/client.key".into());
        assert_eq!(
            RelaySpec::parse(0, &half_identity).unwrap().tls_client,
            Some(CertFiles::new("/tls/client.pem", "/tls/client.key"))
        );
        let twice = [
            config(RelayKind::Pull, "rtmp://x/a/b", "live/foo"),
            config(RelayKind::Pull, "rtmp://y/a/b", "live/foo"),
        ];
        assert!(
            RelaySpec::parse_all(&twice)
                .unwrap_err()
                .problem
                .contains("already pulled")
        );
    }

    #[test]
    fn push_keys_and_tokens_are_hidden() {
        let push = RelaySpec::parse(
            0,
            &config(
                RelayKind::Push,
                "rtmp://yt:1935/live2/abcd-efgh-secret",
                "live/foo",
            ),
        )
        .unwrap();
        assert_eq!(push.display_url(), "rtmp://yt:1935/live2/abcd…");
        let pull = RelaySpec::parse(
            0,
            &config(RelayKind::Pull, "rtmp://up/app/cam?token=x", "live/foo"),
        )
        .unwrap();
        assert_eq!(pull.display_url(), "rtmp://up:1935/app/cam?…");
    }
}

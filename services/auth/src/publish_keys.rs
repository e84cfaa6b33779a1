//! Publishing with a stream key: the ingest asks control (gRPC) which public stream a key
//! publishes, so viewers never see the key. Answers are cached briefly; a revoked key's cached
//! answer is forgotten at once. When control cannot be asked, `auth.on_control_unavailable`
//! decides, and the log says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use liverelay_admission::{Access, Admission, StreamAttempt};
use liverelay_config::ClusterSettings;
use liverelay_config::ControlUnavailable;
use liverelay_metrics::OutcomeLabel;
use liverelay_proto::{TlsFiles, tls_channel};
use liverelay_rtmp::command::code;
use liverelay_types::Refusal;
use liverelay_types::{ClusterToken, Ticket};
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, info, info_span, warn};

use crate::AuthMetrics;
use crate::signing::sha256_hex;
use liverelay_proto::control::v1::control_client::ControlClient;
use liverelay_proto::control::v1::{AuthorizePublishRequest, AuthorizePublishResponse};

pub struct PublishKeysConfig {
    pub control_url: String,
    /// For an `https://` control URL.
    pub tls: Option<TlsFiles>,
    pub token: ClusterToken,
    pub pod: String,
    pub timeout: Duration,
    pub cache_for: Duration,
    pub on_unavailable: ControlUnavailable,
}

/// TLS towards control when its URL is `https://`: its certificate checked against
/// `cluster.tls_ca` (else the system's roots) and `cluster.tls_domain`; this pod's
/// `cluster.tls_client_cert` shown when control requires one. The files are read at each
/// connection to control, so rotated ones are used from the next connection.
pub fn control_tls(cluster: &ClusterSettings, control_url: &str) -> Option<TlsFiles> {
    control_url.starts_with("https://").then(|| TlsFiles {
        ca: cluster.tls_ca.as_ref().map(Into::into),
        domain: cluster.tls_domain.clone(),
        identity: cluster.client_identity(),
    })
}

struct Cached {
    answer: AuthorizePublishResponse,
    at: Instant,
}

struct Inner {
    client: ControlClient<Channel>,
    config: PublishKeysConfig,
    metrics: AuthMetrics,
    /// By the key's SHA-256: the secret itself is kept nowhere.
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
pub struct PublishKeys(Arc<Inner>);

impl PublishKeys {
    pub fn new(config: PublishKeysConfig, metrics: AuthMetrics) -> anyhow::Result<Self> {
        let timeouts = |e: Endpoint| e.connect_timeout(config.timeout).timeout(config.timeout);
        let channel = match config.tls.clone() {
            Some(files) => tls_channel(&config.control_url, files, timeouts)
                .context("TLS towards control (cluster.tls_ca, tls_client_cert, tls_client_key)")?,
            None => timeouts(Endpoint::from_shared(config.control_url.clone())?).connect_lazy(),
        };
        Ok(Self(Arc::new(Inner {
            client: ControlClient::new(channel),
            config,
            metrics,
            cache: Mutex::new(HashMap::new()),
        })))
    }

    /// Drops cached answers for a revoked or rotated key.
    pub fn forget(&self, key_id: &str) {
        self.cache().retain(|_, c| c.answer.key_id != key_id);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.0.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, result: &'static str) {
        self.0
            .metrics
            .decisions
            .get_or_create(&OutcomeLabel {
                action: "publish_key",
                result,
            })
            .inc();
    }

    async fn ask(
        &self,
        app: &str,
        secret: &str,
        client_addr: &str,
    ) -> Result<AuthorizePublishResponse, tonic::Status> {
        let mut request = tonic::Request::new(AuthorizePublishRequest {
            app: app.to_owned(),
            key: secret.to_string(),
            client_addr: client_addr.to_owned(),
            pod: self.0.config.pod.clone(),
        });
        liverelay_proto::token::attach(&self.0.config.token, &mut request)?;
        liverelay_telemetry::inject(&tracing::Span::current(), request.metadata_mut());
        let mut client = self.0.client.clone();
        Ok(client.authorize_publish(request).await?.into_inner())
    }

    async fn decide(self, attempt: StreamAttempt) -> Result<Admission, Refusal> {
        // The secret rides in `key=` (on the name or the app) or is the stream name itself.
        let secret = attempt.param("key").unwrap_or_else(|| attempt.name.clone());
        let digest = sha256_hex(secret.as_bytes());
        let cached = self
            .cache()
            .get(&digest)
            .map(|c| (c.answer.clone(), c.at.elapsed() < self.0.config.cache_for));
        let answer = match cached {
            Some((answer, true)) => answer,
            stale => match self
                .ask(&attempt.app, &secret, &attempt.client.addr.to_string())
                .await
            {
                Ok(answer) => {
                    if answer.allowed && !self.0.config.cache_for.is_zero() {
                        let cached = Cached {
                            answer: answer.clone(),
                            at: Instant::now(),
                        };
                        self.cache().insert(digest, cached);
                    }
                    answer
                }
                Err(status) => {
                    return self.unavailable(&attempt, &status, stale.map(|(a, _)| a));
                }
            },
        };
        if !answer.allowed {
            self.count("deny");
            warn!(app = %attempt.app, client = attempt.client.id, addr = %attempt.client.addr, reason = %answer.reason, "publish refused: stream key not accepted");
            return Err(Refusal {
                code: code::PUBLISH_BAD_NAME,
                description: format!("unauthorized: {}", answer.reason),
            });
        }
        self.count("allow");
        info!(app = %answer.app, stream = %answer.stream, key_id = %answer.key_id, "stream key accepted");
        let ticket = KeyTicket {
            keys: self.clone(),
            app: attempt.app.clone(),
            secret,
            client_addr: attempt.client.addr.to_string(),
            key_id: answer.key_id.clone(),
        };
        Ok(Admission {
            ticket: Box::new(ticket),
            ..admitted(answer)
        })
    }

    /// Control could not be asked. `deny`: refused. `allow`: the last answer for this key if
    /// there was one, else the publish goes on under its name when the key came as `key=`;
    /// a key given as the stream name is still refused, as publishing under it would show
    /// the secret to every viewer.
    fn unavailable(
        &self,
        attempt: &StreamAttempt,
        status: &tonic::Status,
        last: Option<AuthorizePublishResponse>,
    ) -> Result<Admission, Refusal> {
        self.count("control_unavailable");
        let error = status.message();
        let (app, client) = (&attempt.app, attempt.client.id);
        let denied = |why: &str| {
            warn!(%app, client, error, "control unreachable: publish denied ({why})");
            Err(Refusal {
                code: code::PUBLISH_DENIED,
                description: "authorization service unavailable".into(),
            })
        };
        match (self.0.config.on_unavailable, last) {
            (ControlUnavailable::Deny, _) => denied("auth.on_control_unavailable = deny"),
            (ControlUnavailable::Allow, Some(answer)) => {
                warn!(%app, client, error, stream = %answer.stream, "control unreachable: publish allowed by its last answer (auth.on_control_unavailable = allow)");
                Ok(admitted(answer))
            }
            (ControlUnavailable::Allow, None) if attempt.param("key").is_some() => {
                warn!(%app, client, error, stream = %attempt.name, "control unreachable: publish allowed under the name given (auth.on_control_unavailable = allow)");
                Ok(Admission::unchanged(attempt))
            }
            (ControlUnavailable::Allow, None) => {
                denied("the stream name is the key; it cannot be mapped without control")
            }
        }
    }
}

/// A publish under a stream key, checked again with control at most `auth.cache_secs` apart
/// (at least a second) for as long as it lasts: it is withdrawn once control no longer accepts
/// the key (revoked, rotated, expired), even if the command that says so never reached this
/// pod. While control cannot be asked, the publish goes on.
struct KeyTicket {
    keys: PublishKeys,
    app: String,
    secret: String,
    client_addr: String,
    key_id: String,
}

impl Ticket for KeyTicket {
    fn revoked(&self) -> Option<BoxFuture<'static, String>> {
        let keys = self.keys.clone();
        let (app, secret) = (self.app.clone(), self.secret.clone());
        let (client_addr, key_id) = (self.client_addr.clone(), self.key_id.clone());
        Some(Box::pin(async move {
            let every = keys.0.config.cache_for.max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(every).await;
                match keys.ask(&app, &secret, &client_addr).await {
                    Ok(answer) if answer.allowed && answer.key_id == key_id => {}
                    Ok(answer) => {
                        warn!(%app, key_id, reason = %answer.reason, "stream key no longer accepted: ending its publish");
                        return "stream key revoked".to_owned();
                    }
                    Err(status) => {
                        warn!(%app, key_id, error = status.message(), "control unreachable: the stream key's publish goes on unchecked");
                    }
                }
            }
        }))
    }
}

/// The publish a positive answer allows: the key's public stream, tagged with the key's id.
fn admitted(answer: AuthorizePublishResponse) -> Admission {
    Admission {
        app: answer.app,
        name: answer.stream,
        tag: Some(answer.key_id),
        ticket: Box::new(()),
    }
}

impl Access for PublishKeys {
    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        if !attempt.action.is_publish() {
            return Box::pin(async move { Ok(Admission::unchanged(&attempt)) });
        }
        let span = info_span!("authorize_publish", app = %attempt.app, client = attempt.client.id);
        Box::pin(self.clone().decide(attempt).instrument(span))
    }
}

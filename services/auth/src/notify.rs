//! nginx-rtmp's notify callbacks (`on_connect`, `on_publish`, `on_play`, `on_done`,
//! `on_publish_done`, `on_play_done`, `on_update`), with nginx-rtmp's form fields and answer
//! rules, so an auth backend written for nginx-rtmp works unchanged:
//! 2xx allows; 3xx renames (the app on connect, the stream on publish/play) to `Location`;
//! anything else, no answer or a timeout denies. `*_done` answers are ignored; `on_update`
//! ends the session unless it gets a 2xx (only on a non-2xx answer unless
//! `notify_update_strict`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use liverelay_admission::{Access, Action, Admission, ClientInfo, Sessions, StreamAttempt};
use liverelay_callback_form::{Form, with_args};
use liverelay_config::redact::without_query;
use liverelay_config::{NotifyMethod, NotifySettings};
use liverelay_metrics::OutcomeLabel;
use liverelay_rtmp::command::code;
use liverelay_types::{AbortOnDrop, Refusal, Ticket};
use tracing::{Instrument, info, info_span, warn};

use crate::AuthMetrics;

/// How a callback answered. A denial's details (URL, status, error) are logged where the
/// call is made; the client only ever gets [`Answer::reason`], which tells an attacker nothing
/// about the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Allow,
    Redirect(String),
    /// The backend said no.
    Refused,
    /// No usable answer (connection failed, timeout).
    Failed,
}

impl Answer {
    /// The fixed reason a refused client gets; nginx-rtmp denies on both.
    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused => Some("callback refused"),
            Self::Failed => Some("callback unavailable"),
            Self::Allow | Self::Redirect(_) => None,
        }
    }
}

struct Inner {
    hooks: Vec<NotifySettings>,
    http: reqwest::Client,
    metrics: AuthMetrics,
    sessions: Sessions,
}

#[derive(Clone)]
pub struct Notify(Arc<Inner>);

/// The fields nginx-rtmp sends with every call.
fn common_fields(call: &'static str, client: &ClientInfo, app: &str) -> Form {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        ("call", call.to_string()),
        ("addr", client.addr.ip().to_string()),
        ("clientid", client.id.to_string()),
        ("app", app.to_string()),
        ("flashver", opt(&client.flash_ver)),
        ("swfurl", opt(&client.swf_url)),
        ("tcurl", opt(&client.tc_url)),
        ("pageurl", opt(&client.page_url)),
    ]
}

impl Notify {
    pub fn new(
        hooks: Vec<NotifySettings>,
        metrics: AuthMetrics,
        sessions: Sessions,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self(Arc::new(Inner {
            hooks,
            http,
            metrics,
            sessions,
        })))
    }

    fn hooks_for<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a NotifySettings> + 'a {
        self.0.hooks.iter().filter(move |h| h.applies_to(app))
    }

    /// One call; the answer as nginx-rtmp reads it.
    async fn call(
        &self,
        hook: &NotifySettings,
        url: &str,
        call: &'static str,
        form: &[(String, String)],
    ) -> Answer {
        let timeout = Duration::from_millis(hook.timeout_ms);
        let request = match hook.notify_method {
            NotifyMethod::Post => self.0.http.post(url).form(form),
            NotifyMethod::Get => self.0.http.get(url).query(form),
        };
        // What went wrong, for the log only: reqwest's error text names the URL, with the
        // whole form in its query for a GET.
        let (answer, detail) = match request.timeout(timeout).send().await {
            Err(e) if e.is_timeout() => (Answer::Failed, "timed out".to_string()),
            Err(e) => (Answer::Failed, format!("failed: {}", e.without_url())),
            Ok(r) if r.status().is_success() => (Answer::Allow, String::new()),
            Ok(r) if r.status().is_redirection() => {
                match r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                {
                    Some(to) if !to.is_empty() => (Answer::Redirect(to.to_string()), String::new()),
                    _ => (Answer::Refused, "redirected without a Location".to_string()),
                }
            }
            Ok(r) => (Answer::Refused, format!("answered {}", r.status())),
        };
        if answer.reason().is_some() {
            warn!(url = without_query(url), "{call} callback {detail}");
        }
        let result = match &answer {
            Answer::Allow => "allow",
            Answer::Redirect(_) => "redirect",
            Answer::Refused => "deny",
            Answer::Failed => "error",
        };
        self.0
            .metrics
            .notify_calls
            .get_or_create(&OutcomeLabel {
                action: call,
                result,
            })
            .inc();
        answer
    }

    async fn connect_checks(self, client: Arc<ClientInfo>) -> Result<Option<String>, Refusal> {
        let mut app = None;
        for hook in self.hooks_for(&client.app) {
            let Some(url) = &hook.on_connect else {
                continue;
            };
            let mut form = common_fields("connect", &client, &client.app);
            form.push(("epoch", client.connected_at_ms.to_string()));
            let form = with_args(form, client.connect_query.as_deref());
            match self.call(hook, url, "connect", &form).await {
                Answer::Redirect(to) => app = Some(to.trim_start_matches('/').to_string()),
                answer => {
                    if let Some(why) = answer.reason() {
                        return Err(Refusal {
                            code: code::CONNECT_REJECTED,
                            description: why.into(),
                        });
                    }
                }
            }
        }
        Ok(app)
    }

    async fn stream_checks(self, attempt: StreamAttempt) -> Result<Admission, Refusal> {
        let (call, refused) = match attempt.action {
            Action::Publish(_) => ("publish", code::PUBLISH_DENIED),
            Action::Play { .. } => ("play", code::PLAY_FAILED),
        };
        let mut name = attempt.name.clone();
        let mut done = Vec::new();
        let mut updates = Vec::new();
        for hook in self.hooks_for(&attempt.app) {
            let url = match attempt.action {
                Action::Publish(_) => &hook.on_publish,
                Action::Play { .. } => &hook.on_play,
            };
            if let Some(url) = url {
                let form = with_args(
                    stream_fields(call, &attempt, &name),
                    attempt.args.as_deref(),
                );
                match self.call(hook, url, call, &form).await {
                    Answer::Allow => {}
                    answer @ (Answer::Refused | Answer::Failed) => {
                        return Err(Refusal {
                            code: refused,
                            description: answer.reason().unwrap_or_default().into(),
                        });
                    }
                    Answer::Redirect(to) if to.starts_with("rtmp://") => {
                        return Err(Refusal {
                            code: refused,
                            description: format!(
                                "{call} callback redirected to a remote server, which is not supported"
                            ),
                        });
                    }
                    Answer::Redirect(to) => {
                        let to = to.trim_start_matches('/').to_string();
                        info!(app = %attempt.app, to = %to, "{call} callback renamed the stream");
                        name = to;
                    }
                }
            }
            let finished = match attempt.action {
                Action::Publish(_) => &hook.on_publish_done,
                Action::Play { .. } => &hook.on_play_done,
            };
            let specific = if attempt.action.is_publish() {
                "publish_done"
            } else {
                "play_done"
            };
            done.extend(finished.iter().map(|u| (hook.clone(), u.clone(), specific)));
            done.extend(
                hook.on_done
                    .iter()
                    .map(|u| (hook.clone(), u.clone(), "done")),
            );
            if let Some(url) = &hook.on_update {
                updates.push((hook.clone(), url.clone()));
            }
        }
        let session = Session {
            notify: self.clone(),
            attempt: StreamAttempt {
                name: name.clone(),
                ..attempt.clone()
            },
            started: Instant::now(),
        };
        let mut updater = AbortOnDrop::default();
        if !updates.is_empty() {
            updater.push(&tokio::spawn(session.clone().update_loop(updates)));
        }
        Ok(Admission {
            name,
            ticket: Box::new(NotifyTicket {
                session,
                done,
                _updater: updater,
            }),
            ..Admission::unchanged(&attempt)
        })
    }
}

/// The fields of every call about a stream: the common ones and its name (all a done call
/// sends, as nginx-rtmp).
fn named_fields(call: &'static str, attempt: &StreamAttempt, name: &str) -> Form {
    let mut form = common_fields(call, &attempt.client, &attempt.app);
    form.push(("name", name.to_string()));
    form
}

/// The fields of a publish or play call: the named fields and the publish type, or the play's
/// start, duration and reset.
fn stream_fields(call: &'static str, attempt: &StreamAttempt, name: &str) -> Form {
    let mut form = named_fields(call, attempt, name);
    match attempt.action {
        Action::Publish(kind) => form.push(("type", kind.as_str().to_string())),
        Action::Play {
            start,
            duration,
            reset,
        } => {
            // As nginx-rtmp sends them: 0 when absent, numbers as 32-bit unsigned (ffmpeg's
            // start of -2000 is 4294965296), so its auth backends parse them unchanged.
            let uint32 = |n: Option<f64>| n.map_or(0, |n| n as i64 as u32).to_string();
            form.push(("start", uint32(start)));
            form.push(("duration", uint32(duration)));
            form.push(("reset", u8::from(reset.unwrap_or(false)).to_string()));
        }
    }
    form
}

/// What the done and update calls of one admitted session need.
#[derive(Clone)]
struct Session {
    notify: Notify,
    attempt: StreamAttempt,
    started: Instant,
}

impl Session {
    /// `on_update` every `notify_update_timeout`; a refusal ends the session.
    async fn update_loop(self, hooks: Vec<(NotifySettings, String)>) {
        let every = hooks
            .iter()
            .map(|(h, _)| h.notify_update_timeout_secs.max(1))
            .min()
            .unwrap_or(30);
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            for (hook, url) in &hooks {
                let elapsed = self.started.elapsed();
                // nginx-rtmp's call names, and no publish type or play arguments.
                let call = if self.attempt.action.is_publish() {
                    "update_publish"
                } else {
                    "update_play"
                };
                let mut form = named_fields(call, &self.attempt, &self.attempt.name);
                form.push(("time", elapsed.as_secs().to_string()));
                form.push(("timestamp", elapsed.as_millis().to_string()));
                let form = with_args(form, self.attempt.args.as_deref());
                let why = match self.notify.call(hook, url, "update", &form).await {
                    Answer::Allow | Answer::Redirect(_) => continue,
                    Answer::Failed if !hook.notify_update_strict => {
                        warn!(
                            client = self.attempt.client.id,
                            "on_update unavailable; session goes on (notify_update_strict off)"
                        );
                        continue;
                    }
                    answer => answer.reason().unwrap_or_default(),
                };
                let id = self.attempt.client.id;
                warn!(client = id, "on_update refused the session: {why}");
                self.notify.0.sessions.kick(|s| s.client_id == id, why);
                return;
            }
        }
    }

    fn send_done(&self, done: Vec<(NotifySettings, String, &'static str)>) {
        let session = self.clone();
        let span = info_span!("notify_done", client = self.attempt.client.id);
        tokio::spawn(
            async move {
                for (hook, url, call) in done {
                    let form = with_args(
                        named_fields(call, &session.attempt, &session.attempt.name),
                        session.attempt.args.as_deref(),
                    );
                    // nginx-rtmp ignores what done callbacks answer; so do we.
                    let _ = session.notify.call(&hook, &url, call, &form).await;
                }
            }
            .instrument(span),
        );
    }
}

struct NotifyTicket {
    session: Session,
    done: Vec<(NotifySettings, String, &'static str)>,
    /// The `on_update` timer, stopped with the ticket.
    _updater: AbortOnDrop,
}

impl Ticket for NotifyTicket {}

impl Drop for NotifyTicket {
    fn drop(&mut self) {
        if !self.done.is_empty() {
            self.session.send_done(std::mem::take(&mut self.done));
        }
    }
}

impl Access for Notify {
    fn connect(
        &self,
        client: Arc<ClientInfo>,
    ) -> BoxFuture<'static, Result<Option<String>, Refusal>> {
        Box::pin(self.clone().connect_checks(client))
    }

    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        Box::pin(self.clone().stream_checks(attempt))
    }
}

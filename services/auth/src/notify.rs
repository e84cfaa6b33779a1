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
use liverelay_config::{NotifyMethod, NotifySettings};
use liverelay_metrics::{Metrics, OutcomeLabel};
use liverelay_rtmp::command::code;
use liverelay_rtmp_server::{
    Access, Action, Admission, ClientInfo, Refusal, Sessions, StreamAttempt, Ticket,
};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

/// How a callback answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Allow,
    Redirect(String),
    /// The backend said no.
    Refused(String),
    /// No usable answer (connection failed, timeout).
    Failed(String),
}

impl Answer {
    /// nginx-rtmp denies on both.
    fn denial(self) -> Option<String> {
        match self {
            Self::Refused(why) | Self::Failed(why) => Some(why),
            Self::Allow | Self::Redirect(_) => None,
        }
    }
}

struct Inner {
    hooks: Vec<NotifySettings>,
    /// Stream keys are on: a secret may ride in `key=` (the name's or the app's query, so also
    /// in tcUrl), and callbacks must never see it.
    hide_stream_key: bool,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    sessions: Sessions,
}

#[derive(Clone)]
pub struct Notify(Arc<Inner>);

type Form = Vec<(&'static str, String)>;

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

/// Fields of the stream name's (or connect's) query string, passed on as nginx-rtmp does.
fn with_args(mut form: Form, args: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = form.drain(..).map(|(k, v)| (k.to_string(), v)).collect();
    if let Some(args) = args {
        out.extend(form_urlencoded::parse(args.trim_start_matches('?').as_bytes()).into_owned());
    }
    out
}

/// The form without `key` fields, and tcUrl without its `key` parameter.
fn without_stream_key(form: &[(String, String)]) -> Vec<(String, String)> {
    form.iter()
        .filter(|(k, _)| k != "key")
        .map(|(k, v)| match (k.as_str(), v.split_once('?')) {
            ("tcurl", Some((url, query))) => {
                let kept = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(
                        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "key"),
                    )
                    .finish();
                let tc_url = if kept.is_empty() {
                    url.to_string()
                } else {
                    format!("{url}?{kept}")
                };
                (k.clone(), tc_url)
            }
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

impl Notify {
    pub fn new(
        hooks: Vec<NotifySettings>,
        hide_stream_key: bool,
        metrics: Arc<Metrics>,
        sessions: Sessions,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self(Arc::new(Inner {
            hooks,
            hide_stream_key,
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
        let hidden;
        let form = if self.0.hide_stream_key {
            hidden = without_stream_key(form);
            &hidden
        } else {
            form
        };
        let request = match hook.notify_method {
            NotifyMethod::Post => self.0.http.post(url).form(form),
            NotifyMethod::Get => self.0.http.get(url).query(form),
        };
        let answer = match request.timeout(timeout).send().await {
            Err(e) if e.is_timeout() => Answer::Failed(format!("{call} callback timed out")),
            Err(e) => Answer::Failed(format!("{call} callback failed: {e}")),
            Ok(r) if r.status().is_success() => Answer::Allow,
            Ok(r) if r.status().is_redirection() => {
                match r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                {
                    Some(to) if !to.is_empty() => Answer::Redirect(to.to_string()),
                    _ => Answer::Refused(format!("{call} callback redirected without a Location")),
                }
            }
            Ok(r) => Answer::Refused(format!("{call} callback answered {}", r.status())),
        };
        let result = match &answer {
            Answer::Allow => "allow",
            Answer::Redirect(_) => "redirect",
            Answer::Refused(_) => "deny",
            Answer::Failed(_) => "error",
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
                    if let Some(why) = answer.denial() {
                        return Err(Refusal {
                            code: code::CONNECT_REJECTED,
                            description: why,
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
                    Answer::Refused(why) | Answer::Failed(why) => {
                        return Err(Refusal {
                            code: refused,
                            description: why,
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
        let updater =
            (!updates.is_empty()).then(|| tokio::spawn(session.clone().update_loop(updates)));
        Ok(Admission {
            name,
            ticket: Box::new(NotifyTicket {
                session,
                done,
                updater,
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
                    Answer::Refused(why) => why,
                    Answer::Failed(why) if hook.notify_update_strict => why,
                    Answer::Failed(why) => {
                        warn!(
                            client = self.attempt.client.id,
                            "{why}; session goes on (notify_update_strict off)"
                        );
                        continue;
                    }
                };
                let id = self.attempt.client.id;
                warn!(client = id, "on_update refused the session: {why}");
                self.notify.0.sessions.kick(|s| s.client_id == id, &why);
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
    updater: Option<JoinHandle<()>>,
}

impl Ticket for NotifyTicket {}

impl Drop for NotifyTicket {
    fn drop(&mut self) {
        if let Some(updater) = &self.updater {
            updater.abort();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_key_is_dropped_from_the_fields_and_tcurl() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let form = [
            pair("tcurl", "rtmp://h/live?key=sk_1&x=2"),
            pair("name", "cam"),
            pair("key", "sk_1"),
            pair("sign", "abc"),
        ];
        assert_eq!(
            without_stream_key(&form),
            [
                pair("tcurl", "rtmp://h/live?x=2"),
                pair("name", "cam"),
                pair("sign", "abc")
            ]
        );
        let only_key = [pair("tcurl", "rtmp://h/live?key=sk_1")];
        assert_eq!(
            without_stream_key(&only_key),
            [pair("tcurl", "rtmp://h/live")]
        );
    }
}

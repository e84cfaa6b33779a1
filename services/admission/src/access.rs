//! Who may connect, publish and play, and under which name. Asked before the hub and the role's
//! [`StreamPolicy`](liverelay_types::StreamPolicy): access decides *whether* and *as what* (a stream key
//! becomes its public name, a callback renames), the policy decides *where* in the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use liverelay_rtmp::session::PublishKind;

use liverelay_types::{Refusal, Ticket};

/// Client ids, unique in the process across listeners (RTMP, RTMPS, HTTP): the session table
/// is keyed by them.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

impl ClientInfo {
    /// A new client id (nginx-rtmp's `clientid`) for a connection or an HTTP viewer.
    pub fn next_id() -> u64 {
        NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the server knows about a client once it has sent `connect` (nginx-rtmp's notify
/// fields).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Unique per process, as nginx-rtmp's `clientid`.
    pub id: u64,
    pub addr: SocketAddr,
    pub app: String,
    /// Query string given with the app (or in tcUrl).
    pub connect_query: Option<String>,
    pub flash_ver: Option<String>,
    pub swf_url: Option<String>,
    pub tc_url: Option<String>,
    pub page_url: Option<String>,
    /// Milliseconds since the Unix epoch when `connect` arrived.
    pub connected_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Publish(PublishKind),
    /// The play's optional arguments as the client sent them.
    Play {
        start: Option<f64>,
        duration: Option<f64>,
        reset: Option<bool>,
    },
}

impl Action {
    pub fn is_publish(&self) -> bool {
        matches!(self, Self::Publish(_))
    }
}

/// A publish or play as the client asked for it.
#[derive(Debug, Clone)]
pub struct StreamAttempt {
    pub client: Arc<ClientInfo>,
    /// The app the stream lives in (the client's, unless a connect callback moved it).
    pub app: String,
    /// Stream name without its query string. May be a secret stream key: never log it.
    pub name: String,
    /// Query string given after the stream name.
    pub args: Option<String>,
    pub action: Action,
}

impl StreamAttempt {
    /// A query parameter from the stream name's query, else from the connect query.
    pub fn param(&self, wanted: &str) -> Option<String> {
        [self.args.as_deref(), self.client.connect_query.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|q| query_param(q, wanted))
    }
}

/// Looks `wanted` up in a form-encoded query string, decoded.
pub fn query_param(query: &str, wanted: &str) -> Option<String> {
    form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == wanted)
        .map(|(_, v)| v.into_owned())
}

/// An allowed publish or play.
pub struct Admission {
    pub app: String,
    /// The stream's name inside liverelay (a key's public name, or a callback's rename).
    pub name: String,
    /// What revocation finds this session by (the stream key's id).
    pub tag: Option<String>,
    /// Held while the session lasts; dropping it ends what access started (done callbacks,
    /// periodic updates).
    pub ticket: Box<dyn Ticket>,
}

impl Admission {
    /// The attempt allowed as it is.
    pub fn unchanged(attempt: &StreamAttempt) -> Self {
        Self {
            app: attempt.app.clone(),
            name: attempt.name.clone(),
            tag: None,
            ticket: Box::new(()),
        }
    }
}

pub trait Access: Send + Sync + 'static {
    /// Answers a `connect`: `Ok(Some(app))` moves the client to another app.
    fn connect(
        &self,
        client: Arc<ClientInfo>,
    ) -> BoxFuture<'static, Result<Option<String>, Refusal>> {
        let _ = client;
        Box::pin(async { Ok(None) })
    }

    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>>;
}

/// Everyone may do everything under the name they asked for.
pub struct OpenAccess;

impl Access for OpenAccess {
    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        Box::pin(async move { Ok(Admission::unchanged(&attempt)) })
    }
}

/// Several access checks in order; each sees the name (and app) the previous one settled on.
pub struct Chain(pub Vec<Arc<dyn Access>>);

impl Access for Chain {
    fn connect(
        &self,
        client: Arc<ClientInfo>,
    ) -> BoxFuture<'static, Result<Option<String>, Refusal>> {
        let stages = self.0.clone();
        Box::pin(async move {
            let mut client = client;
            let mut moved = None;
            for stage in stages {
                if let Some(app) = stage.connect(client.clone()).await? {
                    client = Arc::new(ClientInfo {
                        app: app.clone(),
                        ..(*client).clone()
                    });
                    moved = Some(app);
                }
            }
            Ok(moved)
        })
    }

    fn admit(&self, attempt: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
        let stages = self.0.clone();
        Box::pin(async move {
            let mut attempt = attempt;
            let mut tag = None;
            let mut tickets: Vec<Box<dyn Ticket>> = Vec::new();
            for stage in stages {
                // A refusal drops the tickets so far: their sessions never started.
                let admission = stage.admit(attempt.clone()).await?;
                attempt.app = admission.app;
                attempt.name = admission.name;
                tag = tag.or(admission.tag);
                tickets.push(admission.ticket);
            }
            Ok(Admission {
                app: attempt.app,
                name: attempt.name,
                tag,
                ticket: Box::new(tickets),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(args: Option<&str>, connect: Option<&str>) -> StreamAttempt {
        StreamAttempt {
            client: Arc::new(ClientInfo {
                id: 1,
                addr: "127.0.0.1:1".parse().unwrap(),
                app: "live".into(),
                connect_query: connect.map(String::from),
                flash_ver: None,
                swf_url: None,
                tc_url: None,
                page_url: None,
                connected_at_ms: 0,
            }),
            app: "live".into(),
            name: "cam".into(),
            args: args.map(String::from),
            action: Action::Publish(PublishKind::Live),
        }
    }

    #[test]
    fn params_come_from_the_name_before_the_connect_query() {
        let a = attempt(Some("key=a%2Bb&x=1"), Some("key=other&token=t"));
        assert_eq!(a.param("key").as_deref(), Some("a+b"));
        assert_eq!(a.param("token").as_deref(), Some("t"));
        assert_eq!(a.param("missing"), None);
        assert_eq!(query_param("?x=1", "x").as_deref(), Some("1"));
    }

    struct Rename(&'static str);
    impl Access for Rename {
        fn admit(&self, a: StreamAttempt) -> BoxFuture<'static, Result<Admission, Refusal>> {
            let name = self.0;
            Box::pin(async move {
                Ok(Admission {
                    name: format!("{}-{name}", a.name),
                    tag: Some(name.into()),
                    ..Admission::unchanged(&a)
                })
            })
        }
    }

    #[tokio::test]
    async fn a_chain_passes_each_rename_on_and_keeps_the_first_tag() {
        let chain = Chain(vec![Arc::new(Rename("a")), Arc::new(Rename("b"))]);
        let admission = chain.admit(attempt(None, None)).await.ok().unwrap();
        assert_eq!(admission.name, "cam-a-b");
        assert_eq!(admission.tag.as_deref(), Some("a"));
    }
}

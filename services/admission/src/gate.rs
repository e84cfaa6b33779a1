//! The one way in for every publisher and viewer of this process: RTMP connections, static
//! pulls, edge upstreams, HTTP viewers. [`Gate::publish`] and [`Gate::play`] run the whole
//! sequence — access (for clients), the name access chose, the hub slot, the role's policy —
//! and return an [`Admitted`] value that holds what the session needs and undoes it on drop.
//!
//! The order of the checks is part of the behaviour:
//! - publish: the role's refusal of all publishers (before anything else, so a refused
//!   publish never holds a slot), access, the name, the local hub (one publisher per name
//!   here), then the policy (one per name in the cluster: a local duplicate never touches the
//!   registry);
//! - play: the connection's play budget, access, the name, the policy (an edge starts pulling),
//!   then the hub.
//!
//! Nothing here touches a socket or logs a refusal: the caller tells its peer and logs, with
//! what [`Refused`] says.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use liverelay_hub::{Hub, HubError, Publisher, Viewer};
use liverelay_metrics::KindLabel;
use liverelay_rtmp::command::code;
use liverelay_rtmp::name::{NameError, check_name};
use liverelay_rtmp::session::PublishKind;
use liverelay_types::{Refusal, StreamId, StreamPolicy, Ticket};
use tracing::{Instrument, info_span};

use crate::access::{Access, Action, ClientInfo, StreamAttempt};
use crate::admitted::{Admitted, Held};
use crate::metrics::AdmissionMetrics;
use crate::play_budget::{OverBudget, PlayBudget};
use crate::sessions::{SessionInfo, SessionRole, Sessions};

/// Admits publishers and viewers. One per process, shared by every listener and role task.
pub struct Gate {
    hub: Hub,
    policy: Arc<dyn StreamPolicy>,
    clients: Option<Clients>,
}

/// What a gate needs to let clients of listeners in.
pub struct Clients {
    pub access: Arc<dyn Access>,
    /// Admitted client sessions are entered here, so something outside the connection can end
    /// them.
    pub sessions: Sessions,
    /// `liverelay_sessions` counts the client sessions admitted.
    pub metrics: AdmissionMetrics,
    /// The longest app or stream name a client may send; the names access chooses follow the
    /// same rule (`liverelay_rtmp::name`).
    pub max_name_len: usize,
}

/// Who asks for a publish or play.
pub enum Asker<'a> {
    /// A client of a listener (an RTMP connection, an HTTP viewer): access decides, under the
    /// name it sent; the admitted session enters the session table and is counted.
    Client(ClientAsk<'a>),
    /// This process itself (a static pull, an edge upstream) for a stream it names: no access
    /// check, no session-table entry, and a role that takes no publishers does not stop it.
    Local(StreamId),
}

/// A client's publish or play request.
pub struct ClientAsk<'a> {
    /// `None` while the client has not been through `connect`: refused.
    pub client: Option<Arc<ClientInfo>>,
    /// The stream name as sent, without its query. May be a secret stream key: never logged.
    pub name: String,
    /// The query string sent after the name.
    pub args: Option<String>,
    /// The connection's play budget, taken before anything else is asked (plays only).
    pub plays: Option<&'a mut PlayBudget>,
}

/// A play's optional arguments as the client sent them (access sees them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlayArgs {
    pub start: Option<f64>,
    pub duration: Option<f64>,
    pub reset: Option<bool>,
}

/// Why a publish or play was refused.
#[derive(Debug)]
pub struct Refused {
    role: SessionRole,
    stream: Option<StreamId>,
    reason: Reason,
}

/// Which check refused, one variant per check.
#[derive(Debug)]
pub enum Reason {
    /// The role takes no publishers from clients (an edge).
    NoPublishers(Refusal),
    /// The client asked before its `connect` was accepted (or the gate takes no clients).
    NotConnected,
    /// More plays than the connection's budget.
    TooManyPlays(OverBudget),
    Access(Refusal),
    /// Access chose an app or stream name a client could not have sent.
    InvalidName(NameError),
    /// The local hub: the name is live here, or a stream limit is reached.
    Hub(HubError),
    /// The role's policy (the registry claim, the edge's upstream limit).
    Policy(Refusal),
}

impl Refused {
    fn new(role: SessionRole, stream: Option<StreamId>, reason: Reason) -> Self {
        Self {
            role,
            stream,
            reason,
        }
    }

    /// The stream inside liverelay, once access has named it. Never the name the client sent,
    /// which may be a secret stream key.
    pub fn stream(&self) -> Option<&StreamId> {
        self.stream.as_ref()
    }

    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// What the client is told: an RTMP status code and its description.
    pub fn status(&self) -> Refusal {
        let publish = self.role == SessionRole::Publisher;
        let (bad_name, denied) = if publish {
            (code::PUBLISH_BAD_NAME, code::PUBLISH_DENIED)
        } else {
            (code::PLAY_BAD_NAME, code::PLAY_FAILED)
        };
        let (code, description) = match &self.reason {
            Reason::NoPublishers(r) | Reason::Access(r) | Reason::Policy(r) => {
                (r.code, r.description.clone())
            }
            Reason::NotConnected => (denied, "not connected".into()),
            Reason::TooManyPlays(over) => (code::PLAY_FAILED, over.to_string()),
            Reason::InvalidName(e) => (
                bad_name,
                format!("access chose an invalid app or stream name: {e}"),
            ),
            Reason::Hub(HubError::AlreadyPublishing(key)) => {
                (bad_name, format!("{key} is already being published"))
            }
            Reason::Hub(e) => (denied, e.to_string()),
        };
        Refusal { code, description }
    }

    /// The check that refused, in a few words (a connection's close reason).
    pub fn why(&self) -> &'static str {
        match &self.reason {
            Reason::NoPublishers(_) => "role takes no publishers",
            Reason::NotConnected | Reason::Access(_) => "refused by access",
            Reason::TooManyPlays(_) => "too many plays",
            Reason::InvalidName(_) => "access chose an invalid name",
            Reason::Hub(HubError::AlreadyPublishing(_)) => "stream is already live",
            Reason::Hub(_) => "stream limit reached",
            Reason::Policy(_) => "refused by policy",
        }
    }
}

/// The refusal as the process's own publishers report it: the hub's or the check's words.
impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Reason::Hub(e) => write!(f, "{e}"),
            _ => f.write_str(&self.status().description),
        }
    }
}

impl std::error::Error for Refused {}

/// What access settled for a client besides the stream: the session-table tag and access's
/// ticket.
struct Settled {
    tag: Option<String>,
    ticket: Box<dyn Ticket>,
    /// Where the session is entered (clients only).
    client: Arc<ClientInfo>,
}

impl Gate {
    /// A gate for this process's own publishers and viewers (static pulls, edge upstreams):
    /// the hub and the role's policy. Clients need [`with_clients`](Self::with_clients).
    pub fn new(hub: Hub, policy: Arc<dyn StreamPolicy>) -> Self {
        Self {
            hub,
            policy,
            clients: None,
        }
    }

    /// Lets clients of listeners in, through `clients.access`.
    pub fn with_clients(mut self, clients: Clients) -> Self {
        self.clients = Some(clients);
        self
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Answers a client's `connect`: `Ok(Some(app))` moves it to another app (access's
    /// choice, checked against the name rule).
    pub async fn connect(&self, client: Arc<ClientInfo>) -> Result<Option<String>, Refusal> {
        let Some(clients) = &self.clients else {
            return Err(Refusal {
                code: code::CONNECT_REJECTED,
                description: "this server takes no clients".into(),
            });
        };
        match clients.access.connect(client).await? {
            Some(app) if check_name(&app, clients.max_name_len).is_err() => Err(Refusal {
                code: code::CONNECT_REJECTED,
                description: "access moved the connection to an invalid app name".into(),
            }),
            moved => Ok(moved),
        }
    }

    /// Admits a publish: the local hub slot, the role's policy ticket, and for a client what
    /// access started and its session-table entry.
    pub async fn publish(
        &self,
        asker: Asker<'_>,
        kind: PublishKind,
    ) -> Result<Admitted<Publisher>, Refused> {
        let role = SessionRole::Publisher;
        let (stream, settled) = match asker {
            Asker::Local(stream) => (stream, None),
            Asker::Client(ask) => {
                if let Some(refusal) = self.policy.refuses_publishers() {
                    return Err(Refused::new(role, None, Reason::NoPublishers(refusal)));
                }
                let (stream, settled) = self.ask_access(ask, Action::Publish(kind)).await?;
                (stream, Some(settled))
            }
        };
        let span = info_span!("publish", app = %stream.app, stream = %stream.name);
        let publisher = self
            .hub
            .publish(stream.clone())
            .map_err(|e| Refused::new(role, Some(stream.clone()), Reason::Hub(e)))?;
        let ticket = match self
            .policy
            .publish(stream.clone())
            .instrument(span.clone())
            .await
        {
            Ok(ticket) => ticket,
            Err(refusal) => {
                drop(publisher);
                return Err(Refused::new(role, Some(stream), Reason::Policy(refusal)));
            }
        };
        Ok(self.hold(role, publisher, ticket, settled, stream, span))
    }

    /// Admits a play: the policy's ticket (an edge starts pulling), the hub viewer, and for a
    /// client what access started and its session-table entry.
    pub async fn play(
        &self,
        asker: Asker<'_>,
        args: PlayArgs,
    ) -> Result<Admitted<Viewer>, Refused> {
        let role = SessionRole::Viewer;
        let (stream, settled) = match asker {
            Asker::Local(stream) => (stream, None),
            Asker::Client(mut ask) => {
                if let Some(plays) = ask.plays.as_deref_mut()
                    && let Err(over) = plays.take(Instant::now())
                {
                    return Err(Refused::new(role, None, Reason::TooManyPlays(over)));
                }
                let action = Action::Play {
                    start: args.start,
                    duration: args.duration,
                    reset: args.reset,
                };
                let (stream, settled) = self.ask_access(ask, action).await?;
                (stream, Some(settled))
            }
        };
        // On an edge, the upstream the policy starts (and the ingest's relay subscription,
        // through the trace context on the gRPC call) join this span's trace.
        let span = info_span!("play", app = %stream.app, stream = %stream.name);
        let ticket = self
            .policy
            .play(stream.clone())
            .instrument(span.clone())
            .await
            .map_err(|r| Refused::new(role, Some(stream.clone()), Reason::Policy(r)))?;
        let viewer = self
            .hub
            .play(stream.clone())
            .map_err(|e| Refused::new(role, Some(stream.clone()), Reason::Hub(e)))?;
        Ok(self.hold(role, viewer, ticket, settled, stream, span))
    }

    /// Access's decision on a client's attempt, and the name it chose checked.
    async fn ask_access(
        &self,
        ask: ClientAsk<'_>,
        action: Action,
    ) -> Result<(StreamId, Settled), Refused> {
        let role = if action.is_publish() {
            SessionRole::Publisher
        } else {
            SessionRole::Viewer
        };
        let refused = |reason| Refused::new(role, None, reason);
        let (Some(clients), Some(client)) = (&self.clients, ask.client) else {
            return Err(refused(Reason::NotConnected));
        };
        let attempt = StreamAttempt {
            app: client.app.clone(),
            client: client.clone(),
            name: ask.name,
            args: ask.args,
            action,
        };
        let admission = clients
            .access
            .admit(attempt)
            .await
            .map_err(|r| refused(Reason::Access(r)))?;
        check_name(&admission.app, clients.max_name_len)
            .and(check_name(&admission.name, clients.max_name_len))
            .map_err(|e| refused(Reason::InvalidName(e)))?;
        let settled = Settled {
            tag: admission.tag,
            ticket: admission.ticket,
            client,
        };
        Ok((StreamId::new(admission.app, admission.name), settled))
    }

    /// Combines the tickets, asks for their revocation once, and enters a client's session.
    fn hold<T>(
        &self,
        role: SessionRole,
        slot: T,
        policy_ticket: Box<dyn Ticket>,
        settled: Option<Settled>,
        stream: StreamId,
        span: tracing::Span,
    ) -> Admitted<T> {
        let (ticket, kicked, registered) = match (settled, &self.clients) {
            (Some(settled), Some(clients)) => {
                let kind = match role {
                    SessionRole::Publisher => "publish",
                    SessionRole::Viewer => "play",
                };
                clients
                    .metrics
                    .sessions
                    .get_or_create(&KindLabel { kind })
                    .inc();
                let (registered, kicked) = clients.sessions.register(SessionInfo {
                    client_id: settled.client.id,
                    addr: settled.client.addr,
                    role,
                    app: stream.app.clone(),
                    name: stream.name.clone(),
                    tag: settled.tag,
                });
                let tickets: Box<dyn Ticket> = Box::new(vec![policy_ticket, settled.ticket]);
                (tickets, Some(kicked), Some(registered))
            }
            _ => (policy_ticket, None, None),
        };
        let revoked = ticket.revoked();
        Admitted::new(
            slot,
            Held {
                stream,
                _ticket: ticket,
                revoked,
                kicked,
                _registered: registered,
                span,
            },
        )
    }
}

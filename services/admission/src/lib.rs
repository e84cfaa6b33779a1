//! Admission: may this peer publish or play, and what does it hold while it does.
//!
//! Every kind of publisher and viewer comes in through one [`Gate`]: RTMP connections, static
//! pulls, edge upstreams, HTTP viewers. The gate asks [`Access`] (for clients: *whether*, and
//! *as what*), takes the hub slot, asks the role's
//! [`StreamPolicy`](liverelay_types::StreamPolicy) (*where* in the cluster), and returns an
//! [`Admitted`] value that owns the tickets, the revocation watch, the [`Sessions`] entry and
//! the session's span, undoing them on drop; its [`withdrawn`](Admitted::withdrawn) future is
//! the one thing a driver waits on to hear that the session must end.
//!
//! Never here: sockets, protocol state, logging a refusal (the caller tells its peer).

#![forbid(unsafe_code)]

mod access;
mod admitted;
mod gate;
mod metrics;
mod play_budget;
mod sessions;

pub use access::{
    Access, Action, Admission, Chain, ClientInfo, OpenAccess, StreamAttempt, query_param,
};
pub use admitted::{Admitted, Withdrawn};
pub use gate::{Asker, ClientAsk, Clients, Gate, PlayArgs, Reason, Refused};
/// How a client publishes (live, record, append); the process's own publishers are live.
pub use liverelay_rtmp::session::PublishKind;
pub use metrics::AdmissionMetrics;
pub use play_budget::{OverBudget, PlayBudget};
pub use sessions::{Registered, SessionInfo, SessionRole, Sessions};

#[cfg(test)]
mod tests;

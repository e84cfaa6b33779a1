//! The vocabulary at the bottom of the workspace. Every crate may depend on this one, so no
//! crate depends on another only for a type that belongs to neither. Nothing here does I/O.

#![forbid(unsafe_code)]

mod drop_target;
mod policy;
mod role;
mod stream_id;
mod task;
mod time;
mod token;

pub use drop_target::DropTarget;
pub use policy::{OpenPolicy, Refusal, StreamPolicy, Ticket};
pub use role::Role;
pub use stream_id::{InvalidStreamId, StreamId};
pub use task::AbortOnDrop;
pub use time::{unix_ms, unix_secs, unix_us};
pub use token::{ClusterToken, TokenRejected, constant_time_eq, verify_bearer};

//! The protobuf definitions of liverelay's pod-to-pod APIs, compiled once for every crate
//! that speaks them, with the client plumbing they share (TLS settings, the token); the
//! services are in `liverelay-relay` and `liverelay-control`, their clients beside the code
//! that calls them.

/// Media relay: an edge subscribes to a stream on the ingest that owns it.
pub mod relay {
    pub mod v1 {
        tonic::include_proto!("liverelay.relay.v1");
    }
}

/// Control: ingests ask it about publish keys; pods ask it for routing decisions.
pub mod control {
    pub mod v1 {
        tonic::include_proto!("liverelay.control.v1");
    }
}

mod client_tls;
mod tls_channel;
pub mod token;

pub use client_tls::grpc_client_tls;
pub use tls_channel::{TlsChannelError, TlsFiles, tls_channel};

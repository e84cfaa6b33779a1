//! Why a connection ended: logged once per connection, and counted when the handshake failed.

use std::fmt;

use liverelay_rtmp::SessionError;

#[derive(Debug)]
pub enum CloseReason {
    PeerClosed,
    ClientClose,
    HandshakeTimeout,
    IdleTimeout,
    WriteTimeout,
    Io(std::io::Error),
    Protocol(SessionError),
    /// No `connect`, or no publish or play, within its deadline (the session's timers).
    Deadline(SessionError),
    Refused(&'static str),
    /// The client speaks another protocol on this port (TLS on the plain port, plain RTMP on
    /// the RTMPS port).
    WrongProtocol(&'static str),
    /// The TLS handshake failed.
    Tls(std::io::Error),
    /// The publish or play was withdrawn (lease lost, key revoked, dropped by an operator).
    Revoked(&'static str, String),
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::ClientClose => f.write_str("client sent close"),
            Self::HandshakeTimeout => f.write_str("handshake timed out"),
            Self::IdleTimeout => f.write_str("nothing received within the idle timeout"),
            Self::WriteTimeout => f.write_str("peer did not read within the idle timeout"),
            Self::Io(e) => write!(f, "socket error: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Deadline(e) => write!(f, "{e}"),
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::WrongProtocol(why) => write!(f, "wrong protocol: {why}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Revoked(what, why) => write!(f, "{what} revoked: {why}"),
            Self::Shutdown => f.write_str("server shutting down (drain grace period over)"),
        }
    }
}

impl CloseReason {
    /// Why the session's `handle_timeout` failed: idle keeps its own reason.
    pub(super) fn timer(e: SessionError) -> Self {
        match e {
            SessionError::IdleTimeout(_) => Self::IdleTimeout,
            e => Self::Deadline(e),
        }
    }

    /// The `reason` label of `liverelay_handshake_failures` for a handshake that ended
    /// this way.
    pub(super) fn handshake_label(&self) -> &'static str {
        match self {
            Self::HandshakeTimeout => "timeout",
            Self::PeerClosed => "closed",
            Self::Io(_) => "io",
            Self::Protocol(SessionError::Handshake(_)) => "bad_version",
            Self::WrongProtocol(_) => "wrong_protocol",
            _ => "protocol",
        }
    }
}

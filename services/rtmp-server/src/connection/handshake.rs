//! The RTMP handshake (C0/C1/C2 against S0/S1/S2) before the connection's loop starts, within
//! its timeout; a TLS client on the plain port is told apart by its first byte. Failures are
//! counted by reason.

use std::time::Instant;

use bytes::BytesMut;
use liverelay_metrics::ReasonLabel;
use liverelay_rtmp::SessionError;
use tokio::io::AsyncReadExt;

use super::{CloseReason, Connection, PLAYER_READ, TLS_HANDSHAKE};
use crate::write::Transport;

impl<S: Transport> Connection<S> {
    /// Runs the handshake within its timeout; returns how decoding what came after C2 in the
    /// same read went. A failure is counted by reason.
    pub(super) async fn handshake(&mut self) -> Result<Result<(), SessionError>, CloseReason> {
        let timeout = self.config.handshake_timeout;
        let result = tokio::time::timeout(timeout, self.exchange())
            .await
            .unwrap_or(Err(CloseReason::HandshakeTimeout));
        result.inspect_err(|reason| {
            self.metrics
                .handshake_failures
                .get_or_create(&ReasonLabel {
                    reason: reason.handshake_label(),
                })
                .inc();
        })
    }

    async fn exchange(&mut self) -> Result<Result<(), SessionError>, CloseReason> {
        let mut first_read = true;
        while !self.session.is_handshake_done() {
            let recv = self.session.recv_buffer();
            if recv.capacity() - recv.len() < 2048 {
                // C0+C1 is 1537 bytes, C2 1536: one read each.
                recv.reserve(4096);
            }
            let n = self
                .socket
                .read_buf(self.session.recv_buffer())
                .await
                .map_err(CloseReason::Io)?;
            if n == 0 {
                return Err(CloseReason::PeerClosed);
            }
            // Checked on the first read only: later the buffer starts mid-handshake.
            let first = std::mem::take(&mut first_read);
            if first && !S::ENCRYPTED && self.session.recv_buffer().first() == Some(&TLS_HANDSHAKE)
            {
                return Err(CloseReason::WrongProtocol(
                    "TLS client on the plain RTMP port (use the RTMPS port)",
                ));
            }
            let result = self.session.process();
            if self.session.is_handshake_done() {
                self.shrink_recv_buffer();
                self.flush().await?;
                self.session.note_received(Instant::now());
                return Ok(result);
            }
            result.map_err(CloseReason::Protocol)?;
            self.flush().await?;
        }
        Ok(Ok(()))
    }

    /// Moves what is left of the input into a buffer of a player's size: the handshake's
    /// buffer (C0+C1 and C2, 3 KiB and more) would otherwise stay with every player for its
    /// whole life. A publisher's grows again on its first read.
    fn shrink_recv_buffer(&mut self) {
        let recv = self.session.recv_buffer();
        let rest = recv.split();
        *recv = BytesMut::with_capacity(rest.len().max(PLAYER_READ));
        recv.extend_from_slice(&rest);
    }
}

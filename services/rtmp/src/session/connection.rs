//! What both ends of an RTMP connection share once the handshake is done: the chunk codecs,
//! protocol control messages (chunk size, abort, acknowledgements, bandwidth) and pings.

use bytes::{Bytes, BytesMut};

use super::SessionError;
use crate::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
use crate::message::{self, LimitType, RawMessage, UserControl, csid, type_id};

/// What the chunk layer hands up after handling protocol control itself.
#[derive(Debug)]
pub(crate) enum Incoming {
    Message(RawMessage),
    UserControl(UserControl),
}

#[derive(Debug)]
pub(crate) struct ChunkConnection {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    pub out: BytesMut,
    /// Bytes received since the handshake (acknowledgement sequence numbers count these).
    received: u64,
    acked: u64,
    /// Window the peer asked us to acknowledge at (its Window Acknowledgement Size).
    peer_window: Option<u32>,
    /// Window we announced to the peer.
    our_window: Option<u32>,
}

impl ChunkConnection {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::default(),
            out: BytesMut::new(),
            received: 0,
            acked: 0,
            peer_window: None,
            our_window: None,
        }
    }

    /// Changes the message size and pending-bytes limits for what the peer sends from now on.
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.decoder
            .set_limits(limits.max_message_size, limits.max_pending_bytes);
    }

    pub fn out_chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    pub fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: Bytes) {
        let msg = RawMessage {
            timestamp,
            type_id,
            stream_id,
            payload,
        };
        self.encoder.write(csid, &msg, &mut self.out);
    }

    fn send_control(&mut self, type_id: u8, payload: Bytes) {
        self.send(csid::PROTOCOL_CONTROL, type_id, 0, 0, payload);
    }

    pub fn send_user_control(&mut self, event: UserControl) {
        self.send_control(type_id::USER_CONTROL, event.encode());
    }

    pub fn send_command(&mut self, stream_id: u32, body: Bytes) {
        self.send(csid::COMMAND, type_id::COMMAND_AMF0, stream_id, 0, body);
    }

    pub fn send_data(&mut self, stream_id: u32, body: Bytes) {
        self.send(csid::DATA, type_id::DATA_AMF0, stream_id, 0, body);
    }

    /// Announces and starts using an outgoing chunk size.
    pub fn set_out_chunk_size(&mut self, size: u32) {
        self.send_control(
            type_id::SET_CHUNK_SIZE,
            message::u32_payload(size & 0x7FFF_FFFF),
        );
        self.encoder.set_chunk_size(size);
    }

    pub fn send_window_ack_size(&mut self, window: u32) {
        self.our_window = Some(window);
        self.send_control(type_id::WINDOW_ACK_SIZE, message::u32_payload(window));
    }

    pub fn send_peer_bandwidth(&mut self, window: u32, limit: LimitType) {
        let mut p = window.to_be_bytes().to_vec();
        p.push(limit as u8);
        self.send_control(type_id::SET_PEER_BANDWIDTH, Bytes::from(p));
    }

    /// Decodes the next message from `inbuf`, handling protocol control messages and pings
    /// on the way, and sends acknowledgements as the peer's window fills.
    pub fn next(&mut self, inbuf: &mut BytesMut) -> Result<Option<Incoming>, SessionError> {
        loop {
            let before = inbuf.len();
            let msg = self.decoder.decode(inbuf)?;
            self.received += (before - inbuf.len()) as u64;
            self.maybe_ack();
            let Some(msg) = msg else { return Ok(None) };
            if let Some(incoming) = self.handle_control(msg)? {
                return Ok(Some(incoming));
            }
        }
    }

    fn maybe_ack(&mut self) {
        if let Some(window) = self.peer_window.filter(|w| *w > 0)
            && self.received - self.acked >= u64::from(window)
        {
            self.acked = self.received;
            // The sequence number is the byte count modulo 2^32.
            self.send_control(
                type_id::ACKNOWLEDGEMENT,
                message::u32_payload(self.received as u32),
            );
        }
    }

    fn handle_control(&mut self, msg: RawMessage) -> Result<Option<Incoming>, SessionError> {
        let arg = || message::read_u32(&msg.payload);
        match msg.type_id {
            type_id::SET_CHUNK_SIZE => {
                let size = arg().ok_or(SessionError::MalformedControl("Set Chunk Size"))?;
                self.decoder.set_chunk_size(size & 0x7FFF_FFFF)?;
            }
            type_id::ABORT => {
                self.decoder
                    .abort(arg().ok_or(SessionError::MalformedControl("Abort"))?);
            }
            type_id::ACKNOWLEDGEMENT => {}
            type_id::WINDOW_ACK_SIZE => {
                self.peer_window =
                    Some(arg().ok_or(SessionError::MalformedControl("Window Ack Size"))?);
            }
            type_id::SET_PEER_BANDWIDTH => {
                let window = arg().ok_or(SessionError::MalformedControl("Set Peer Bandwidth"))?;
                // The receiver of Set Peer Bandwidth answers with Window Acknowledgement Size
                // when the window differs from the one it last sent (§5.4.5).
                if self.our_window != Some(window) {
                    self.send_window_ack_size(window);
                }
            }
            type_id::USER_CONTROL => {
                let event = UserControl::parse(&msg.payload)
                    .ok_or(SessionError::MalformedControl("User Control"))?;
                if let UserControl::PingRequest(t) = event {
                    self.send_user_control(UserControl::PingResponse(t));
                }
                return Ok(Some(Incoming::UserControl(event)));
            }
            _ => return Ok(Some(Incoming::Message(msg))),
        }
        Ok(None)
    }
}

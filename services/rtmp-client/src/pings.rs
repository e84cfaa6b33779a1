//! When the server's pings arrived. The session answers pings (User Control 6) by itself and
//! reports nothing, so a client that wants to see them reads the chunk stream a second time,
//! with the protocol core's decoder, only for them.

use std::time::Instant;

use bytes::BytesMut;
use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits};
use liverelay_rtmp::handshake::HANDSHAKE_SIZE;
use liverelay_rtmp::message::{UserControl, type_id};

pub(crate) struct PingLog {
    /// Handshake bytes (S0, S1, S2) still to pass over.
    skip: usize,
    buf: BytesMut,
    decoder: ChunkDecoder,
    /// Set when the stream could not be decoded: nothing more is logged.
    broken: bool,
    at: Vec<Instant>,
}

impl PingLog {
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            skip: 1 + 2 * HANDSHAKE_SIZE,
            buf: BytesMut::new(),
            decoder: ChunkDecoder::new(limits),
            broken: false,
            at: Vec::new(),
        }
    }

    /// Takes the bytes just received, in order, from the first one on.
    pub fn feed(&mut self, bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        if self.broken {
            return;
        }
        self.buf.extend_from_slice(&bytes[skipped..]);
        loop {
            let msg = match self.decoder.decode(&mut self.buf) {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                // The session fails on the same bytes and reports why.
                Err(_) => break,
            };
            let arg = msg
                .payload
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let understood = match (msg.type_id, arg) {
                (type_id::SET_CHUNK_SIZE, Some(size)) => {
                    self.decoder.set_chunk_size(size & 0x7FFF_FFFF).is_ok()
                }
                (type_id::ABORT, Some(csid)) => {
                    self.decoder.abort(csid);
                    true
                }
                (type_id::SET_CHUNK_SIZE | type_id::ABORT, None) => false,
                (type_id::USER_CONTROL, _) => {
                    if let Some(UserControl::PingRequest(_)) = UserControl::parse(&msg.payload) {
                        self.at.push(Instant::now());
                    }
                    true
                }
                _ => true,
            };
            if !understood {
                break;
            }
        }
        self.broken = true;
        self.buf = BytesMut::new();
    }

    pub fn times(&self) -> &[Instant] {
        &self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use liverelay_rtmp::RawMessage;
    use liverelay_rtmp::chunk::encode_message;

    fn control(type_id: u8, payload: Bytes, chunk_size: u32) -> Bytes {
        let msg = RawMessage {
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload,
        };
        encode_message(2, &msg, chunk_size)
    }

    #[test]
    fn logs_pings_after_the_handshake_across_chunk_size_changes() {
        let mut log = PingLog::new(ChunkLimits::default());
        let ping = || {
            control(
                type_id::USER_CONTROL,
                UserControl::PingRequest(7).encode(),
                128,
            )
        };
        let mut wire = vec![3u8; 1 + 2 * HANDSHAKE_SIZE];
        wire.extend_from_slice(&ping());
        wire.extend_from_slice(&control(
            type_id::SET_CHUNK_SIZE,
            Bytes::copy_from_slice(&4096u32.to_be_bytes()),
            128,
        ));
        let video = RawMessage {
            timestamp: 0,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: Bytes::from(vec![0x17; 3000]),
        };
        wire.extend_from_slice(&encode_message(6, &video, 4096));
        wire.extend_from_slice(&ping());
        // A byte at a time: the handshake is skipped and messages are put together.
        for b in &wire {
            log.feed(std::slice::from_ref(b));
        }
        assert_eq!(log.times().len(), 2);
    }
}

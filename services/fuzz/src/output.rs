//! Reads what a server session sends, the way a client would, and panics at anything a client
//! could not take: a handshake reply of the wrong shape, chunks that do not decode into whole
//! messages, a message type a server has no business sending, control messages of the wrong
//! length, AMF that does not decode to its last byte, a reply without its status fields. The same
//! bytes also go through the project's [`ClientSession`], which must accept all of them.

use bytes::BytesMut;
use liverelay_rtmp::amf::{self, Amf0Value};
use liverelay_rtmp::chunk::{ChunkDecoder, ChunkLimits, MAX_CHUNK_SIZE, MAX_MESSAGE_LENGTH};
use liverelay_rtmp::handshake::{ClientKind, HANDSHAKE_SIZE};
use liverelay_rtmp::message::{RawMessage, UserControl, type_id};
use liverelay_rtmp::session::{ClientConfig, ClientSession};

/// S0 + S1 + S2.
pub const HANDSHAKE_REPLY_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

/// The largest a peer can legitimately send: the decoders must not refuse anything valid.
const ANY_SIZE: ChunkLimits = ChunkLimits {
    max_chunk_size: MAX_CHUNK_SIZE,
    max_message_size: MAX_MESSAGE_LENGTH,
    max_chunk_streams: 65_600,
    max_pending_bytes: usize::MAX,
};

/// A command message the server sent (`_result`, `_error`, `onStatus`, `onFCPublish`, ...),
/// with the fields of its info object.
#[derive(Debug, Clone)]
pub struct Reply {
    pub stream_id: u32,
    pub name: String,
    pub transaction_id: f64,
    pub level: Option<String>,
    pub code: Option<String>,
}

/// A protocol or user control message the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Acknowledgement(u32),
    WindowAckSize(u32),
    PeerBandwidth(u32, u8),
    User(UserControl),
}

/// The server's side of the wire, decoded.
pub struct ServerOutput {
    handshake: Vec<u8>,
    buf: BytesMut,
    decoder: ChunkDecoder,
    client: ClientSession,
    /// Decoded since the last [`take`](Self::take).
    pub replies: Vec<Reply>,
    pub controls: Vec<Control>,
}

impl Default for ServerOutput {
    fn default() -> Self {
        let client = ClientConfig {
            handshake: ClientKind::Simple,
            limits: ANY_SIZE,
            ..ClientConfig::default()
        };
        Self {
            handshake: Vec::with_capacity(HANDSHAKE_REPLY_LEN),
            buf: BytesMut::new(),
            decoder: ChunkDecoder::new(ANY_SIZE),
            client: ClientSession::new(client, &[0; 3072], 0),
            replies: Vec::new(),
            controls: Vec::new(),
        }
    }
}

impl ServerOutput {
    /// S0 + S1 + S2 once all of it has arrived.
    pub fn handshake_reply(&self) -> Option<&[u8]> {
        (self.handshake.len() == HANDSHAKE_REPLY_LEN).then_some(&self.handshake[..])
    }

    /// The chunk size the server announced (what its later chunks must be read with).
    pub fn chunk_size(&self) -> u32 {
        self.decoder.chunk_size()
    }

    /// Decodes one `poll_transmit` worth of output. A session writes whole messages, so nothing
    /// may be left over.
    pub fn observe(&mut self, mut data: &[u8]) {
        if let Err(e) = self.client.feed(data) {
            panic!("the project's client session refuses the server's output: {e}");
        }
        while self.client.poll_event().is_some() {}
        let missing = HANDSHAKE_REPLY_LEN - self.handshake.len();
        let (reply, rest) = data.split_at(missing.min(data.len()));
        self.handshake.extend_from_slice(reply);
        data = rest;
        self.buf.extend_from_slice(data);
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(msg)) => self.check(msg),
                Ok(None) => break,
                Err(e) => panic!("the server's chunk stream does not decode: {e}"),
            }
        }
        assert!(
            self.buf.is_empty(),
            "the server's output ends inside a chunk header or payload ({} bytes left)",
            self.buf.len()
        );
    }

    fn check(&mut self, msg: RawMessage) {
        let p = &msg.payload[..];
        let t = msg.type_id;
        if t <= type_id::SET_PEER_BANDWIDTH {
            assert_eq!(msg.stream_id, 0, "control message type {t} off stream 0");
        }
        let u32_arg = |what: &str| -> u32 {
            let b: [u8; 4] = p
                .try_into()
                .unwrap_or_else(|_| panic!("{what} with a {}-byte payload", p.len()));
            u32::from_be_bytes(b)
        };
        match t {
            type_id::SET_CHUNK_SIZE => {
                let size = u32_arg("Set Chunk Size");
                assert!(
                    (1..=MAX_CHUNK_SIZE).contains(&size),
                    "Set Chunk Size {size}"
                );
                self.decoder.set_chunk_size(size).expect("size checked");
            }
            type_id::ACKNOWLEDGEMENT => {
                let seq = u32_arg("Acknowledgement");
                self.controls.push(Control::Acknowledgement(seq));
            }
            type_id::WINDOW_ACK_SIZE => {
                let size = u32_arg("Window Acknowledgement Size");
                self.controls.push(Control::WindowAckSize(size));
            }
            type_id::SET_PEER_BANDWIDTH => {
                let [a, b, c, d, limit] = p[..] else {
                    panic!("Set Peer Bandwidth payload {p:02x?}");
                };
                assert!(limit <= 2, "Set Peer Bandwidth limit type {limit}");
                let window = u32::from_be_bytes([a, b, c, d]);
                self.controls.push(Control::PeerBandwidth(window, limit));
            }
            type_id::USER_CONTROL => {
                let event = UserControl::parse(p)
                    .unwrap_or_else(|| panic!("user control message {p:02x?} does not parse"));
                assert_eq!(&event.encode()[..], p, "user control with trailing bytes");
                self.controls.push(Control::User(event));
            }
            type_id::COMMAND_AMF0 => {
                let reply = command(&msg);
                self.replies.push(reply);
            }
            type_id::DATA_AMF0 => {
                let values = amf_values(p, "data message");
                assert!(
                    values.first().and_then(Amf0Value::as_str).is_some(),
                    "data message without a handler name: {values:?}"
                );
            }
            other => panic!("the server sent a message of type {other}"),
        }
    }

    /// Takes what was decoded since the last call.
    pub fn take(&mut self) -> (Vec<Reply>, Vec<Control>) {
        (
            std::mem::take(&mut self.replies),
            std::mem::take(&mut self.controls),
        )
    }
}

/// Every value of an AMF0 body, which must decode to its last byte.
fn amf_values(body: &[u8], what: &str) -> Vec<Amf0Value> {
    amf::decode_all(body).unwrap_or_else(|e| panic!("{what} is not valid AMF0: {e}"))
}

/// Checks a command the server sent and returns its parts. Replies and status notifications
/// carry an info object with `level`, `code` and `description` (a `_result` may carry a value
/// instead: a stream id, `undefined`).
fn command(msg: &RawMessage) -> Reply {
    let values = amf_values(&msg.payload, "command");
    let (Some(Amf0Value::String(name)), Some(Amf0Value::Number(txn))) =
        (values.first(), values.get(1))
    else {
        panic!("command without a name and a transaction id: {values:?}");
    };
    let info = values.get(3);
    let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Amf0Value::as_str);
    let needs_info = match name.as_str() {
        "_result" => false,
        "_error" | "onStatus" | "onFCPublish" | "onFCUnpublish" => true,
        other => panic!("the server sent an unexpected command {other:?}"),
    };
    if needs_info || info.is_some_and(|i| i.properties().is_some()) {
        let level = field("level");
        assert!(
            matches!(level, Some("status" | "error" | "warning")),
            "{name} with level {level:?}: {values:?}"
        );
        assert!(
            field("code")
                .is_some_and(|c| c.starts_with("NetStream.") || c.starts_with("NetConnection.")),
            "{name} without a status code: {values:?}"
        );
        assert!(
            field("description").is_some(),
            "{name} without a description: {values:?}"
        );
    }
    if name == "_error" {
        assert_eq!(
            field("level"),
            Some("error"),
            "_error of level other than error"
        );
    }
    if name.starts_with('_') {
        assert_eq!(msg.stream_id, 0, "{name} off stream 0");
    }
    Reply {
        stream_id: msg.stream_id,
        name: name.clone(),
        transaction_id: *txn,
        level: field("level").map(str::to_owned),
        code: field("code").map(str::to_owned),
    }
}

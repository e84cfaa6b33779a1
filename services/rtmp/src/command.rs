//! AMF command messages (RTMP 1.0 §7.2): decoding a command's name, transaction id and
//! arguments, and building the standard replies (`_result`, `_error`, `onStatus`).

use bytes::{Bytes, BytesMut};

use crate::amf::{self, Amf0Decoder, Amf0Value, AmfError};
use crate::message::{RawMessage, type_id};

/// A decoded command: `name`, transaction id, command object, then the remaining arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub command_object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("malformed AMF in command: {0}")]
    Amf(#[from] AmfError),
    #[error("command message does not start with a name string")]
    MissingName,
}

/// Strips the format byte AMF3 command/data messages (types 17, 15) start with: what follows is
/// AMF0 (with AVM+ switches inside), so one decoder serves both.
pub fn amf0_body(msg: &RawMessage) -> Bytes {
    match msg.type_id {
        type_id::COMMAND_AMF3 | type_id::DATA_AMF3 if msg.payload.first() == Some(&0) => {
            msg.payload.slice(1..)
        }
        _ => msg.payload.clone(),
    }
}

impl Command {
    pub fn decode(body: &[u8]) -> Result<Self, CommandError> {
        let mut dec = Amf0Decoder::new(body);
        let name = match dec.decode()? {
            Amf0Value::String(s) => s,
            _ => return Err(CommandError::MissingName),
        };
        // Some clients end a command after its name or transaction id; missing parts are Null.
        let transaction_id = if dec.is_empty() {
            0.0
        } else {
            dec.decode()?.as_f64().unwrap_or(0.0)
        };
        let command_object = if dec.is_empty() {
            Amf0Value::Null
        } else {
            dec.decode()?
        };
        let mut args = Vec::new();
        while !dec.is_empty() {
            args.push(dec.decode()?);
        }
        Ok(Self {
            name,
            transaction_id,
            command_object,
            args,
        })
    }

    /// Decodes only the command's name: what a server checks before it spends any work on the
    /// rest of a message from a peer it has not accepted yet.
    pub fn peek_name(body: &[u8]) -> Result<String, CommandError> {
        match Amf0Decoder::new(body).decode()? {
            Amf0Value::String(s) => Ok(s),
            _ => Err(CommandError::MissingName),
        }
    }

    pub fn arg(&self, i: usize) -> Option<&Amf0Value> {
        self.args.get(i)
    }

    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.arg(i).and_then(Amf0Value::as_str)
    }

    pub fn arg_f64(&self, i: usize) -> Option<f64> {
        self.arg(i).and_then(Amf0Value::as_f64)
    }
}

/// Encodes a command message body from its parts.
pub fn encode_command(name: &str, transaction_id: f64, values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    amf::encode(&Amf0Value::String(name.to_owned()), &mut out);
    amf::encode(&Amf0Value::Number(transaction_id), &mut out);
    amf::encode_all(values, &mut out);
    out.freeze()
}

/// Level of an `onStatus` info object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLevel {
    Status,
    Error,
    Warning,
}

impl StatusLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// The info object every status reply carries.
pub fn status_info(level: StatusLevel, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::String(level.as_str().into())),
        ("code", Amf0Value::String(code.into())),
        ("description", Amf0Value::String(description.into())),
    ])
}

/// `onStatus(0, null, info)`.
pub fn on_status(info: Amf0Value) -> Bytes {
    encode_command("onStatus", 0.0, &[Amf0Value::Null, info])
}

/// Enhanced RTMP v2 `capsEx` bits a `connect` may announce.
pub mod caps_ex {
    /// The client handles `NetConnection.Connect.ReconnectRequest`.
    pub const RECONNECT: u8 = 0x01;
}

/// Standard status codes used in replies.
pub mod code {
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    pub const CONNECT_CLOSED: &str = "NetConnection.Connect.Closed";
    /// Enhanced RTMP v2: the server asks the client to connect again (optionally elsewhere,
    /// `tcUrl` in the info object), for clients whose `connect` announced `capsEx` Reconnect.
    pub const CONNECT_RECONNECT_REQUEST: &str = "NetConnection.Connect.ReconnectRequest";
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    pub const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    pub const PLAY_START: &str = "NetStream.Play.Start";
    pub const PLAY_BAD_NAME: &str = "NetStream.Play.BadName";
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    pub const DATA_START: &str = "NetStream.Data.Start";
    pub const PAUSE_NOTIFY: &str = "NetStream.Pause.Notify";
    pub const UNPAUSE_NOTIFY: &str = "NetStream.Unpause.Notify";
}

/// Splits `"name?query"` into its parts; the query keeps its raw form for auth callbacks.
pub fn split_query(s: &str) -> (String, Option<String>) {
    match s.split_once('?') {
        Some((name, query)) => (name.to_owned(), Some(query.to_owned())),
        None => (s.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_connect_like_ffmpeg() {
        let obj = Amf0Value::object([
            ("app", Amf0Value::String("live".into())),
            ("type", Amf0Value::String("nonprivate".into())),
            (
                "flashVer",
                Amf0Value::String("FMLE/3.0 (compatible; Lavf59.27.100)".into()),
            ),
            (
                "tcUrl",
                Amf0Value::String("rtmp://localhost:1935/live".into()),
            ),
        ]);
        let body = encode_command("connect", 1.0, std::slice::from_ref(&obj));
        let cmd = Command::decode(&body).unwrap();
        assert_eq!(cmd.name, "connect");
        assert_eq!(cmd.transaction_id, 1.0);
        assert_eq!(
            cmd.command_object.get("app").and_then(Amf0Value::as_str),
            Some("live")
        );
        assert!(cmd.args.is_empty());
    }

    #[test]
    fn decode_publish_args_and_short_commands() {
        let body = encode_command(
            "publish",
            5.0,
            &[
                Amf0Value::Null,
                Amf0Value::String("test?key=1".into()),
                Amf0Value::String("live".into()),
            ],
        );
        let cmd = Command::decode(&body).unwrap();
        assert_eq!(cmd.arg_str(0), Some("test?key=1"));
        assert_eq!(cmd.arg_str(1), Some("live"));
        let mut only_name = BytesMut::new();
        amf::encode(&Amf0Value::String("close".into()), &mut only_name);
        let cmd = Command::decode(&only_name).unwrap();
        assert_eq!((cmd.name.as_str(), cmd.transaction_id), ("close", 0.0));
        assert_eq!(
            Command::decode(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CommandError::MissingName)
        );
        assert!(matches!(
            Command::decode(&[0x02, 0x00, 0x10, b'a']),
            Err(CommandError::Amf(_))
        ));
    }

    #[test]
    fn query_split() {
        assert_eq!(
            split_query("live?a=1&b=2"),
            ("live".into(), Some("a=1&b=2".into()))
        );
        assert_eq!(split_query("stream"), ("stream".into(), None));
    }
}

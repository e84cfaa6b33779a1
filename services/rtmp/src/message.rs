//! RTMP messages as they come off (and go onto) the chunk stream, and the protocol control and
//! user control messages the session handles itself. No I/O here.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Message type ids (RTMP 1.0 §5.4, §7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Well-known chunk stream ids. Media csids match what nginx-rtmp sends so captures look familiar.
pub mod csid {
    pub const PROTOCOL_CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const DATA: u32 = 5;
    pub const AUDIO: u32 = 6;
    pub const VIDEO: u32 = 7;
}

/// One reassembled message. `timestamp` is the 32-bit wire value; sessions extend it to 64 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// User control event types (RTMP 1.0 §7.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// Events we do not act on (e.g. SWF verification); kept so they are not errors.
    Other(u16),
}

impl UserControl {
    pub fn parse(mut payload: &[u8]) -> Option<Self> {
        if payload.len() < 2 {
            return None;
        }
        let event = payload.get_u16();
        let mut arg = || (payload.len() >= 4).then(|| payload.get_u32());
        Some(match event {
            0 => Self::StreamBegin(arg()?),
            1 => Self::StreamEof(arg()?),
            2 => Self::StreamDry(arg()?),
            3 => {
                let stream_id = arg()?;
                Self::SetBufferLength {
                    stream_id,
                    millis: arg()?,
                }
            }
            4 => Self::StreamIsRecorded(arg()?),
            6 => Self::PingRequest(arg()?),
            7 => Self::PingResponse(arg()?),
            other => Self::Other(other),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(10);
        let (event, args): (u16, &[u32]) = match self {
            Self::StreamBegin(id) => (0, &[*id]),
            Self::StreamEof(id) => (1, &[*id]),
            Self::StreamDry(id) => (2, &[*id]),
            Self::SetBufferLength { stream_id, millis } => {
                b.put_u16(3);
                b.put_u32(*stream_id);
                b.put_u32(*millis);
                return b.freeze();
            }
            Self::StreamIsRecorded(id) => (4, &[*id]),
            Self::PingRequest(t) => (6, &[*t]),
            Self::PingResponse(t) => (7, &[*t]),
            Self::Other(e) => (*e, &[]),
        };
        b.put_u16(event);
        for a in args {
            b.put_u32(*a);
        }
        b.freeze()
    }
}

/// Set Peer Bandwidth limit types (RTMP 1.0 §5.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitType {
    Hard = 0,
    Soft = 1,
    Dynamic = 2,
}

pub(crate) fn u32_payload(v: u32) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

pub(crate) fn read_u32(payload: &[u8]) -> Option<u32> {
    payload
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits an aggregate message (type 22) into its sub-messages. Each sub-message is an FLV tag
/// (type, 24-bit size, 24-bit timestamp + 8-bit extension, 24-bit stream id, payload, 32-bit back
/// pointer). Sub-message timestamps are rebased onto the aggregate's own timestamp, as the spec
/// requires. Payloads are zero-copy slices of the aggregate.
pub fn split_aggregate(msg: &RawMessage) -> Result<Vec<RawMessage>, AggregateError> {
    let mut out = Vec::new();
    let mut rest = msg.payload.clone();
    let mut first_ts = None;
    while !rest.is_empty() {
        if rest.len() < 11 {
            return Err(AggregateError::Truncated);
        }
        let type_id = rest[0];
        let size = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        rest.advance(11);
        if rest.len() < size + 4 {
            return Err(AggregateError::Truncated);
        }
        let payload = rest.split_to(size);
        rest.advance(4);
        let base = *first_ts.get_or_insert(ts);
        out.push(RawMessage {
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id,
            stream_id: msg.stream_id,
            payload,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("aggregate message truncated")]
    Truncated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_round_trip() {
        let events = [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(7),
            UserControl::StreamDry(2),
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(123456),
            UserControl::PingResponse(u32::MAX),
        ];
        for e in events {
            assert_eq!(UserControl::parse(&e.encode()), Some(e));
        }
        assert_eq!(UserControl::parse(&[0, 6, 0]), None);
    }

    fn tag(type_id: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(payload);
        v.extend_from_slice(&(11 + payload.len() as u32).to_be_bytes());
        v
    }

    #[test]
    fn aggregate_split_rebases_timestamps() {
        let mut body = tag(9, 1000, b"video");
        body.extend(tag(8, 1023, b"aud"));
        let agg = RawMessage {
            timestamp: 5000,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(body),
        };
        let parts = split_aggregate(&agg).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].type_id, parts[0].timestamp), (9, 5000));
        assert_eq!(&parts[0].payload[..], b"video");
        assert_eq!((parts[1].type_id, parts[1].timestamp), (8, 5023));
        assert_eq!(&parts[1].payload[..], b"aud");
        let mut truncated = agg.clone();
        truncated.payload.truncate(19);
        assert_eq!(split_aggregate(&truncated), Err(AggregateError::Truncated));
    }
}

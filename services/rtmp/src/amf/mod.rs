//! Action Message Format (AMF) codecs for RTMP command and data messages.
//!
//! RTMP carries commands (`connect`, `createStream`, `publish`, ...) and
//! metadata (`@setDataFrame` / `onMetaData`) as a sequence of AMF0 values;
//! Flash clients using `objectEncoding = 3` wrap individual values in AMF3 via
//! the AMF0 "avmplus" marker. This module turns such message payloads into
//! [`Amf0Value`] / [`Amf3Value`] trees and back. It does no I/O: decoders read
//! from a byte slice holding one complete message, encoders append to a
//! [`bytes::BytesMut`].
//!
//! Decoders treat their input as hostile. They never panic, check every
//! peer-declared length against the input left before allocating, nest at
//! most 64 containers deep ([`AmfError::TooDeep`]), and cap the memory that
//! reference markers may conjure by copying earlier values at 256 KiB plus 64
//! bytes per input byte ([`AmfError::OverBudget`]). After an error a decoder's
//! position is unspecified; discard it.
//!
//! Encoders never fail and never emit references. Lengths the wire format
//! cannot express are truncated (at a UTF-8 char boundary for strings):
//! AMF0 property names and class names to 65535 bytes, AMF3 strings, byte
//! arrays and element counts to 2^28 - 1.

mod amf0;
mod amf3;
mod wire;

pub use amf0::{Amf0Decoder, Amf0Value, decode_all, encode, encode_all};
pub use amf3::{Amf3Decoder, Amf3Value, decode_all_amf3, encode_amf3};

/// Why a decoder rejected its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    /// The input ended inside a value (or no value was left to decode).
    #[error("AMF input ended in the middle of a value")]
    UnexpectedEof,
    /// A type marker that is undefined or that this codec does not support
    /// (AMF0 movieclip 0x04 and recordset 0x0E, AMF3 markers above 0x11).
    #[error("unknown or unsupported AMF type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// AMF0 object-end marker 0x09 where a value was expected.
    #[error("AMF0 object-end marker outside an object")]
    UnexpectedObjectEnd,
    #[error("AMF string is not valid UTF-8")]
    InvalidUtf8,
    /// Containers nested deeper than 64 levels, counting values copied in
    /// through references.
    #[error("AMF value nested more than 64 levels deep")]
    TooDeep,
    /// A declared length or element count exceeds the remaining input.
    #[error("AMF length exceeds the remaining input or the decoder's limits")]
    TooLarge,
    /// Decoding would copy more than the decoder's memory budget into the value tree and its
    /// reference table: references that expand a small input, or a deep tree whose every
    /// level the table keeps a copy of. The budget follows the input's size, so the
    /// re-encoding of a value decoded through references (encoders expand them) may exceed it.
    #[error("AMF value would copy more than the decoder's memory budget")]
    OverBudget,
    /// A reference index that names no earlier value, or names one that is
    /// still being decoded (a cycle, which a value tree cannot represent).
    #[error("AMF reference {0} does not name a completed earlier value")]
    BadReference(u32),
    /// Well-formed input this codec cannot decode, such as AMF3
    /// externalizable objects whose encoding only their class knows.
    #[error("unsupported AMF content: {0}")]
    Unsupported(String),
}

//! Fuzz target for the AMF0 and AMF3 decoders, which read every command and metadata message.
//!
//! Input: the low bit of byte 0 picks AMF0 (0) or AMF3 (1); the rest is a message body,
//! decoded value after value (sharing reference tables, as in a message) until the input ends
//! or a value is refused. Beyond "no panic", the target checks that:
//! - decoding is bounded: what a value encodes to (encoders never emit references, so this is
//!   its full size) stays within the decoders' budget for references, 256 KiB plus 64 bytes per
//!   input byte, plus a few bytes per input byte for the values themselves;
//! - every decoded value re-encodes to bytes that decode, as one whole value, to the same value
//!   (compared as values when free of NaN, which is unequal to itself, else by encoding), and
//!   encoding is stable: re-encoding that value gives the same bytes. One refusal is allowed:
//!   `OverBudget`. The budget belongs to a whole message and follows its size, while the
//!   re-encoding is decoded alone: a value may have been decoded with what the message's other
//!   bytes paid for, or through references the encoder expands.

use bytes::BytesMut;
use liverelay_rtmp::amf::{
    Amf0Decoder, Amf0Value, Amf3Decoder, Amf3Value, AmfError, encode, encode_amf3,
};

/// Encoded bytes a decoded value may take per input byte beyond the reference budget.
const BYTES_PER_INPUT_BYTE: usize = 64 + 16;
const REFERENCE_BUDGET: usize = 256 * 1024;

pub fn fuzz(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let bound = REFERENCE_BUDGET + BYTES_PER_INPUT_BYTE * body.len();
    let mut total = 0;
    let mut check = |encoded: usize| {
        total += encoded;
        assert!(
            total <= bound,
            "{} input bytes decoded to {total} encoded bytes, over {bound}",
            body.len()
        );
    };
    if selector & 1 == 0 {
        for value in decode_amf0(body).0 {
            check(round_trip(&value, encode, decode_amf0));
        }
    } else {
        for value in decode_amf3(body).0 {
            check(round_trip(&value, encode_amf3, decode_amf3));
        }
    }
}

/// Decodes AMF0 values until the input ends or one is refused.
pub fn decode_amf0(body: &[u8]) -> Decoded<Amf0Value> {
    let mut decoder = Amf0Decoder::new(body);
    let mut values = Vec::new();
    while !decoder.is_empty() {
        match decoder.decode() {
            Ok(value) => values.push(value),
            Err(e) => return (values, Some(e)),
        }
    }
    (values, None)
}

/// Decodes AMF3 values until the input ends or one is refused.
pub fn decode_amf3(body: &[u8]) -> Decoded<Amf3Value> {
    let mut decoder = Amf3Decoder::new(body);
    let mut values = Vec::new();
    while !decoder.is_empty() {
        match decoder.decode() {
            Ok(value) => values.push(value),
            Err(e) => return (values, Some(e)),
        }
    }
    (values, None)
}

/// Values decoded until the input ends, and the error that ended it early.
type Decoded<V> = (Vec<V>, Option<AmfError>);

/// Checks the re-encoding of `value` (AMF0 or AMF3, by the functions given): it decodes to one
/// value equal to `value`, whose encoding is the same bytes again. Returns its length.
fn round_trip<V: PartialEq + std::fmt::Debug>(
    value: &V,
    encode: fn(&V, &mut BytesMut),
    decode: fn(&[u8]) -> Decoded<V>,
) -> usize {
    let mut first = BytesMut::new();
    encode(value, &mut first);
    let (back, error) = decode(&first);
    if back.is_empty() && error == Some(AmfError::OverBudget) {
        return first.len();
    }
    assert!(
        error.is_none() && back.len() == 1,
        "{value:?} re-encoded does not decode to one value: {back:?}, {error:?}"
    );
    if nan_free(value) {
        assert_eq!(&back[0], value, "re-encoded value decodes differently");
    }
    let mut second = BytesMut::new();
    encode(&back[0], &mut second);
    assert_eq!(first, second, "encoding of {value:?} is not stable");
    first.len()
}

/// Whether `value` equals itself, i.e. holds no NaN.
#[allow(clippy::eq_op)]
fn nan_free<T: PartialEq>(value: &T) -> bool {
    value == value
}

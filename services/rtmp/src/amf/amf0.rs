//! AMF0 (Adobe "AMF 0 Specification", December 2007), the encoding of RTMP
//! command (type 20) and data (type 18) messages.

use bytes::{BufMut, BytesMut};

use super::AmfError;
use super::amf3::{self, Amf3Value};
use super::wire::{Measure, Reader, Size, Stored, check_depth, truncate_utf8};

mod marker {
    pub(super) const NUMBER: u8 = 0x00;
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const STRING: u8 = 0x02;
    pub(super) const OBJECT: u8 = 0x03;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const UNDEFINED: u8 = 0x06;
    pub(super) const REFERENCE: u8 = 0x07;
    pub(super) const ECMA_ARRAY: u8 = 0x08;
    pub(super) const OBJECT_END: u8 = 0x09;
    pub(super) const STRICT_ARRAY: u8 = 0x0A;
    pub(super) const DATE: u8 = 0x0B;
    pub(super) const LONG_STRING: u8 = 0x0C;
    pub(super) const UNSUPPORTED: u8 = 0x0D;
    pub(super) const XML_DOCUMENT: u8 = 0x0F;
    pub(super) const TYPED_OBJECT: u8 = 0x10;
    pub(super) const AVMPLUS: u8 = 0x11;
}

/// Reference markers carry a u16 index, so later complex values are counted
/// but never stored.
const MAX_REFERENCEABLE: usize = u16::MAX as usize + 1;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    /// Decoded from both string (0x02) and long string (0x0C); encoded as a
    /// long string only when longer than 65535 bytes.
    String(String),
    /// Anonymous object; properties in wire order.
    Object(Vec<(String, Amf0Value)>),
    Null,
    /// Also what the "unsupported" marker (0x0D) decodes to: it stands for a
    /// value the sender could not serialize, which is no reason to reject the
    /// whole message.
    Undefined,
    /// Associative array. The wire count is ignored on decoding (encoders get
    /// it wrong; ffmpeg sends 0) and written correctly on encoding.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the Unix epoch (UTC) and a timezone offset in
    /// minutes that the spec reserves and senders should set to 0.
    Date {
        millis: f64,
        timezone: i16,
    },
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
    XmlDocument(String),
    /// Marker 0x11: the value is encoded in AMF3.
    Avmplus(Amf3Value),
}

impl Amf0Value {
    /// The text of a `String` or `XmlDocument`, including their AMF3
    /// counterparts behind `Avmplus`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::XmlDocument(s) => Some(s),
            Self::Avmplus(Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s)) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// A `Number`, or an AMF3 `Integer`/`Double` behind `Avmplus`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) | Self::Avmplus(Amf3Value::Double(n)) => Some(*n),
            Self::Avmplus(Amf3Value::Integer(n)) => Some(f64::from(*n)),
            _ => None,
        }
    }

    /// A `Boolean`, including an AMF3 one behind `Avmplus`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(b) | Self::Avmplus(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an `Object`, `EcmaArray` or `TypedObject`.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Self::Object(props) | Self::EcmaArray(props) => Some(props),
            Self::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `key`, if this value has properties.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Builds an anonymous `Object`.
    pub fn object<I, K>(props: I) -> Amf0Value
    where
        I: IntoIterator<Item = (K, Amf0Value)>,
        K: Into<String>,
    {
        Self::Object(collect_props(props))
    }

    /// Builds an `EcmaArray` (the shape `onMetaData` uses).
    pub fn ecma_array<I, K>(props: I) -> Amf0Value
    where
        I: IntoIterator<Item = (K, Amf0Value)>,
        K: Into<String>,
    {
        Self::EcmaArray(collect_props(props))
    }
}

fn collect_props<I, K>(props: I) -> Vec<(String, Amf0Value)>
where
    I: IntoIterator<Item = (K, Amf0Value)>,
    K: Into<String>,
{
    props.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Self::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Self::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl Measure for Amf0Value {
    fn measure(&self) -> Size {
        let node = size_of::<Self>();
        let props = |size: Size, props: &[(String, Amf0Value)]| {
            props.iter().fold(size, |size, (key, value)| {
                size.bytes(key.len()).child(value.measure())
            })
        };
        match self {
            Self::String(s) | Self::XmlDocument(s) => Size::leaf(node).bytes(s.len()),
            Self::Object(p) | Self::EcmaArray(p) => props(Size::container(node), p),
            Self::TypedObject {
                class_name,
                properties,
            } => props(Size::container(node).bytes(class_name.len()), properties),
            Self::StrictArray(items) => items.iter().fold(Size::container(node), |size, item| {
                size.child(item.measure())
            }),
            // The wrapper adds no nesting level of its own.
            Self::Avmplus(inner) => {
                let inner = inner.measure();
                Size {
                    weight: inner.weight.saturating_add(node),
                    height: inner.height,
                }
            }
            Self::Number(_)
            | Self::Boolean(_)
            | Self::Null
            | Self::Undefined
            | Self::Date { .. } => Size::leaf(node),
        }
    }
}

/// Decodes AMF0 values one after another from a byte slice (typically one
/// RTMP message payload).
///
/// Reference markers (0x07) resolve to a clone of the earlier complex value
/// (object, typed object, ECMA array, strict array) with that index; the table
/// numbers complex values in the order their decoding starts, across all
/// values read by this decoder. A reference to a value still being decoded (a
/// cycle) is a [`AmfError::BadReference`].
///
/// Values behind the avmplus marker (0x11) share one set of AMF3 reference
/// tables for the decoder's lifetime, as Adobe's BlazeDS does within a message.
#[derive(Debug)]
pub struct Amf0Decoder<'a> {
    reader: Reader<'a>,
    /// `None` while the value is still being decoded.
    references: Vec<Option<Stored<Amf0Value>>>,
    amf3: amf3::Tables<'a>,
}

impl<'a> Amf0Decoder<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(input),
            references: Vec::new(),
            amf3: amf3::Tables::default(),
        }
    }

    /// Decodes the next value.
    pub fn decode(&mut self) -> Result<Amf0Value, AmfError> {
        self.value(0)
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// The input not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.reader.remaining()
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        use Amf0Value as V;
        let value = match self.reader.u8()? {
            marker::NUMBER => V::Number(self.reader.f64()?),
            marker::BOOLEAN => V::Boolean(self.reader.u8()? != 0),
            marker::STRING => V::String(self.short_string()?),
            marker::OBJECT => self.complex(depth, |d| Ok(V::Object(d.properties(depth)?)))?,
            marker::NULL => V::Null,
            marker::UNDEFINED | marker::UNSUPPORTED => V::Undefined,
            marker::REFERENCE => self.reference(depth)?,
            marker::ECMA_ARRAY => self.complex(depth, |d| {
                let _count_hint = d.reader.u32()?;
                Ok(V::EcmaArray(d.properties(depth)?))
            })?,
            marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => self.complex(depth, |d| d.strict_array(depth))?,
            marker::DATE => V::Date {
                millis: self.reader.f64()?,
                timezone: self.reader.i16()?,
            },
            marker::LONG_STRING => V::String(self.long_string()?),
            marker::XML_DOCUMENT => V::XmlDocument(self.long_string()?),
            marker::TYPED_OBJECT => self.complex(depth, |d| {
                let class_name = d.short_string()?;
                let properties = d.properties(depth)?;
                Ok(V::TypedObject {
                    class_name,
                    properties,
                })
            })?,
            marker::AVMPLUS => V::Avmplus(self.amf3.value(&mut self.reader, depth)?),
            other => return Err(AmfError::UnknownMarker(other)),
        };
        Ok(value)
    }

    /// Decodes a referenceable value with `body`, holding its table slot from
    /// the start so that nested complex values get later indices.
    fn complex(
        &mut self,
        depth: usize,
        body: impl FnOnce(&mut Self) -> Result<Amf0Value, AmfError>,
    ) -> Result<Amf0Value, AmfError> {
        check_depth(depth)?;
        let slot = self.references.len();
        let referenceable = slot < MAX_REFERENCEABLE;
        if referenceable {
            self.references.push(None);
        }
        let value = body(self)?;
        if referenceable {
            let stored = Stored::new(&value, &mut self.reader)?;
            if let Some(entry) = self.references.get_mut(slot) {
                *entry = Some(stored);
            }
        }
        Ok(value)
    }

    fn reference(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        let index = self.reader.u16()?;
        match self.references.get(usize::from(index)) {
            Some(Some(stored)) => stored.resolve(&mut self.reader, depth),
            _ => Err(AmfError::BadReference(u32::from(index))),
        }
    }

    /// Properties of an object-like value at `depth`, up to the empty name
    /// followed by the object-end marker. An empty name followed by anything
    /// else is kept as an ordinary property.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.reader.peek() == Some(marker::OBJECT_END) {
                self.reader.u8()?;
                return Ok(props);
            }
            props.push((key, self.value(depth + 1)?));
        }
    }

    fn strict_array(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        let count = self.reader.u32()?;
        let count = self
            .reader
            .check_count(usize::try_from(count).unwrap_or(usize::MAX), 1)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value(depth + 1)?);
        }
        Ok(Amf0Value::StrictArray(items))
    }

    fn short_string(&mut self) -> Result<String, AmfError> {
        let len = self.reader.u16()?;
        Ok(self.reader.utf8(usize::from(len))?.to_owned())
    }

    fn long_string(&mut self) -> Result<String, AmfError> {
        let len = self.reader.u32()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(self.reader.utf8(len)?.to_owned())
    }
}

/// Decodes values until the input is exhausted.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut decoder = Amf0Decoder::new(input);
    let mut values = Vec::new();
    while !decoder.is_empty() {
        values.push(decoder.decode()?);
    }
    Ok(values)
}

/// Appends the AMF0 encoding of `value`. Never emits references.
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    use Amf0Value as V;
    match value {
        V::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        V::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        V::String(s) if s.len() <= usize::from(u16::MAX) => {
            out.put_u8(marker::STRING);
            put_short_utf8(out, s);
        }
        V::String(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_utf8(out, s);
        }
        V::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(out, props);
        }
        V::Null => out.put_u8(marker::NULL),
        V::Undefined => out.put_u8(marker::UNDEFINED),
        V::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(out, props);
        }
        V::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(count);
            items
                .iter()
                .take(count as usize)
                .for_each(|item| encode(item, out));
        }
        V::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        V::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_utf8(out, class_name);
            put_properties(out, properties);
        }
        V::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_utf8(out, s);
        }
        V::Avmplus(inner) => {
            out.put_u8(marker::AVMPLUS);
            amf3::encode_amf3(inner, out);
        }
    }
}

/// Appends the encodings of `values` back to back, as in a command message.
pub fn encode_all<'v>(values: impl IntoIterator<Item = &'v Amf0Value>, out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

fn put_short_utf8(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, usize::from(u16::MAX));
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn put_long_utf8(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, u32::MAX as usize);
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_properties(out: &mut BytesMut, props: &[(String, Amf0Value)]) {
    for (key, value) in props {
        put_short_utf8(out, key);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(value: &Amf0Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        out.to_vec()
    }

    fn encoded_all(values: &[Amf0Value]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_all(values, &mut out);
        out.to_vec()
    }

    fn decode_one(bytes: &[u8]) -> Result<Amf0Value, AmfError> {
        let mut decoder = Amf0Decoder::new(bytes);
        let value = decoder.decode()?;
        assert!(
            decoder.is_empty(),
            "trailing bytes: {:02x?}",
            decoder.remaining()
        );
        Ok(value)
    }

    /// Concatenates byte fragments so hand-written encodings can mix bytes and text.
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn connect_command() -> Vec<Amf0Value> {
        vec![
            "connect".into(),
            1.0.into(),
            Amf0Value::object([
                ("app", "live".into()),
                ("flashVer", "LNX 9,0,124,2".into()),
                ("tcUrl", "rtmp://localhost:1935/live".into()),
                ("fpad", false.into()),
                ("capabilities", 239.0.into()),
                ("audioCodecs", 3575.0.into()),
                ("videoCodecs", 252.0.into()),
                ("objectEncoding", 0.0.into()),
            ]),
        ]
    }

    #[rustfmt::skip]
    fn connect_bytes() -> Vec<u8> {
        cat(&[
            &[0x02, 0x00, 0x07], b"connect",
            &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            &[0x03],
            &[0x00, 0x03], b"app", &[0x02, 0x00, 0x04], b"live",
            &[0x00, 0x08], b"flashVer", &[0x02, 0x00, 0x0D], b"LNX 9,0,124,2",
            &[0x00, 0x05], b"tcUrl", &[0x02, 0x00, 0x1A], b"rtmp://localhost:1935/live",
            &[0x00, 0x04], b"fpad", &[0x01, 0x00],
            &[0x00, 0x0C], b"capabilities", &[0x00, 0x40, 0x6D, 0xE0, 0, 0, 0, 0, 0],
            &[0x00, 0x0B], b"audioCodecs", &[0x00, 0x40, 0xAB, 0xEE, 0, 0, 0, 0, 0],
            &[0x00, 0x0B], b"videoCodecs", &[0x00, 0x40, 0x6F, 0x80, 0, 0, 0, 0, 0],
            &[0x00, 0x0E], b"objectEncoding", &[0x00, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x00, 0x09],
        ])
    }

    #[test]
    fn connect_command_is_byte_exact() {
        assert_eq!(encoded_all(&connect_command()), connect_bytes());
        let decoded = decode_all(&connect_bytes()).unwrap();
        assert_eq!(decoded, connect_command());
        assert_eq!(
            decoded[2].get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://localhost:1935/live")
        );
        assert_eq!(
            decoded[2].get("fpad").and_then(Amf0Value::as_bool),
            Some(false)
        );
        assert_eq!(decoded[1].as_f64(), Some(1.0));
    }

    /// `onMetaData` as ffmpeg's FLV muxer writes it: an ECMA array with a
    /// count, its properties and the 00 00 09 terminator.
    #[rustfmt::skip]
    fn on_metadata_bytes(count: u8) -> Vec<u8> {
        cat(&[
            &[0x02, 0x00, 0x0A], b"onMetaData",
            &[0x08, 0x00, 0x00, 0x00, count],
            &[0x00, 0x08], b"duration", &[0x00, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x05], b"width", &[0x00, 0x40, 0x94, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x06], b"height", &[0x00, 0x40, 0x86, 0x80, 0, 0, 0, 0, 0],
            &[0x00, 0x09], b"framerate", &[0x00, 0x40, 0x3E, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x0C], b"videocodecid", &[0x00, 0x40, 0x1C, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x0C], b"audiocodecid", &[0x00, 0x40, 0x24, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x06], b"stereo", &[0x01, 0x01],
            &[0x00, 0x07], b"encoder", &[0x02, 0x00, 0x0D], b"Lavf60.16.100",
            &[0x00, 0x00, 0x09],
        ])
    }

    fn on_metadata() -> Vec<Amf0Value> {
        vec![
            "onMetaData".into(),
            Amf0Value::ecma_array([
                ("duration", 0.0.into()),
                ("width", 1280.0.into()),
                ("height", 720.0.into()),
                ("framerate", 30.0.into()),
                ("videocodecid", 7.0.into()),
                ("audiocodecid", 10.0.into()),
                ("stereo", true.into()),
                ("encoder", "Lavf60.16.100".into()),
            ]),
        ]
    }

    #[test]
    fn on_metadata_is_byte_exact() {
        assert_eq!(encoded_all(&on_metadata()), on_metadata_bytes(8));
        assert_eq!(decode_all(&on_metadata_bytes(8)).unwrap(), on_metadata());
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        for count in [0, 3, 200] {
            assert_eq!(
                decode_all(&on_metadata_bytes(count)).unwrap(),
                on_metadata()
            );
        }
    }

    #[test]
    fn references_resolve_to_earlier_complex_values() {
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0x0A, 0x00, 0x00, 0x00, 0x03],             // strict array, reference #0
            &[0x03, 0x00, 0x01], b"a",                   // object #1 { a: [] }
            &[0x0A, 0x00, 0x00, 0x00, 0x00],             //   strict array #2
            &[0x00, 0x00, 0x09],
            &[0x07, 0x00, 0x01],                         // reference to #1
            &[0x07, 0x00, 0x02],                         // reference to #2
        ]);
        let inner = Amf0Value::object([("a", Amf0Value::StrictArray(vec![]))]);
        assert_eq!(
            decode_one(&bytes),
            Ok(Amf0Value::StrictArray(vec![
                inner.clone(),
                inner,
                Amf0Value::StrictArray(vec![])
            ]))
        );
    }

    #[test]
    fn bad_references_are_rejected() {
        // #0 is the array still being decoded; #5 does not exist.
        assert_eq!(
            decode_one(&[0x0A, 0, 0, 0, 1, 0x07, 0x00, 0x00]),
            Err(AmfError::BadReference(0))
        );
        assert_eq!(
            decode_one(&[0x07, 0x00, 0x05]),
            Err(AmfError::BadReference(5))
        );
    }

    #[test]
    fn references_count_across_values_of_one_decoder() {
        let bytes = [0x03, 0x00, 0x00, 0x09, 0x07, 0x00, 0x00];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![Amf0Value::Object(vec![]), Amf0Value::Object(vec![])])
        );
    }

    #[test]
    fn strict_array() {
        let value = Amf0Value::StrictArray(vec![1.0.into(), Amf0Value::Null, "x".into()]);
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0x0A, 0x00, 0x00, 0x00, 0x03],
            &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0],
            &[0x05],
            &[0x02, 0x00, 0x01], b"x",
        ]);
        assert_eq!(encoded(&value), bytes);
        assert_eq!(decode_one(&bytes), Ok(value));
        // A count the input cannot back is refused before allocating.
        assert_eq!(
            decode_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]),
            Err(AmfError::TooLarge)
        );
    }

    #[test]
    fn date() {
        // 2009-02-13T23:31:30Z, timezone 0.
        let value = Amf0Value::Date {
            millis: 1_234_567_890_000.0,
            timezone: 0,
        };
        let bytes = [
            0x0B, 0x42, 0x71, 0xF7, 0x1F, 0xB0, 0x45, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(encoded(&value), bytes);
        assert_eq!(decode_one(&bytes), Ok(value));
        let negative_tz = [0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xC4];
        assert_eq!(
            decode_one(&negative_tz),
            Ok(Amf0Value::Date {
                millis: 0.0,
                timezone: -60
            })
        );
    }

    #[test]
    fn typed_object() {
        let value = Amf0Value::TypedObject {
            class_name: "Pt".into(),
            properties: vec![("x".into(), 2.0.into())],
        };
        #[rustfmt::skip]
        let bytes = cat(&[
            &[0x10, 0x00, 0x02], b"Pt",
            &[0x00, 0x01], b"x", &[0x00, 0x40, 0, 0, 0, 0, 0, 0, 0],
            &[0x00, 0x00, 0x09],
        ]);
        assert_eq!(encoded(&value), bytes);
        assert_eq!(decode_one(&bytes), Ok(value.clone()));
        assert_eq!(value.get("x").and_then(Amf0Value::as_f64), Some(2.0));
    }

    #[test]
    fn long_string() {
        let text = "é".repeat(40_000); // 80000 bytes
        let bytes = encoded(&Amf0Value::String(text.clone()));
        assert_eq!(bytes[..5], [0x0C, 0x00, 0x01, 0x38, 0x80]);
        assert_eq!(bytes.len(), 5 + 80_000);
        assert_eq!(decode_one(&bytes), Ok(Amf0Value::String(text)));

        let max_short = "a".repeat(0xFFFF);
        assert_eq!(
            encoded(&Amf0Value::String(max_short))[..3],
            [0x02, 0xFF, 0xFF]
        );
        // A short text sent as long string decodes the same as a string.
        let bytes = [0x0C, 0, 0, 0, 2, b'h', b'i'];
        assert_eq!(decode_one(&bytes), Ok("hi".into()));
    }

    #[test]
    fn xml_document() {
        let bytes = [0x0F, 0, 0, 0, 4, b'<', b'a', b'/', b'>'];
        let value = Amf0Value::XmlDocument("<a/>".into());
        assert_eq!(encoded(&value), bytes);
        assert_eq!(decode_one(&bytes), Ok(value.clone()));
        assert_eq!(value.as_str(), Some("<a/>"));
    }

    #[test]
    fn avmplus_switches_to_amf3_for_one_value() {
        let bytes = [0x11, 0x04, 0x7F, 0x05];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![
                Amf0Value::Avmplus(Amf3Value::Integer(127)),
                Amf0Value::Null
            ])
        );
        assert_eq!(decode_all(&bytes).unwrap()[0].as_f64(), Some(127.0));
        // AMF3 string table is shared across avmplus values of one decoder.
        let bytes = [0x11, 0x06, 0x03, b'x', 0x11, 0x06, 0x00];
        let x = Amf0Value::Avmplus(Amf3Value::String("x".into()));
        assert_eq!(decode_all(&bytes), Ok(vec![x.clone(), x.clone()]));
        assert_eq!(x.as_str(), Some("x"));
    }

    #[test]
    fn markers_without_a_value_type() {
        assert_eq!(decode_one(&[0x0D]), Ok(Amf0Value::Undefined));
        assert_eq!(decode_one(&[0x04]), Err(AmfError::UnknownMarker(0x04)));
        assert_eq!(decode_one(&[0x0E]), Err(AmfError::UnknownMarker(0x0E)));
        assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(decode_one(&[0x09]), Err(AmfError::UnexpectedObjectEnd));
        assert_eq!(decode_one(&[]), Err(AmfError::UnexpectedEof));
        assert_eq!(
            decode_one(&[0x02, 0x00, 0x01, 0xC3]),
            Err(AmfError::InvalidUtf8)
        );
        assert_eq!(
            decode_one(&[0x02, 0x00, 0x05, b'a']),
            Err(AmfError::TooLarge)
        );
    }

    #[test]
    fn empty_key_not_followed_by_end_marker_is_a_property() {
        let value = Amf0Value::object([("", Amf0Value::Null)]);
        let bytes = [0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x09];
        assert_eq!(encoded(&value), bytes);
        assert_eq!(decode_one(&bytes), Ok(value));
    }

    #[test]
    fn accessors() {
        let obj = Amf0Value::object([("k", 1.0.into()), ("k", 2.0.into())]);
        assert_eq!(obj.get("k"), Some(&Amf0Value::Number(1.0)));
        assert_eq!(obj.get("missing"), None);
        assert_eq!(obj.as_str(), None);
        assert_eq!(Amf0Value::Null.get("k"), None);
        assert_eq!(Amf0Value::Null.properties(), None);
        assert_eq!(Amf0Value::Number(1.0).as_bool(), None);
        assert_eq!(Amf0Value::Boolean(true).as_f64(), None);
    }

    fn nested_objects(levels: usize) -> Vec<u8> {
        let mut bytes = vec![];
        for _ in 0..levels {
            bytes.extend([0x03, 0x00, 0x01, b'k']);
        }
        bytes.push(0x05);
        for _ in 0..levels {
            bytes.extend([0x00, 0x00, 0x09]);
        }
        bytes
    }

    #[test]
    fn nesting_is_capped() {
        assert!(decode_one(&nested_objects(64)).is_ok());
        assert_eq!(decode_one(&nested_objects(65)), Err(AmfError::TooDeep));
        // AMF3 containers behind avmplus count towards the same limit.
        let mut bytes = nested_objects(60);
        let tail = bytes.split_off(60 * 4);
        bytes.extend([0x11]);
        bytes.extend([0x09, 0x03, 0x01].repeat(5));
        bytes.push(0x01);
        bytes.extend(&tail[1..]);
        assert_eq!(decode_one(&bytes), Err(AmfError::TooDeep));
    }

    #[test]
    fn exponential_reference_expansion_is_capped() {
        // Array #k holds two references to array #k-1.
        let mut bytes = vec![0x0A, 0x00, 0x00, 0x00, 0x40];
        bytes.extend([0x0A, 0, 0, 0, 0]);
        for k in 1..63u8 {
            bytes.extend([0x0A, 0, 0, 0, 2, 0x07, 0x00, k, 0x07, 0x00, k]);
        }
        bytes.push(0x05);
        assert_eq!(decode_one(&bytes), Err(AmfError::OverBudget));
    }

    #[test]
    fn reference_copies_are_bounded_by_the_input_size() {
        // 14 doubling levels in ~170 bytes would copy 2^14 values (~1 MB): refused, where the
        // fixed 64 MiB budget this replaced let any small message copy that much and more.
        let mut bytes = vec![0x0A, 0x00, 0x00, 0x00, 0x0F];
        bytes.extend([0x0A, 0, 0, 0, 0]);
        for k in 1..15u8 {
            bytes.extend([0x0A, 0, 0, 0, 2, 0x07, 0x00, k, 0x07, 0x00, k]);
        }
        assert!(bytes.len() < 256);
        assert_eq!(decode_one(&bytes), Err(AmfError::OverBudget));
        // A few levels are fine.
        let mut bytes = vec![0x0A, 0x00, 0x00, 0x00, 0x05];
        bytes.extend([0x0A, 0, 0, 0, 0]);
        for k in 1..5u8 {
            bytes.extend([0x0A, 0, 0, 0, 2, 0x07, 0x00, k, 0x07, 0x00, k]);
        }
        assert!(decode_one(&bytes).is_ok());
    }

    #[test]
    fn every_truncation_of_connect_is_an_error() {
        let bytes = connect_bytes();
        // The third value (the command object) starts after name and transaction id.
        let object = &bytes[10 + 9..];
        for cut in 0..object.len() {
            assert!(
                Amf0Decoder::new(&object[..cut]).decode().is_err(),
                "prefix {cut}"
            );
        }
        assert!(decode_one(object).is_ok());
    }

    fn arb_key() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_]{0,8}|\\PC{0,4}"
    }

    fn arb_props(
        inner: BoxedStrategy<Amf0Value>,
    ) -> impl Strategy<Value = Vec<(String, Amf0Value)>> {
        prop::collection::vec((arb_key(), inner), 0..4)
    }

    fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let finite = prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL;
        let leaf = prop_oneof![
            finite.prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            "\\PC{0,16}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            (finite, any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
            "\\PC{0,16}".prop_map(Amf0Value::XmlDocument),
            super::amf3::tests::arb_value().prop_map(Amf0Value::Avmplus),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                arb_props(inner.clone()).prop_map(Amf0Value::Object),
                arb_props(inner.clone()).prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Amf0Value::StrictArray),
                (arb_key(), arb_props(inner)).prop_map(|(class_name, properties)| {
                    Amf0Value::TypedObject {
                        class_name,
                        properties,
                    }
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(values in prop::collection::vec(arb_value(), 1..4)) {
            let bytes = encoded_all(&values);
            prop_assert_eq!(decode_all(&bytes), Ok(values));
        }

        #[test]
        fn nan_round_trips_bit_exact(bits in any::<u64>()) {
            let bytes = encoded(&Amf0Value::Number(f64::from_bits(bits)));
            match decode_one(&bytes) {
                Ok(Amf0Value::Number(n)) => prop_assert_eq!(n.to_bits(), bits),
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn every_truncation_is_an_error(value in arb_value()) {
            let bytes = encoded(&value);
            for cut in 0..bytes.len() {
                prop_assert!(Amf0Decoder::new(&bytes[..cut]).decode().is_err(), "prefix {}", cut);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn corrupted_encodings_never_panic(
            value in arb_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encoded(&value);
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let _ = decode_all(&bytes);
        }
    }
}

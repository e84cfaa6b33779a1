//! AMF3 (Adobe "AMF 3 Specification", January 2013), including the Flash
//! Player 10 vector and dictionary types.
//!
//! The decoder keeps the spec's three reference tables: strings (non-empty
//! strings, class names and member names), traits (class descriptions) and
//! objects (everything with an object-style header: XML, dates, arrays,
//! objects, byte arrays, vectors and dictionaries). The encoder writes every
//! value inline, which every AMF3 reader accepts.

use bytes::{BufMut, BytesMut};

use super::AmfError;
use super::wire::{Measure, Reader, Size, Stored, check_depth, truncate_utf8};

mod marker {
    pub(super) const UNDEFINED: u8 = 0x00;
    pub(super) const NULL: u8 = 0x01;
    pub(super) const FALSE: u8 = 0x02;
    pub(super) const TRUE: u8 = 0x03;
    pub(super) const INTEGER: u8 = 0x04;
    pub(super) const DOUBLE: u8 = 0x05;
    pub(super) const STRING: u8 = 0x06;
    pub(super) const XML_DOCUMENT: u8 = 0x07;
    pub(super) const DATE: u8 = 0x08;
    pub(super) const ARRAY: u8 = 0x09;
    pub(super) const OBJECT: u8 = 0x0A;
    pub(super) const XML: u8 = 0x0B;
    pub(super) const BYTE_ARRAY: u8 = 0x0C;
    pub(super) const VECTOR_INT: u8 = 0x0D;
    pub(super) const VECTOR_UINT: u8 = 0x0E;
    pub(super) const VECTOR_DOUBLE: u8 = 0x0F;
    pub(super) const VECTOR_OBJECT: u8 = 0x10;
    pub(super) const DICTIONARY: u8 = 0x11;
}

const U29_MASK: u32 = (1 << 29) - 1;
/// Range of the integer type; anything outside is encoded as a double.
const INT_MIN: i32 = -(1 << 28);
const INT_MAX: i32 = (1 << 28) - 1;
/// Lengths and counts share their U29 with a low flag bit.
const MAX_LEN: usize = (1 << 28) - 1;
/// Sealed-member counts share their U29 with four flag bits.
const MAX_SEALED: usize = (1 << 25) - 1;

/// One AMF3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    /// 29-bit signed integer (`-2^28 ..= 2^28 - 1`); encoded as a double when
    /// out of that range.
    Integer(i32),
    Double(f64),
    String(String),
    /// Legacy `flash.xml.XMLDocument` (marker 0x07).
    XmlDocument(String),
    /// Milliseconds since the Unix epoch, UTC.
    Date(f64),
    /// ActionScript `Array`: string-keyed (associative) part and dense part.
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// Typed (`class_name: Some`) or anonymous object. Externalizable objects
    /// cannot be decoded and yield [`AmfError::Unsupported`]. An empty class
    /// name on the wire means anonymous, so `Some("")` encodes as `None`.
    Object {
        class_name: Option<String>,
        sealed: Vec<(String, Amf3Value)>,
        dynamic: Vec<(String, Amf3Value)>,
    },
    /// E4X `XML` (marker 0x0B).
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt {
        fixed: bool,
        items: Vec<i32>,
    },
    VectorUint {
        fixed: bool,
        items: Vec<u32>,
    },
    VectorDouble {
        fixed: bool,
        items: Vec<f64>,
    },
    /// `Vector.<T>` of objects; `type_name` is the element class, `"*"` for any.
    VectorObject {
        fixed: bool,
        type_name: String,
        items: Vec<Amf3Value>,
    },
    Dictionary {
        weak_keys: bool,
        entries: Vec<(Amf3Value, Amf3Value)>,
    },
}

impl Measure for Amf3Value {
    fn measure(&self) -> Size {
        let node = size_of::<Self>();
        let members = |size: Size, members: &[(String, Amf3Value)]| {
            members.iter().fold(size, |size, (key, value)| {
                size.bytes(key.len()).child(value.measure())
            })
        };
        match self {
            Self::String(s) | Self::XmlDocument(s) | Self::Xml(s) => {
                Size::leaf(node).bytes(s.len())
            }
            Self::ByteArray(bytes) => Size::leaf(node).bytes(bytes.len()),
            Self::VectorInt { items, .. } => Size::leaf(node).bytes(size_of_val(items.as_slice())),
            Self::VectorUint { items, .. } => Size::leaf(node).bytes(size_of_val(items.as_slice())),
            Self::VectorDouble { items, .. } => {
                Size::leaf(node).bytes(size_of_val(items.as_slice()))
            }
            Self::Array { assoc, dense } => {
                let size = members(Size::container(node), assoc);
                dense
                    .iter()
                    .fold(size, |size, item| size.child(item.measure()))
            }
            Self::Object {
                class_name,
                sealed,
                dynamic,
            } => {
                let class_len = class_name.as_ref().map_or(0, String::len);
                let size = members(Size::container(node).bytes(class_len), sealed);
                members(size, dynamic)
            }
            Self::VectorObject {
                type_name, items, ..
            } => items.iter().fold(
                Size::container(node).bytes(type_name.len()),
                |size, item| size.child(item.measure()),
            ),
            Self::Dictionary { entries, .. } => entries
                .iter()
                .fold(Size::container(node), |size, (key, value)| {
                    size.child(key.measure()).child(value.measure())
                }),
            Self::Undefined
            | Self::Null
            | Self::Boolean(_)
            | Self::Integer(_)
            | Self::Double(_)
            | Self::Date(_) => Size::leaf(node),
        }
    }
}

/// Decodes AMF3 values one after another from a byte slice, sharing the
/// reference tables across all values read from it.
#[derive(Debug)]
pub struct Amf3Decoder<'a> {
    reader: Reader<'a>,
    tables: Tables<'a>,
}

impl<'a> Amf3Decoder<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(input),
            tables: Tables::default(),
        }
    }

    /// Decodes the next value.
    pub fn decode(&mut self) -> Result<Amf3Value, AmfError> {
        self.tables.value(&mut self.reader, 0)
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// The input not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.reader.remaining()
    }
}

/// Decodes AMF3 values until the input is exhausted.
pub fn decode_all_amf3(input: &[u8]) -> Result<Vec<Amf3Value>, AmfError> {
    let mut decoder = Amf3Decoder::new(input);
    let mut values = Vec::new();
    while !decoder.is_empty() {
        values.push(decoder.decode()?);
    }
    Ok(values)
}

/// A class description from the traits table. Names borrow the input, so
/// reusing a trait copies only pointers.
#[derive(Debug, Clone)]
struct Traits<'a> {
    class_name: &'a str,
    sealed: Vec<&'a str>,
    dynamic: bool,
}

/// The AMF3 reference tables; also used by the AMF0 decoder for values behind
/// its avmplus marker.
#[derive(Debug, Default)]
pub(super) struct Tables<'a> {
    strings: Vec<&'a str>,
    traits: Vec<Traits<'a>>,
    /// `None` while the value is still being decoded.
    objects: Vec<Option<Stored<Amf3Value>>>,
}

impl<'a> Tables<'a> {
    /// Decodes one value whose containers start at nesting level `depth`.
    pub(super) fn value(
        &mut self,
        r: &mut Reader<'a>,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        use Amf3Value as V;
        let value = match r.u8()? {
            marker::UNDEFINED => V::Undefined,
            marker::NULL => V::Null,
            marker::FALSE => V::Boolean(false),
            marker::TRUE => V::Boolean(true),
            marker::INTEGER => V::Integer(sign_extend(read_u29(r)?)),
            marker::DOUBLE => V::Double(r.f64()?),
            marker::STRING => V::String(self.string(r)?),
            marker::XML_DOCUMENT => self.complex(r, depth, |_, r, header, _| {
                Ok(V::XmlDocument(r.utf8(len(header))?.to_owned()))
            })?,
            marker::DATE => self.complex(r, depth, |_, r, _, _| Ok(V::Date(r.f64()?)))?,
            marker::ARRAY => self.complex(r, depth, Self::array)?,
            marker::OBJECT => self.complex(r, depth, Self::object)?,
            marker::XML => self.complex(r, depth, |_, r, header, _| {
                Ok(V::Xml(r.utf8(len(header))?.to_owned()))
            })?,
            marker::BYTE_ARRAY => self.complex(r, depth, |_, r, header, _| {
                Ok(V::ByteArray(r.bytes(len(header))?.to_vec()))
            })?,
            marker::VECTOR_INT => self.complex(r, depth, |_, r, header, _| {
                let (fixed, items) = numeric_vector(r, header, i32::from_be_bytes)?;
                Ok(V::VectorInt { fixed, items })
            })?,
            marker::VECTOR_UINT => self.complex(r, depth, |_, r, header, _| {
                let (fixed, items) = numeric_vector(r, header, u32::from_be_bytes)?;
                Ok(V::VectorUint { fixed, items })
            })?,
            marker::VECTOR_DOUBLE => self.complex(r, depth, |_, r, header, _| {
                let (fixed, items) = numeric_vector(r, header, f64::from_be_bytes)?;
                Ok(V::VectorDouble { fixed, items })
            })?,
            marker::VECTOR_OBJECT => self.complex(r, depth, Self::object_vector)?,
            marker::DICTIONARY => self.complex(r, depth, Self::dictionary)?,
            other => return Err(AmfError::UnknownMarker(other)),
        };
        Ok(value)
    }

    /// Handles the header shared by all object-table types: either a reference
    /// to an earlier value, or an inline value that `body` decodes. The table
    /// slot is taken before the body runs, as the spec numbers values in the
    /// order they start.
    fn complex(
        &mut self,
        r: &mut Reader<'a>,
        depth: usize,
        body: impl FnOnce(&mut Self, &mut Reader<'a>, u32, usize) -> Result<Amf3Value, AmfError>,
    ) -> Result<Amf3Value, AmfError> {
        let header = read_u29(r)?;
        if header & 1 == 0 {
            let index = header >> 1;
            return match self.objects.get(index as usize) {
                Some(Some(stored)) => stored.resolve(r, depth),
                _ => Err(AmfError::BadReference(index)),
            };
        }
        let slot = self.objects.len();
        self.objects.push(None);
        let value = body(self, r, header, depth)?;
        let stored = Stored::new(&value, r)?;
        if let Some(entry) = self.objects.get_mut(slot) {
            *entry = Some(stored);
        }
        Ok(value)
    }

    /// Reads a string-table string, borrowing from the input.
    fn str(&mut self, r: &mut Reader<'a>) -> Result<&'a str, AmfError> {
        let header = read_u29(r)?;
        if header & 1 == 0 {
            let index = header >> 1;
            return self
                .strings
                .get(index as usize)
                .copied()
                .ok_or(AmfError::BadReference(index));
        }
        let s = r.utf8(len(header))?;
        // The spec never sends the empty string by reference, so it takes no slot.
        if !s.is_empty() {
            self.strings.push(s);
        }
        Ok(s)
    }

    fn string(&mut self, r: &mut Reader<'a>) -> Result<String, AmfError> {
        let s = self.str(r)?;
        owned(r, s)
    }

    /// Key/value pairs up to the empty-string terminator (array assoc part,
    /// object dynamic members).
    fn named_members(
        &mut self,
        r: &mut Reader<'a>,
        depth: usize,
    ) -> Result<Vec<(String, Amf3Value)>, AmfError> {
        let mut members = Vec::new();
        loop {
            let key = self.str(r)?;
            if key.is_empty() {
                return Ok(members);
            }
            let key = owned(r, key)?;
            members.push((key, self.value(r, depth + 1)?));
        }
    }

    fn values(
        &mut self,
        r: &mut Reader<'a>,
        count: usize,
        depth: usize,
    ) -> Result<Vec<Amf3Value>, AmfError> {
        let count = r.check_count(count, 1)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value(r, depth + 1)?);
        }
        Ok(items)
    }

    fn array(
        &mut self,
        r: &mut Reader<'a>,
        header: u32,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        check_depth(depth)?;
        let assoc = self.named_members(r, depth)?;
        let dense = self.values(r, len(header), depth)?;
        Ok(Amf3Value::Array { assoc, dense })
    }

    fn object(
        &mut self,
        r: &mut Reader<'a>,
        header: u32,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        check_depth(depth)?;
        let traits = self.traits(r, header)?;
        let class_name = match traits.class_name {
            "" => None,
            name => Some(owned(r, name)?),
        };
        // A reused trait is cheap to copy, so only now is its member count
        // known to be backed by input.
        r.check_count(traits.sealed.len(), 1)?;
        let mut sealed = Vec::with_capacity(traits.sealed.len());
        for name in traits.sealed {
            let name = owned(r, name)?;
            sealed.push((name, self.value(r, depth + 1)?));
        }
        let dynamic = if traits.dynamic {
            self.named_members(r, depth)?
        } else {
            Vec::new()
        };
        Ok(Amf3Value::Object {
            class_name,
            sealed,
            dynamic,
        })
    }

    /// Decodes the traits part of an object header (`header` is the full
    /// U29O-traits value, low bit already known to be 1).
    fn traits(&mut self, r: &mut Reader<'a>, header: u32) -> Result<Traits<'a>, AmfError> {
        if header & 0b10 == 0 {
            let index = header >> 2;
            return self
                .traits
                .get(index as usize)
                .cloned()
                .ok_or(AmfError::BadReference(index));
        }
        if header & 0b100 != 0 {
            let class_name = self.str(r)?;
            return Err(AmfError::Unsupported(format!(
                "externalizable AMF3 class {:?}",
                truncate_utf8(class_name, 128)
            )));
        }
        let dynamic = header & 0b1000 != 0;
        let class_name = self.str(r)?;
        let count = r.check_count((header >> 4) as usize, 1)?;
        let mut sealed = Vec::with_capacity(count);
        for _ in 0..count {
            sealed.push(self.str(r)?);
        }
        let traits = Traits {
            class_name,
            sealed,
            dynamic,
        };
        self.traits.push(traits.clone());
        Ok(traits)
    }

    fn object_vector(
        &mut self,
        r: &mut Reader<'a>,
        header: u32,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        check_depth(depth)?;
        let fixed = r.u8()? != 0;
        let type_name = self.string(r)?;
        let items = self.values(r, len(header), depth)?;
        Ok(Amf3Value::VectorObject {
            fixed,
            type_name,
            items,
        })
    }

    fn dictionary(
        &mut self,
        r: &mut Reader<'a>,
        header: u32,
        depth: usize,
    ) -> Result<Amf3Value, AmfError> {
        check_depth(depth)?;
        let weak_keys = r.u8()? != 0;
        let count = r.check_count(len(header), 2)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.value(r, depth + 1)?;
            let value = self.value(r, depth + 1)?;
            entries.push((key, value));
        }
        Ok(Amf3Value::Dictionary { weak_keys, entries })
    }
}

/// Copies a table string into the output tree; charged because a reference
/// lets a one-byte input produce an arbitrarily long string.
fn owned(r: &mut Reader<'_>, s: &str) -> Result<String, AmfError> {
    r.charge(s.len())?;
    Ok(s.to_owned())
}

/// The length or count in an inline (low bit set) U29 header.
fn len(header: u32) -> usize {
    (header >> 1) as usize
}

fn numeric_vector<T, const N: usize>(
    r: &mut Reader<'_>,
    header: u32,
    parse: fn([u8; N]) -> T,
) -> Result<(bool, Vec<T>), AmfError> {
    let fixed = r.u8()? != 0;
    let count = r.check_count(len(header), N)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(parse(r.array()?));
    }
    Ok((fixed, items))
}

/// Variable-length unsigned 29-bit integer: up to three bytes carrying seven
/// bits each (high bit = more follows), then a fourth carrying eight.
fn read_u29(r: &mut Reader<'_>) -> Result<u32, AmfError> {
    let mut value = 0u32;
    for _ in 0..3 {
        let byte = r.u8()?;
        value = (value << 7) | u32::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Ok((value << 8) | u32::from(r.u8()?))
}

fn sign_extend(u29: u32) -> i32 {
    ((u29 << 3) as i32) >> 3
}

fn write_u29(out: &mut BytesMut, value: u32) {
    let value = value & U29_MASK;
    match value {
        0..=0x7F => out.put_u8(value as u8),
        0x80..=0x3FFF => {
            out.put_u8((value >> 7) as u8 | 0x80);
            out.put_u8(value as u8 & 0x7F);
        }
        0x4000..=0x1F_FFFF => {
            out.put_u8((value >> 14) as u8 | 0x80);
            out.put_u8((value >> 7) as u8 | 0x80);
            out.put_u8(value as u8 & 0x7F);
        }
        _ => {
            out.put_u8((value >> 22) as u8 | 0x80);
            out.put_u8((value >> 15) as u8 | 0x80);
            out.put_u8((value >> 8) as u8 | 0x80);
            out.put_u8(value as u8);
        }
    }
}

/// Writes an inline length/count header and returns how many items fit.
fn put_len(out: &mut BytesMut, len: usize) -> usize {
    let len = len.min(MAX_LEN);
    write_u29(out, ((len as u32) << 1) | 1);
    len
}

/// Strings, XML and XMLDocument share this inline form.
fn put_str(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, MAX_LEN);
    put_len(out, s.len());
    out.put_slice(s.as_bytes());
}

/// Pairs for a dynamic/assoc section plus its terminator. Empty keys would
/// read as the terminator, so they are dropped.
fn put_named_members(out: &mut BytesMut, members: &[(String, Amf3Value)]) {
    for (key, value) in members.iter().filter(|(key, _)| !key.is_empty()) {
        put_str(out, key);
        encode_amf3(value, out);
    }
    put_str(out, "");
}

fn put_numeric_vector<T>(
    out: &mut BytesMut,
    marker: u8,
    fixed: bool,
    items: &[T],
    put: fn(&mut BytesMut, &T),
) {
    out.put_u8(marker);
    let count = put_len(out, items.len());
    out.put_u8(u8::from(fixed));
    for item in &items[..count] {
        put(out, item);
    }
}

fn put_object(
    out: &mut BytesMut,
    class_name: Option<&str>,
    sealed: &[(String, Amf3Value)],
    dynamic: &[(String, Amf3Value)],
) {
    // Anonymous objects are always dynamic in ActionScript.
    let is_dynamic = class_name.is_none() || !dynamic.is_empty();
    let count = sealed.len().min(MAX_SEALED);
    let header = ((count as u32) << 4) | (u32::from(is_dynamic) << 3) | 0b011;
    out.put_u8(marker::OBJECT);
    write_u29(out, header);
    put_str(out, class_name.unwrap_or(""));
    let sealed = &sealed[..count];
    for (name, _) in sealed {
        put_str(out, name);
    }
    for (_, value) in sealed {
        encode_amf3(value, out);
    }
    if is_dynamic {
        put_named_members(out, dynamic);
    }
}

/// Appends the AMF3 encoding of `value`, writing everything inline.
pub fn encode_amf3(value: &Amf3Value, out: &mut BytesMut) {
    use Amf3Value as V;
    match value {
        V::Undefined => out.put_u8(marker::UNDEFINED),
        V::Null => out.put_u8(marker::NULL),
        V::Boolean(false) => out.put_u8(marker::FALSE),
        V::Boolean(true) => out.put_u8(marker::TRUE),
        V::Integer(n) if (INT_MIN..=INT_MAX).contains(n) => {
            out.put_u8(marker::INTEGER);
            write_u29(out, *n as u32);
        }
        V::Integer(n) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(f64::from(*n));
        }
        V::Double(n) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(*n);
        }
        V::String(s) => {
            out.put_u8(marker::STRING);
            put_str(out, s);
        }
        V::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_str(out, s);
        }
        V::Xml(s) => {
            out.put_u8(marker::XML);
            put_str(out, s);
        }
        V::Date(millis) => {
            out.put_u8(marker::DATE);
            write_u29(out, 1);
            out.put_f64(*millis);
        }
        V::Array { assoc, dense } => {
            out.put_u8(marker::ARRAY);
            let count = put_len(out, dense.len());
            put_named_members(out, assoc);
            dense[..count]
                .iter()
                .for_each(|item| encode_amf3(item, out));
        }
        V::Object {
            class_name,
            sealed,
            dynamic,
        } => put_object(out, class_name.as_deref(), sealed, dynamic),
        V::ByteArray(bytes) => {
            out.put_u8(marker::BYTE_ARRAY);
            let count = put_len(out, bytes.len());
            out.put_slice(&bytes[..count]);
        }
        V::VectorInt { fixed, items } => {
            put_numeric_vector(out, marker::VECTOR_INT, *fixed, items, |out, v| {
                out.put_i32(*v)
            });
        }
        V::VectorUint { fixed, items } => {
            put_numeric_vector(out, marker::VECTOR_UINT, *fixed, items, |out, v| {
                out.put_u32(*v)
            });
        }
        V::VectorDouble { fixed, items } => {
            put_numeric_vector(out, marker::VECTOR_DOUBLE, *fixed, items, |out, v| {
                out.put_f64(*v)
            });
        }
        V::VectorObject {
            fixed,
            type_name,
            items,
        } => {
            out.put_u8(marker::VECTOR_OBJECT);
            let count = put_len(out, items.len());
            out.put_u8(u8::from(*fixed));
            put_str(out, type_name);
            items[..count]
                .iter()
                .for_each(|item| encode_amf3(item, out));
        }
        V::Dictionary { weak_keys, entries } => {
            out.put_u8(marker::DICTIONARY);
            let count = put_len(out, entries.len());
            out.put_u8(u8::from(*weak_keys));
            for (key, value) in &entries[..count] {
                encode_amf3(key, out);
                encode_amf3(value, out);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(value: &Amf3Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_amf3(value, &mut out);
        out.to_vec()
    }

    fn decode_one(bytes: &[u8]) -> Result<Amf3Value, AmfError> {
        let mut decoder = Amf3Decoder::new(bytes);
        let value = decoder.decode()?;
        assert!(
            decoder.is_empty(),
            "trailing bytes: {:02x?}",
            decoder.remaining()
        );
        Ok(value)
    }

    fn s(text: &str) -> Amf3Value {
        Amf3Value::String(text.to_owned())
    }

    fn int(n: i32) -> Amf3Value {
        Amf3Value::Integer(n)
    }

    fn dense(items: Vec<Amf3Value>) -> Amf3Value {
        Amf3Value::Array {
            assoc: vec![],
            dense: items,
        }
    }

    fn members(pairs: &[(&str, Amf3Value)]) -> Vec<(String, Amf3Value)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn integers_at_u29_boundaries() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7F]),
            (128, &[0x81, 0x00]),
            (16383, &[0xFF, 0x7F]),
            (16384, &[0x81, 0x80, 0x00]),
            ((1 << 21) - 1, &[0xFF, 0xFF, 0x7F]),
            (1 << 21, &[0x80, 0xC0, 0x80, 0x00]),
            ((1 << 28) - 1, &[0xBF, 0xFF, 0xFF, 0xFF]),
            (-1, &[0xFF, 0xFF, 0xFF, 0xFF]),
            (-(1 << 28), &[0xC0, 0x80, 0x80, 0x00]),
        ];
        for &(n, tail) in cases {
            let mut expected = vec![0x04];
            expected.extend_from_slice(tail);
            assert_eq!(encoded(&int(n)), expected, "encoding {n}");
            assert_eq!(decode_one(&expected), Ok(int(n)), "decoding {n}");
        }
    }

    #[test]
    fn integers_outside_29_bits_become_doubles() {
        let bytes = [0x05, 0x41, 0xB0, 0, 0, 0, 0, 0, 0];
        assert_eq!(encoded(&int(1 << 28)), bytes);
        assert_eq!(decode_one(&bytes), Ok(Amf3Value::Double(268_435_456.0)));
        let below = encoded(&int(-(1 << 28) - 1));
        assert_eq!(decode_one(&below), Ok(Amf3Value::Double(-268_435_457.0)));
    }

    #[test]
    fn string_references() {
        // ["abc", "", "abc"(ref 0)]: the empty string takes no table slot.
        let bytes = [
            0x09, 0x07, 0x01, 0x06, 0x07, b'a', b'b', b'c', 0x06, 0x01, 0x06, 0x00,
        ];
        assert_eq!(
            decode_one(&bytes),
            Ok(dense(vec![s("abc"), s(""), s("abc")]))
        );
        assert_eq!(decode_one(&[0x06, 0x02]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn object_trait_and_string_references() {
        let foo = |x| Amf3Value::Object {
            class_name: Some("Foo".into()),
            sealed: members(&[("x", int(x))]),
            dynamic: vec![],
        };
        #[rustfmt::skip]
        let bytes = [
            0x09, 0x09, 0x01,                   // array (object #0), 4 dense items
            0x0A, 0x13, 0x07, b'F', b'o', b'o', // object #1, inline traits #0: 1 sealed, class "Foo"
            0x03, b'x', 0x04, 0x01,             //   sealed name "x", x = 1
            0x0A, 0x01, 0x04, 0x02,             // object #2 by traits ref #0, x = 2
            0x0A, 0x02,                         // object ref #1
            0x0A, 0x13, 0x00, 0x02, 0x04, 0x03, // object #3, new traits, names by string refs
        ];
        assert_eq!(
            decode_one(&bytes),
            Ok(dense(vec![foo(1), foo(2), foo(1), foo(3)]))
        );
    }

    #[test]
    fn trait_references_index_in_definition_order() {
        let typed = |class: &str, key: &str, x| Amf3Value::Object {
            class_name: Some(class.into()),
            sealed: members(&[(key, int(x))]),
            dynamic: vec![],
        };
        #[rustfmt::skip]
        let bytes = [
            0x09, 0x07, 0x01,                                           // 3 dense items
            0x0A, 0x13, 0x07, b'F', b'o', b'o', 0x03, b'x', 0x04, 0x01, // traits #0: Foo { x }
            0x0A, 0x13, 0x07, b'B', b'a', b'r', 0x03, b'y', 0x04, 0x02, // traits #1: Bar { y }
            0x0A, 0x05, 0x04, 0x03,                                     // traits ref #1
        ];
        assert_eq!(
            decode_one(&bytes),
            Ok(dense(vec![
                typed("Foo", "x", 1),
                typed("Bar", "y", 2),
                typed("Bar", "y", 3)
            ]))
        );
    }

    #[test]
    fn bad_object_and_trait_references() {
        // Self reference of the array still being decoded.
        assert_eq!(
            decode_one(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(AmfError::BadReference(0))
        );
        assert_eq!(decode_one(&[0x0A, 0x04]), Err(AmfError::BadReference(2)));
        assert_eq!(decode_one(&[0x0A, 0x05]), Err(AmfError::BadReference(1)));
    }

    #[test]
    fn sealed_and_dynamic_object() {
        #[rustfmt::skip]
        let bytes = [
            0x0A, 0x1B, 0x01,             // dynamic, 1 sealed member, anonymous
            0x03, b'a', 0x06, 0x03, b'b', // a = "b"
            0x03, b'c', 0x04, 0x05,       // dynamic c = 5
            0x01,                         // end of dynamic members
        ];
        let value = Amf3Value::Object {
            class_name: None,
            sealed: members(&[("a", s("b"))]),
            dynamic: members(&[("c", int(5))]),
        };
        assert_eq!(decode_one(&bytes), Ok(value.clone()));
        assert_eq!(encoded(&value), bytes);

        // Anonymous objects are written as dynamic, typed ones only when needed.
        let anonymous = Amf3Value::Object {
            class_name: None,
            sealed: vec![],
            dynamic: vec![],
        };
        assert_eq!(encoded(&anonymous), [0x0A, 0x0B, 0x01, 0x01]);
        let typed = Amf3Value::Object {
            class_name: Some("Foo".into()),
            sealed: vec![],
            dynamic: vec![],
        };
        assert_eq!(encoded(&typed), [0x0A, 0x03, 0x07, b'F', b'o', b'o']);
    }

    #[test]
    fn externalizable_object_is_unsupported() {
        let bytes = [0x0A, 0x07, 0x07, b'F', b'o', b'o'];
        assert!(
            matches!(decode_one(&bytes), Err(AmfError::Unsupported(msg)) if msg.contains("Foo"))
        );
    }

    #[test]
    fn array_with_assoc_and_dense_parts() {
        let bytes = [
            0x09, 0x05, 0x03, b'k', 0x04, 0x01, 0x01, 0x06, 0x03, b'v', 0x04, 0x02,
        ];
        let value = Amf3Value::Array {
            assoc: members(&[("k", int(1))]),
            dense: vec![s("v"), int(2)],
        };
        assert_eq!(decode_one(&bytes), Ok(value.clone()));
        assert_eq!(encoded(&value), bytes);
    }

    #[test]
    fn byte_array_and_reference_to_it() {
        let bytes = [0x09, 0x05, 0x01, 0x0C, 0x07, 1, 2, 3, 0x0C, 0x02];
        let blob = Amf3Value::ByteArray(vec![1, 2, 3]);
        assert_eq!(
            decode_one(&bytes),
            Ok(dense(vec![blob.clone(), blob.clone()]))
        );
        assert_eq!(encoded(&blob), [0x0C, 0x07, 1, 2, 3]);
    }

    #[test]
    fn vectors_dictionary_date_and_xml() {
        #[rustfmt::skip]
        let cases: Vec<(Amf3Value, Vec<u8>)> = vec![
            (Amf3Value::VectorInt { fixed: true, items: vec![-1, 2] },
             vec![0x0D, 0x05, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2]),
            (Amf3Value::VectorUint { fixed: false, items: vec![u32::MAX] },
             vec![0x0E, 0x03, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]),
            (Amf3Value::VectorDouble { fixed: false, items: vec![1.5] },
             vec![0x0F, 0x03, 0x00, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0]),
            (Amf3Value::VectorObject { fixed: false, type_name: "*".into(), items: vec![Amf3Value::Null] },
             vec![0x10, 0x03, 0x00, 0x03, b'*', 0x01]),
            (Amf3Value::Dictionary { weak_keys: true, entries: vec![(int(1), s("x"))] },
             vec![0x11, 0x03, 0x01, 0x04, 0x01, 0x06, 0x03, b'x']),
            (Amf3Value::Date(0.0), vec![0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Amf3Value::Xml("<a/>".into()), vec![0x0B, 0x09, b'<', b'a', b'/', b'>']),
            (Amf3Value::XmlDocument("<a/>".into()), vec![0x07, 0x09, b'<', b'a', b'/', b'>']),
        ];
        for (value, bytes) in cases {
            assert_eq!(encoded(&value), bytes, "encoding {value:?}");
            assert_eq!(decode_one(&bytes), Ok(value));
        }
    }

    #[test]
    fn declared_lengths_beyond_input_are_rejected_without_allocating() {
        // Byte array claiming 2^28 - 1 bytes; vector claiming as many ints.
        assert_eq!(
            decode_one(&[0x0C, 0xBF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::TooLarge)
        );
        assert_eq!(
            decode_one(&[0x0D, 0xBF, 0xFF, 0xFF, 0xFF, 0x00]),
            Err(AmfError::TooLarge)
        );
        assert_eq!(
            decode_one(&[0x09, 0xBF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(AmfError::TooLarge)
        );
    }

    #[test]
    fn unknown_marker_and_bad_utf8() {
        assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(decode_one(&[0x06, 0x03, 0xFF]), Err(AmfError::InvalidUtf8));
        assert_eq!(decode_one(&[]), Err(AmfError::UnexpectedEof));
    }

    fn nested_arrays(levels: usize) -> Vec<u8> {
        let mut bytes = [0x09, 0x03, 0x01].repeat(levels);
        bytes.push(0x01);
        bytes
    }

    #[test]
    fn nesting_is_capped() {
        assert!(decode_one(&nested_arrays(64)).is_ok());
        assert_eq!(decode_one(&nested_arrays(65)), Err(AmfError::TooDeep));
    }

    #[test]
    fn references_cannot_exceed_nesting_cap() {
        // A 40-deep value, then an array nesting a reference to it 30 levels down.
        let mut bytes = vec![0x09, 0x05, 0x01];
        bytes.extend(nested_arrays(40));
        bytes.extend([0x09, 0x03, 0x01].repeat(30));
        bytes.extend([0x09, 0x02]);
        assert_eq!(decode_one(&bytes), Err(AmfError::TooDeep));
    }

    #[test]
    fn exponential_reference_expansion_is_capped() {
        // Object #k is an array of two references to object #k-1.
        let mut bytes = vec![0x09, 0x81, 0x01, 0x01]; // 64 dense items
        bytes.extend([0x09, 0x01, 0x01]); // #1: []
        for k in 1..63u8 {
            bytes.extend([0x09, 0x05, 0x01, 0x0A, k << 1, 0x0A, k << 1]);
        }
        bytes.push(0x01);
        assert_eq!(decode_one(&bytes), Err(AmfError::OverBudget));
    }

    fn arb_key() -> impl Strategy<Value = String> {
        "[a-z0-9_]{1,6}|\\PC{1,4}"
    }

    fn arb_members(
        inner: BoxedStrategy<Amf3Value>,
    ) -> impl Strategy<Value = Vec<(String, Amf3Value)>> {
        prop::collection::vec((arb_key(), inner), 0..4)
    }

    /// Values that survive an encode/decode round trip unchanged (finite
    /// doubles, 29-bit integers, no `Some("")` class names).
    pub(in super::super) fn arb_value() -> impl Strategy<Value = Amf3Value> {
        let finite = prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL;
        let leaf = prop_oneof![
            Just(Amf3Value::Undefined),
            Just(Amf3Value::Null),
            any::<bool>().prop_map(Amf3Value::Boolean),
            (INT_MIN..=INT_MAX).prop_map(Amf3Value::Integer),
            finite.prop_map(Amf3Value::Double),
            "\\PC{0,12}".prop_map(Amf3Value::String),
            "\\PC{0,12}".prop_map(Amf3Value::Xml),
            "\\PC{0,12}".prop_map(Amf3Value::XmlDocument),
            finite.prop_map(Amf3Value::Date),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Amf3Value::ByteArray),
            (any::<bool>(), prop::collection::vec(any::<i32>(), 0..4))
                .prop_map(|(fixed, items)| Amf3Value::VectorInt { fixed, items }),
            (any::<bool>(), prop::collection::vec(any::<u32>(), 0..4))
                .prop_map(|(fixed, items)| Amf3Value::VectorUint { fixed, items }),
            (any::<bool>(), prop::collection::vec(finite, 0..4))
                .prop_map(|(fixed, items)| Amf3Value::VectorDouble { fixed, items }),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                (
                    arb_members(inner.clone()),
                    prop::collection::vec(inner.clone(), 0..4)
                )
                    .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
                (
                    prop::option::of(arb_key()),
                    arb_members(inner.clone()),
                    arb_members(inner.clone()),
                )
                    .prop_map(|(class_name, sealed, dynamic)| Amf3Value::Object {
                        class_name,
                        sealed,
                        dynamic,
                    }),
                (
                    any::<bool>(),
                    "\\PC{0,6}",
                    prop::collection::vec(inner.clone(), 0..4)
                )
                    .prop_map(|(fixed, type_name, items)| {
                        Amf3Value::VectorObject {
                            fixed,
                            type_name,
                            items,
                        }
                    }),
                (
                    any::<bool>(),
                    prop::collection::vec((inner.clone(), inner), 0..3)
                )
                    .prop_map(|(weak_keys, entries)| Amf3Value::Dictionary { weak_keys, entries }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(value in arb_value()) {
            let bytes = encoded(&value);
            prop_assert_eq!(decode_one(&bytes), Ok(value));
        }

        #[test]
        fn every_truncation_is_an_error(value in arb_value()) {
            let bytes = encoded(&value);
            for cut in 0..bytes.len() {
                prop_assert!(Amf3Decoder::new(&bytes[..cut]).decode().is_err(), "prefix {}", cut);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all_amf3(&bytes);
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
            let _ = decode_all_amf3(&bytes);
        }
    }
}

//! Byte-level plumbing shared by the AMF0 and AMF3 codecs: a bounds-checked
//! reader, the nesting limit and the budget that stops reference tables from
//! being used to blow a small input up into a huge value tree.

use super::AmfError;

/// Deepest nesting of containers a decoder accepts (a container at depth
/// `MAX_DEPTH - 1` may still hold scalars). Keeps recursion off the stack limit.
pub(super) const MAX_DEPTH: usize = 64;

/// Every decoder may materialise this much memory in reference-table copies,
/// plus `BUDGET_PER_INPUT_BYTE` per input byte, before failing with `OverBudget`.
/// A reference costs a few input bytes but clones a whole earlier value, so
/// without a cap `[[x, x], [y, y], ...]` chains grow exponentially. The work is
/// proportional to the message: a 1 KB `connect` may copy ~320 KB at most, not
/// tens of MiB. Real values fit easily: a table copy of an object costs about
/// twice its encoded size per nesting level (64 nested objects, the deepest
/// allowed, take ~100 KB).
const BUDGET_FLOOR: usize = 256 << 10;
const BUDGET_PER_INPUT_BYTE: usize = 64;

/// Cursor over the input. Fixed-size reads past the end fail with
/// `UnexpectedEof`; a declared length or count that the remaining input cannot
/// possibly hold fails with `TooLarge` before anything is allocated.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
    budget: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        let budget = BUDGET_FLOOR.saturating_add(input.len().saturating_mul(BUDGET_PER_INPUT_BYTE));
        Self {
            rest: input,
            budget,
        }
    }

    pub(super) fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], AmfError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(AmfError::UnexpectedEof)?;
        self.rest = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, AmfError> {
        self.array().map(u8::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Result<u16, AmfError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn i16(&mut self) -> Result<i16, AmfError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, AmfError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(super) fn f64(&mut self) -> Result<f64, AmfError> {
        self.array().map(f64::from_be_bytes)
    }

    /// Takes `len` bytes whose length came from the peer.
    pub(super) fn bytes(&mut self, len: usize) -> Result<&'a [u8], AmfError> {
        let (head, rest) = self.rest.split_at_checked(len).ok_or(AmfError::TooLarge)?;
        self.rest = rest;
        Ok(head)
    }

    pub(super) fn utf8(&mut self, len: usize) -> Result<&'a str, AmfError> {
        std::str::from_utf8(self.bytes(len)?).map_err(|_| AmfError::InvalidUtf8)
    }

    /// Validates a peer-declared element count against the input left, given
    /// that each element occupies at least `min_item_len` bytes, so callers may
    /// then `Vec::with_capacity(count)` safely.
    pub(super) fn check_count(&self, count: usize, min_item_len: usize) -> Result<usize, AmfError> {
        match count.checked_mul(min_item_len) {
            Some(needed) if needed <= self.rest.len() => Ok(count),
            _ => Err(AmfError::TooLarge),
        }
    }

    /// Accounts for memory that does not correspond one-to-one to input bytes.
    pub(super) fn charge(&mut self, weight: usize) -> Result<(), AmfError> {
        self.budget = self
            .budget
            .checked_sub(weight)
            .ok_or(AmfError::OverBudget)?;
        Ok(())
    }
}

/// Fails when a container at `depth` would exceed the nesting limit; its
/// children are read at `depth + 1`.
pub(super) fn check_depth(depth: usize) -> Result<(), AmfError> {
    if depth >= MAX_DEPTH {
        Err(AmfError::TooDeep)
    } else {
        Ok(())
    }
}

/// Approximate heap footprint and container height of a decoded value; what a
/// reference-table copy of it costs and how much deeper it makes the tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size {
    pub(super) weight: usize,
    pub(super) height: usize,
}

impl Size {
    pub(super) fn leaf(node_bytes: usize) -> Self {
        Self {
            weight: node_bytes,
            height: 0,
        }
    }

    pub(super) fn container(node_bytes: usize) -> Self {
        Self {
            weight: node_bytes,
            height: 1,
        }
    }

    pub(super) fn bytes(self, len: usize) -> Self {
        Self {
            weight: self.weight.saturating_add(len),
            ..self
        }
    }

    pub(super) fn child(self, child: Size) -> Self {
        Self {
            weight: self.weight.saturating_add(child.weight),
            height: self.height.max(child.height.saturating_add(1)),
        }
    }
}

pub(super) trait Measure: Clone {
    fn measure(&self) -> Size;
}

/// A completed value in a reference table, with its size computed once.
#[derive(Debug)]
pub(super) struct Stored<T> {
    value: T,
    size: Size,
}

impl<T: Measure> Stored<T> {
    pub(super) fn new(value: &T, reader: &mut Reader<'_>) -> Result<Self, AmfError> {
        let size = value.measure();
        reader.charge(size.weight)?;
        Ok(Self {
            value: value.clone(),
            size,
        })
    }

    /// Copies the value out for a reference found at `depth`.
    pub(super) fn resolve(&self, reader: &mut Reader<'_>, depth: usize) -> Result<T, AmfError> {
        if depth.saturating_add(self.size.height) > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        reader.charge(self.size.weight)?;
        Ok(self.value.clone())
    }
}

/// Longest prefix of `s` that fits in `max` bytes without splitting a char;
/// used where the wire format's length field cannot describe all of `s`.
pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

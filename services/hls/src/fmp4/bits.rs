//! Reading H.264/HEVC parameter sets: emulation-prevention removal and an exp-Golomb bit
//! reader. Every read is bounds-checked and returns `Unsupported` at the end of the data, so
//! a hostile parameter set can never panic or loop.

use super::Unsupported;

/// The RBSP of a NAL unit: `00 00 03` becomes `00 00` (ITU-T H.264 7.4.1, H.265 7.4.2).
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader over an RBSP.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, Unsupported> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(Unsupported::Truncated("parameter set"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Up to 32 bits as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, Unsupported> {
        debug_assert!(n <= 32);
        let mut v: u32 = 0;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Unsupported> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Unsupported::Malformed("skip"))?;
        if end > self.data.len() * 8 {
            return Err(Unsupported::Truncated("parameter set"));
        }
        self.pos = end;
        Ok(())
    }

    /// ue(v). Values above 2^32 - 2 do not occur in a valid parameter set.
    pub(crate) fn ue(&mut self) -> Result<u32, Unsupported> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Unsupported::Malformed(
                    "exp-Golomb code longer than 32 bits",
                ));
            }
        }
        let rest = self.bits(zeros)?;
        // (1 << zeros) - 1 + rest, where zeros <= 31: fits in u64, checked into u32.
        let v = (1u64 << zeros) - 1 + u64::from(rest);
        u32::try_from(v).map_err(|_| Unsupported::Malformed("exp-Golomb value"))
    }

    /// se(v).
    pub(crate) fn se(&mut self) -> Result<i64, Unsupported> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_prevention_removed() {
        assert_eq!(
            rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
        assert_eq!(rbsp(&[1, 0, 3]), vec![1, 0, 3]);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3 then se of codeNum 4 = -2
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.se().unwrap(), -2);
        // Ran off the end: an error, not a panic.
        assert!(r.ue().is_err());
        assert!(BitReader::new(&[0, 0, 0, 0, 0]).ue().is_err());
        // 72 leading zeros then a one: longer than any valid code, an error.
        let mut long = vec![0u8; 9];
        long.extend_from_slice(&[0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(BitReader::new(&long).ue().is_err());
        // 32 zeros: the value would not fit in 32 bits.
        let mut v33 = vec![0u8; 4];
        v33.extend_from_slice(&[0x80, 0, 0, 0, 0]);
        assert!(BitReader::new(&v33).ue().is_err());
        assert!(BitReader::new(&[1]).skip(9).is_err());
    }
}

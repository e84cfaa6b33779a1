//! Extends 32-bit wire timestamps to 64 bits so a stream that runs past 2^32 ms (49.7 days)
//! keeps monotonic time inside the server.

/// Tracks one timestamp sequence. Each new 32-bit value is taken as the nearest 64-bit value to
/// the previous one, so a wrap from 0xFFFF_FFxx to 0x0000_00xx moves forward, while the small
/// backward steps of interleaved audio and video stay small backward steps.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimestampExtender {
    last: Option<u64>,
}

impl TimestampExtender {
    pub fn extend(&mut self, wire: u32) -> u64 {
        let next = match self.last {
            None => u64::from(wire),
            Some(last) => {
                let delta = wire.wrapping_sub(last as u32) as i32;
                last.saturating_add_signed(i64::from(delta))
            }
        };
        self.last = Some(next);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_forward_and_keeps_small_steps_back() {
        let mut t = TimestampExtender::default();
        assert_eq!(t.extend(u32::MAX - 10), u64::from(u32::MAX - 10));
        assert_eq!(t.extend(5), (1u64 << 32) + 5);
        assert_eq!(t.extend(2), (1u64 << 32) + 2);
        assert_eq!(
            t.extend(u32::MAX - 1),
            u64::from(u32::MAX - 1),
            "step back across the wrap"
        );
        assert_eq!(t.extend(20), (1u64 << 32) + 20);
    }

    #[test]
    fn second_wrap() {
        let mut t = TimestampExtender::default();
        let mut wire = 0u32;
        let mut expect = 0u64;
        for _ in 0..300 {
            assert_eq!(t.extend(wire), expect);
            wire = wire.wrapping_add(0x0200_0000);
            expect += 0x0200_0000;
        }
        assert!(expect > 1 << 33);
    }

    #[test]
    fn never_below_zero() {
        let mut t = TimestampExtender::default();
        t.extend(3);
        assert_eq!(t.extend(u32::MAX), 0);
    }
}

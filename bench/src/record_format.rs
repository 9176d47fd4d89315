//! The bench's record value layout and payload source.
//!
//! Every value starts with a fixed 24-byte header (big-endian) so that consumers can compute
//! end-to-end latency and check delivery without any side channel:
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0..4   | magic `LMB1`                            |
//! | 4..8   | producer id (random per run + index)    |
//! | 8..16  | sequence, per producer and partition    |
//! | 16..24 | send time, Unix nanoseconds             |
//!
//! The rest of the value is filler copied from a shared pool.

use crate::rng::Rng;

pub const HEADER_BYTES: usize = 24;
pub const MAGIC: u32 = u32::from_be_bytes(*b"LMB1");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    pub producer_id: u32,
    pub sequence: u64,
    pub send_time_ns: u64,
}

impl ValueHeader {
    /// Writes the header into the first 24 bytes of `dst` (which must be at least that long).
    #[inline]
    pub fn write(&self, dst: &mut [u8]) {
        dst[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        dst[4..8].copy_from_slice(&self.producer_id.to_be_bytes());
        dst[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        dst[16..24].copy_from_slice(&self.send_time_ns.to_be_bytes());
    }

    /// Reads a header from the front of a value; `None` for values the bench did not write.
    #[inline]
    pub fn read(src: &[u8]) -> Option<Self> {
        let head = src.get(..HEADER_BYTES)?;
        if head[0..4] != MAGIC.to_be_bytes() {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().expect("8 bytes"));
        Some(Self {
            producer_id: u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")),
            sequence: u64_at(8),
            send_time_ns: u64_at(16),
        })
    }
}

/// Pseudo-random lowercase text: compresses roughly like log lines (about 60% with lz4/zstd),
/// so compression codecs do real work rather than squeezing zeros.
pub struct PayloadPool {
    bytes: Vec<u8>,
    /// Offsets are drawn from [0, window) so that any slice up to the largest value fits.
    window: usize,
}

/// Distinct filler start offsets; enough that consecutive values differ.
const POOL_WINDOW_BYTES: usize = 64 * 1024;

impl PayloadPool {
    pub fn new(max_value_bytes: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let len = POOL_WINDOW_BYTES + max_value_bytes;
        let bytes = (0..len)
            .map(|_| {
                let r = rng.below(32) as u8;
                if r < 26 {
                    b'a' + r
                } else {
                    b' '
                }
            })
            .collect();
        Self { bytes, window: POOL_WINDOW_BYTES }
    }

    /// `len` filler bytes starting at a random offset.
    #[inline]
    pub fn slice(&self, rng: &mut Rng, len: usize) -> &[u8] {
        let at = rng.below(self.window as u64) as usize;
        &self.bytes[at..at + len]
    }
}

/// Writes a whole value: header then filler. `dst.len()` ≥ `HEADER_BYTES`.
#[inline]
pub fn fill_value(dst: &mut [u8], header: &ValueHeader, pool: &PayloadPool, rng: &mut Rng) {
    header.write(dst);
    let rest = &mut dst[HEADER_BYTES..];
    rest.copy_from_slice(pool.slice(rng, rest.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h =
            ValueHeader { producer_id: 0xdead_beef, sequence: u64::MAX - 3, send_time_ns: 1_700_000_000_123_456_789 };
        let mut buf = [0u8; 40];
        h.write(&mut buf);
        assert_eq!(&buf[..4], b"LMB1");
        assert_eq!(ValueHeader::read(&buf), Some(h));
        assert_eq!(ValueHeader::read(&buf[..HEADER_BYTES]), Some(h));
    }

    #[test]
    fn foreign_and_short_values_are_not_headers() {
        assert_eq!(ValueHeader::read(b"hello"), None);
        assert_eq!(ValueHeader::read(&[0u8; 64]), None);
        let mut buf = [0u8; HEADER_BYTES];
        ValueHeader { producer_id: 1, sequence: 2, send_time_ns: 3 }.write(&mut buf);
        assert_eq!(ValueHeader::read(&buf[..HEADER_BYTES - 1]), None);
    }

    #[test]
    fn filled_values_carry_the_header_and_text_filler() {
        let pool = PayloadPool::new(1000, 1);
        let mut rng = Rng::new(2);
        let mut value = vec![0u8; 1000];
        let h = ValueHeader { producer_id: 9, sequence: 10, send_time_ns: 11 };
        fill_value(&mut value, &h, &pool, &mut rng);
        assert_eq!(ValueHeader::read(&value), Some(h));
        assert!(value[HEADER_BYTES..].iter().all(|&b| b == b' ' || b.is_ascii_lowercase()));
        // Exactly a header is allowed too.
        let mut tiny = vec![0u8; HEADER_BYTES];
        fill_value(&mut tiny, &h, &pool, &mut rng);
        assert_eq!(ValueHeader::read(&tiny), Some(h));
    }
}

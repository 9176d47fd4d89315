//! Kafka's variable-length integers: zig-zag encoded base-128 varints (protobuf style),
//! used for every length and delta inside a v2 record.

use bytes::BufMut;

/// Longest encoding of a 64-bit varint.
pub const VARLONG_MAX_BYTES: usize = 10;

#[inline]
fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn unzigzag64(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Bytes taken by `value` as a zig-zag varint (the same for i32 and i64 values).
#[inline]
pub fn len(value: i64) -> usize {
    let mut v = zigzag64(value);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Writes `value` as a zig-zag varint.
#[inline]
pub fn put<B: BufMut>(buf: &mut B, value: i64) {
    let mut v = zigzag64(value);
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads a zig-zag varint from the front of `input`, returning the value and the bytes used.
/// `None` when the input ends early or the encoding is longer than 10 bytes.
#[inline]
pub fn get(input: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in input.iter().take(VARLONG_MAX_BYTES).enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((unzigzag64(raw), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for value in [0i64, 1, -1, 63, -64, 64, -65, 300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put(&mut buf, value);
            assert_eq!(buf.len(), len(value), "len of {value}");
            assert_eq!(get(&buf), Some((value, buf.len())), "value {value}");
        }
    }

    #[test]
    fn known_encodings() {
        // Zig-zag: 0→0, -1→1, 1→2, -2→3; 150 → 300 → [0xac, 0x02].
        let cases: [(i64, &[u8]); 4] = [(0, &[0]), (-1, &[1]), (1, &[2]), (150, &[0xac, 0x02])];
        for (value, bytes) in cases {
            let mut buf = Vec::new();
            put(&mut buf, value);
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(get(&[0x80]), None);
        assert_eq!(get(&[]), None);
        assert_eq!(get(&[0xff; 11]), None);
    }
}

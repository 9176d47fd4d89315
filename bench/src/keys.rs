//! Record keys and the partition a key maps to.
//!
//! Keys are 16 ASCII bytes, `k` and a zero-padded key index, written into a stack buffer. Keyed
//! records are partitioned with Kafka's default partitioner (murmur2 of the key bytes, made
//! positive, modulo the partition count), so a keyed run spreads load exactly as a Java or
//! librdkafka (`murmur2_random`) producer would.

use crate::args::KeyDist;
use crate::rng::Rng;
use crate::zipf::Zipf;

pub const KEY_BYTES: usize = 16;

/// Draws key indexes from the configured distribution.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    None,
    Uniform { count: u64 },
    Zipf(Zipf),
}

impl KeyChooser {
    pub fn new(dist: KeyDist, count: u64, exponent: f64) -> Result<Self, String> {
        if dist != KeyDist::None && count == 0 {
            return Err("--key-count must be at least 1".into());
        }
        Ok(match dist {
            KeyDist::None => KeyChooser::None,
            KeyDist::Uniform => KeyChooser::Uniform { count },
            KeyDist::Zipf => KeyChooser::Zipf(Zipf::new(count, exponent)?),
        })
    }

    pub fn is_unkeyed(&self) -> bool {
        matches!(self, KeyChooser::None)
    }

    /// The next key written into `buf`, or `None` for unkeyed records.
    #[inline]
    pub fn next<'a>(&self, rng: &mut Rng, buf: &'a mut [u8; KEY_BYTES]) -> Option<&'a [u8]> {
        let index = match self {
            KeyChooser::None => return None,
            KeyChooser::Uniform { count } => rng.below(*count),
            KeyChooser::Zipf(z) => z.sample(rng) - 1, // rank 1 is the hottest key, index 0
        };
        write_key(index, buf);
        Some(&buf[..])
    }
}

/// `k` followed by `index` in 15 zero-padded decimal digits (indexes wrap at 10^15).
#[inline]
pub fn write_key(mut index: u64, buf: &mut [u8; KEY_BYTES]) {
    buf[0] = b'k';
    for slot in buf[1..].iter_mut().rev() {
        *slot = b'0' + (index % 10) as u8;
        index /= 10;
    }
}

/// Kafka's `Utils.murmur2`, 32-bit, seed 0x9747b28c.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Java's switch falls through from case 3 to case 1.
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition index (into a list of `partitions` partitions) for `key`.
#[inline]
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    // Kafka's toPositive: mask the sign bit rather than abs(), so i32::MIN maps to 0.
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn keys_are_fixed_width_and_distinct() {
        let mut buf = [0u8; KEY_BYTES];
        write_key(42, &mut buf);
        assert_eq!(&buf, b"k000000000000042");
        write_key(999_999_999_999_999, &mut buf);
        assert_eq!(&buf, b"k999999999999999");
    }

    #[test]
    fn chooser_respects_distribution_and_count() {
        let mut rng = Rng::new(1);
        let mut buf = [0u8; KEY_BYTES];
        assert!(KeyChooser::new(KeyDist::None, 10, 1.0).unwrap().next(&mut rng, &mut buf).is_none());
        assert!(KeyChooser::new(KeyDist::Uniform, 0, 1.0).is_err());
        let zipf = KeyChooser::new(KeyDist::Zipf, 1000, 1.0).unwrap();
        let mut hottest = 0;
        for _ in 0..10_000 {
            let key = zipf.next(&mut rng, &mut buf).unwrap();
            if key == b"k000000000000000" {
                hottest += 1;
            }
        }
        // P(rank 1) = 1/H(1000) ≈ 0.134.
        assert!((1_100..1_600).contains(&hottest), "{hottest}");
    }

    #[test]
    fn keyed_partitioning_spreads_keys() {
        let mut counts = [0u32; 8];
        let mut buf = [0u8; KEY_BYTES];
        for i in 0..8_000 {
            write_key(i, &mut buf);
            counts[partition_for_key(&buf, 8)] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }
}

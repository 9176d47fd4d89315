//! Mutations of request frames, driven by a seeded xorshift generator so a
//! run is repeatable from its seed.

use laminar_engine::batch;

/// xorshift64*: small, fast, and reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

const INTERESTING_U8: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x02, 0x10, 0x40];
const INTERESTING_I16: [i16; 7] = [i16::MAX, i16::MIN, -1, 0, 1, 0x7f, 0x100];
const INTERESTING_I32: [i32; 9] = [i32::MAX, i32::MIN, -1, 0, 1, 0x7fff, 0x1_0000, 0x100_0000, 100 * 1024 * 1024];

/// The first 4 bytes (API key, version) stay put unless `anywhere`: most
/// inputs should reach a body decoder, not die in the header check.
fn position(rng: &mut Rng, len: usize, anywhere: bool) -> usize {
    let from = if anywhere { 0 } else { 4.min(len) };
    if len <= from {
        return len;
    }
    from + rng.below(len - from)
}

fn put(input: &mut [u8], at: usize, bytes: &[u8]) {
    let end = (at + bytes.len()).min(input.len());
    input[at..end].copy_from_slice(&bytes[..end - at]);
}

/// A big-endian length or count at `p` that plausibly is one: it fits the
/// bytes after it. Returns its width (2 or 4) and value.
fn length_at(input: &[u8], p: usize) -> Option<(usize, i64)> {
    let rest = input.len().saturating_sub(p);
    if rest >= 4 {
        let v = i32::from_be_bytes(input[p..p + 4].try_into().unwrap()) as i64;
        if (0..=(rest - 4) as i64).contains(&v) || v == -1 {
            return Some((4, v));
        }
    }
    if rest >= 2 {
        let v = i16::from_be_bytes(input[p..p + 2].try_into().unwrap()) as i64;
        if (1..=(rest - 2) as i64).contains(&v) || v == -1 {
            return Some((2, v));
        }
    }
    None
}

/// Rewrites a length or count field found near a random position: to a value
/// one off, doubled, zero, null, just past the end, or the type's extremes.
/// Without a fixed-width candidate nearby, a varint is written instead.
fn rewrite_length(rng: &mut Rng, input: &mut Vec<u8>) {
    let start = position(rng, input.len(), false);
    for p in start..input.len().min(start + 64) {
        if let Some((width, v)) = length_at(input, p) {
            let rest = (input.len() - p - width) as i64;
            let to = rng.pick(&[v + 1, v - 1, v * 2, 0, -1, rest + 1, i32::MAX as i64, i32::MIN as i64, v + 1000]);
            if width == 4 {
                put(input, p, &(to as i32).to_be_bytes());
            } else {
                put(input, p, &(to.clamp(i16::MIN as i64, i16::MAX as i64) as i16).to_be_bytes());
            }
            return;
        }
    }
    // Compact lengths and counts are unsigned varints (length + 1).
    let p = position(rng, input.len(), false);
    let v: u32 = rng.pick(&[0, 1, 2, 0x7f, 0x80, 0x3fff, 0x4000, u32::MAX, (input.len() - p) as u32 + 2]);
    let mut varint = Vec::with_capacity(5);
    let mut x = v;
    while x >= 0x80 {
        varint.push((x as u8) | 0x80);
        x >>= 7;
    }
    varint.push(x as u8);
    let replace = rng.below(3).min(input.len() - p);
    input.splice(p..p + replace, varint);
}

/// Applies one to four random mutations; `other` is a frame to splice from.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let anywhere = rng.chance(1, 16);
        match rng.below(8) {
            0 => {
                let p = position(rng, input.len(), anywhere);
                if p < input.len() {
                    input[p] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let p = position(rng, input.len(), anywhere);
                if p < input.len() {
                    input[p] = rng.pick(&INTERESTING_U8);
                }
            }
            2 => {
                let p = position(rng, input.len(), anywhere);
                if rng.chance(1, 2) {
                    put(input, p, &rng.pick(&INTERESTING_I16).to_be_bytes());
                } else {
                    put(input, p, &rng.pick(&INTERESTING_I32).to_be_bytes());
                }
            }
            3 => {
                let p = position(rng, input.len(), anywhere);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n)
                    .map(|_| if rng.chance(1, 2) { rng.pick(&INTERESTING_U8) } else { rng.next() as u8 })
                    .collect();
                input.splice(p..p, fill);
            }
            4 => {
                let p = position(rng, input.len(), anywhere);
                let n = (1 + rng.below(16)).min(input.len() - p);
                input.drain(p..p + n);
            }
            5 | 6 => rewrite_length(rng, input),
            _ => {
                // Splice: this frame's head with another's tail.
                if !other.is_empty() {
                    let cut = position(rng, input.len(), false);
                    let from = rng.below(other.len());
                    input.truncate(cut);
                    input.extend_from_slice(&other[from..]);
                }
            }
        }
    }
}

/// Where the varints of an uncompressed batch's records are (position,
/// width): record length, timestamp and offset deltas, key and value
/// lengths, header count, header key and value lengths.
pub fn record_varints(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let Some(h) = batch::BatchHeader::parse(b) else { return out };
    if h.compression() != 0 {
        return out;
    }
    let mut pos = batch::HEADER_LEN;
    let varint = |pos: &mut usize, out: &mut Vec<(usize, usize)>| -> Option<i64> {
        let (v, n) = batch::read_varlong(b.get(*pos..)?)?;
        out.push((*pos, n));
        *pos += n;
        Some(v)
    };
    let skip = |pos: &mut usize, len: i64| -> Option<()> {
        *pos = pos.checked_add(usize::try_from(len).ok()?).filter(|&p| p <= b.len())?;
        Some(())
    };
    for _ in 0..h.records_count.clamp(0, 10_000) {
        let walked = (|| -> Option<()> {
            varint(&mut pos, &mut out)?; // record length
            pos += 1; // attributes
            varint(&mut pos, &mut out)?; // timestamp delta
            varint(&mut pos, &mut out)?; // offset delta
            for _ in 0..2 {
                let len = varint(&mut pos, &mut out)?; // key, then value
                if len > 0 {
                    skip(&mut pos, len)?;
                }
            }
            let headers = varint(&mut pos, &mut out)?;
            for _ in 0..headers.clamp(0, 1000) {
                for _ in 0..2 {
                    let len = varint(&mut pos, &mut out)?;
                    if len > 0 {
                        skip(&mut pos, len)?;
                    }
                }
            }
            Some(())
        })();
        if walked.is_none() {
            break;
        }
    }
    out
}

/// `v` zig-zag encoded as a varint of exactly `width` bytes, if it fits.
fn varint_of_width(v: i64, width: usize) -> Option<Vec<u8>> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::with_capacity(width);
    for i in 0..width {
        let group = (z & 0x7f) as u8;
        z >>= 7;
        out.push(if i + 1 < width { group | 0x80 } else { group });
    }
    (z == 0).then_some(out)
}

/// Mutates inside one record batch of a Produce frame (header fields,
/// record varints, bytes), then recomputes the batch's CRC-32C so that
/// validation gets past the CRC to the record framing.
pub fn mutate_batch(rng: &mut Rng, input: &mut [u8], batch_range: std::ops::Range<usize>) {
    let b = &mut input[batch_range];
    let varints = record_varints(b);
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            // recordsCount, lastOffsetDelta, batchLength, attributes, magic
            0 => {
                let at = rng.pick(&[57usize, 23, 8]);
                let v = rng.pick(&INTERESTING_I32);
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            1 => {
                let v = rng.pick(&[0i16, 1, 2, 3, 4, 5, 7, 0x10, 0x20, -1]);
                b[21..23].copy_from_slice(&v.to_be_bytes());
            }
            2 => b[16] = rng.pick(&[0u8, 1, 2, 3, 0xff]),
            // A record varint (length, delta, count) set to an edge value of
            // the same width, so the framing around it stays put.
            3..=5 if !varints.is_empty() => {
                let (at, width) = varints[rng.below(varints.len())];
                let current = batch::read_varlong(&b[at..]).map_or(0, |(v, _)| v);
                let to = rng.pick(&[
                    0,
                    -1,
                    1,
                    -2,
                    current + 1,
                    current - 1,
                    current * 2,
                    63,
                    -64,
                    8191,
                    -8192,
                    i32::MAX as i64,
                    i64::MIN,
                    i64::MAX,
                ]);
                if let Some(bytes) = varint_of_width(to, width) {
                    b[at..at + width].copy_from_slice(&bytes);
                }
            }
            6 => {
                let at = batch::HEADER_LEN + rng.below(b.len() - batch::HEADER_LEN);
                b[at] = rng.pick(&[0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x7e, 0x03]);
            }
            _ => {
                let at = batch::HEADER_LEN + rng.below(b.len() - batch::HEADER_LEN);
                b[at] ^= 1 << rng.below(8);
            }
        }
    }
    let crc = batch::compute_crc(b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

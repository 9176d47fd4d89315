//! Record-batch compression codecs as Kafka frames them (attribute bits 0–2).
//!
//! - gzip: one gzip member (RFC 1952), what `java.util.zip.GZIPOutputStream` writes.
//! - snappy: written in the xerial framing the Java client uses (16-byte magic header, then
//!   big-endian length-prefixed blocks of ≤ 32 KiB). Read in both the xerial framing and as a
//!   raw snappy block, which is what librdkafka sends; Kafka's broker, Java and librdkafka
//!   consumers accept both.
//! - lz4: the LZ4 frame format (Kafka ≥ 0.10, magic 1+) with independent 64 KiB blocks and no
//!   checksums, the settings Kafka's own `Lz4BlockOutputStream` uses.
//! - zstd: one zstd frame.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec named by a batch's attributes (bits 0–2).
    pub fn from_attributes(attributes: i16) -> Result<Self> {
        match attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(Error::Batch(format!("unknown compression codec {other}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown compression '{s}' (none, gzip, snappy, lz4, zstd)"))
    }
}

/// The xerial snappy-java stream header: magic, version 1, minimum compatible version 1.
pub const XERIAL_SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block, snappy-java's default.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Java's default deflate level and zstd's, the levels Kafka producers use unless told otherwise.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// Compression state reused across batches so that a producer does not rebuild codec tables
/// (deflate's window, snappy's hash table, zstd's context) for every batch.
#[derive(Default)]
pub struct Compressor {
    deflate: Option<flate2::Compress>,
    snappy: Option<snap::raw::Encoder>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// Output staging for codecs that write into a `Vec`; its size follows the largest batch.
    scratch: Vec<u8>,
}

impl Compressor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `input` compressed with `codec` to `out`.
    pub fn compress(&mut self, codec: Compression, input: &[u8], out: &mut BytesMut) -> Result<()> {
        match codec {
            Compression::None => out.extend_from_slice(input),
            Compression::Gzip => self.gzip(input, out)?,
            Compression::Snappy => self.snappy(input, out)?,
            Compression::Lz4 => lz4(input, out)?,
            Compression::Zstd => self.zstd(input, out)?,
        }
        Ok(())
    }

    fn gzip(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        use flate2::{Compress, FlushCompress, Status};
        // Raw deflate plus a hand-written gzip header and trailer, so the deflate state can be
        // reset and reused instead of reallocated per batch.
        let deflate = self.deflate.get_or_insert_with(|| Compress::new(flate2::Compression::new(GZIP_LEVEL), false));
        deflate.reset();
        self.scratch.clear();
        self.scratch.reserve(input.len() / 2 + 64);
        loop {
            let consumed = deflate.total_in() as usize;
            let status = deflate
                .compress_vec(&input[consumed..], &mut self.scratch, FlushCompress::Finish)
                .map_err(|e| Error::Batch(format!("gzip: {e}")))?;
            match status {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => self.scratch.reserve(self.scratch.capacity().max(4096)),
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.reserve(GZIP_HEADER.len() + self.scratch.len() + 8);
        out.put_slice(&GZIP_HEADER);
        out.put_slice(&self.scratch);
        out.put_u32_le(crc.sum());
        out.put_u32_le(input.len() as u32); // ISIZE is the length modulo 2^32 by definition.
        Ok(())
    }

    fn snappy(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        let encoder = self.snappy.get_or_insert_with(snap::raw::Encoder::new);
        out.put_slice(XERIAL_SNAPPY_MAGIC);
        self.scratch.resize(snap::raw::max_compress_len(XERIAL_BLOCK_BYTES), 0);
        for block in input.chunks(XERIAL_BLOCK_BYTES) {
            let n = encoder.compress(block, &mut self.scratch).map_err(|e| Error::Batch(format!("snappy: {e}")))?;
            out.put_u32(n as u32);
            out.put_slice(&self.scratch[..n]);
        }
        Ok(())
    }

    fn zstd(&mut self, input: &[u8], out: &mut BytesMut) -> Result<()> {
        if self.zstd.is_none() {
            let ctx = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| Error::Batch(format!("zstd: {e}")))?;
            self.zstd = Some(ctx);
        }
        let ctx = self.zstd.as_mut().expect("zstd context was just created");
        self.scratch.clear();
        self.scratch.reserve(zstd::zstd_safe::compress_bound(input.len()));
        ctx.compress_to_buffer(input, &mut self.scratch).map_err(|e| Error::Batch(format!("zstd: {e}")))?;
        out.put_slice(&self.scratch);
        Ok(())
    }
}

fn lz4(input: &[u8], out: &mut BytesMut) -> Result<()> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let info = FrameInfo::new().block_size(BlockSize::Max64KB).block_mode(BlockMode::Independent);
    let mut encoder = FrameEncoder::with_frame_info(info, out.writer());
    std::io::Write::write_all(&mut encoder, input).map_err(|e| Error::Batch(format!("lz4: {e}")))?;
    encoder.finish().map_err(|e| Error::Batch(format!("lz4: {e}")))?;
    Ok(())
}

/// Decompresses one batch's records section. Output beyond `max_bytes` is an error, so that a
/// hostile or corrupt batch cannot make the reader allocate without bound.
pub fn decompress(codec: Compression, input: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
    let err = |e: std::io::Error| Error::Batch(format!("{codec}: {e}"));
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(input), max_bytes, codec),
        Compression::Snappy => snappy_decompress(input, max_bytes),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), max_bytes, codec),
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(input).map_err(err)?, max_bytes, codec),
    }
}

fn read_bounded<R: Read>(reader: R, max_bytes: usize, codec: Compression) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Batch(format!("{codec} decompression failed: {e}")))?;
    if out.len() > max_bytes {
        return Err(Error::Batch(format!("{codec} batch decompresses to more than {max_bytes} bytes")));
    }
    Ok(out)
}

fn snappy_decompress(input: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
    let err = |e: snap::Error| Error::Batch(format!("snappy: {e}"));
    let mut decoder = snap::raw::Decoder::new();
    let too_big = || Error::Batch(format!("snappy batch decompresses to more than {max_bytes} bytes"));
    if !input.starts_with(XERIAL_SNAPPY_MAGIC) {
        let n = snap::raw::decompress_len(input).map_err(err)?;
        if n > max_bytes {
            return Err(too_big());
        }
        return decoder.decompress_vec(input).map_err(err);
    }
    let mut rest = &input[XERIAL_SNAPPY_MAGIC.len()..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Error::Batch("snappy: truncated xerial block length".into()));
        }
        let block_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let block = rest.get(4..4 + block_len).ok_or_else(|| Error::Batch("snappy: truncated xerial block".into()))?;
        let n = snap::raw::decompress_len(block).map_err(err)?;
        if out.len() + n > max_bytes {
            return Err(too_big());
        }
        let start = out.len();
        out.resize(start + n, 0);
        decoder.decompress(block, &mut out[start..]).map_err(err)?;
        rest = &rest[4 + block_len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Mildly compressible: letters from a small LCG.
        let mut x: u32 = 12345;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b'A' + ((x >> 16) % 26) as u8
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_including_multi_block_inputs() {
        let mut compressor = Compressor::new();
        for len in [0usize, 1, 100, 70_000, 200_000] {
            let input = sample(len);
            for codec in Compression::ALL {
                let mut out = BytesMut::new();
                compressor.compress(codec, &input, &mut out).unwrap();
                let back = decompress(codec, &out, 1 << 20).unwrap();
                assert_eq!(back, input, "{codec} len {len}");
            }
        }
    }

    #[test]
    fn gzip_output_is_read_by_a_stock_gzip_decoder() {
        let input = sample(5000);
        let mut out = BytesMut::new();
        Compressor::new().compress(Compression::Gzip, &input, &mut out).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn snappy_accepts_raw_blocks_as_librdkafka_sends() {
        let input = sample(10_000);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, 1 << 20).unwrap(), input);
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![0u8; 100_000];
        for codec in Compression::ALL.into_iter().skip(1) {
            let mut out = BytesMut::new();
            Compressor::new().compress(codec, &input, &mut out).unwrap();
            assert!(decompress(codec, &out, 99_999).is_err(), "{codec} must refuse to exceed the bound");
            assert!(decompress(codec, &out, 100_000).is_ok(), "{codec} at exactly the bound");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5];
        for codec in Compression::ALL.into_iter().skip(1) {
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec}");
        }
        let mut truncated_xerial = XERIAL_SNAPPY_MAGIC.to_vec();
        truncated_xerial.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(decompress(Compression::Snappy, &truncated_xerial, 1 << 20).is_err());
    }

    #[test]
    fn parses_names_and_attribute_bits() {
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("brotli".parse::<Compression>().is_err());
        assert_eq!(Compression::from_attributes(0b1_0011).unwrap(), Compression::Lz4);
        assert!(Compression::from_attributes(7).is_err());
    }
}

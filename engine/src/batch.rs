//! Kafka v2 record batches ("magic 2"): header parsing, validation and the two
//! fields the broker rewrites (base offset, partition leader epoch), both outside
//! the CRC so a batch is stored exactly as the producer sent it. On a
//! LogAppendTime topic the broker also stamps the timestamp type and
//! `maxTimestamp`, inside the CRC, which it then recomputes (`stamp_timestamp`).
//!
//! Layout (big-endian):
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordsCount i32 | 61 records...
//! ```

use crate::error::{EngineError, Result};

/// Bytes before `batchLength`'s payload starts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 header, up to and including recordsCount.
pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;
/// Attributes bit 3: the batch's timestamps are the broker's append time.
pub const LOG_APPEND_TIME_FLAG: i16 = 0x08;
/// Bytes from the start of a batch through `maxTimestamp`: what a timestamp
/// stamp rewrites (with the CRC before it).
pub const STAMP_HEAD_BYTES: usize = 43;

/// The parsed fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

impl BatchHeader {
    /// Parses the fixed header; `None` if fewer than [`HEADER_LEN`] bytes are given.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(b[17..21].try_into().unwrap()),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        })
    }

    /// Whole batch size on disk, including the 12-byte log overhead.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    pub fn last_offset(&self) -> i64 {
        // A header read back from disk has a base offset no CRC covers:
        // saturate rather than overflow on a damaged one (recovery refuses it).
        self.base_offset.saturating_add(self.last_offset_delta as i64)
    }
    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    /// Timestamp type bit: LogAppendTime (the broker's clock).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_FLAG != 0
    }
}

/// CRC-32C over attributes..end, as the batch header's `crc` field covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Sets a batch's timestamp type (attributes bit 3) and `maxTimestamp`, and
/// the CRC-32C they are covered by. `head` is a copy of the batch's first
/// `STAMP_HEAD_BYTES` bytes (rewritten in place), `tail` the rest of the
/// batch, read but not copied. Kafka does the same at append on a
/// LogAppendTime topic (`setMaxTimestamp`): consumers then take every
/// record's timestamp to be `maxTimestamp`.
pub fn stamp_timestamp(head: &mut [u8], tail: &[u8], log_append_time: bool, max_timestamp: i64) {
    let mut attributes = be_i16(head, 21);
    if log_append_time {
        attributes |= LOG_APPEND_TIME_FLAG;
    } else {
        attributes &= !LOG_APPEND_TIME_FLAG;
    }
    head[21..23].copy_from_slice(&attributes.to_be_bytes());
    head[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..STAMP_HEAD_BYTES]), tail);
    head[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the base offset in place (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
}

/// Rewrites the partition leader epoch in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Structural check used by recovery and reads: header sane and CRC matches.
/// Does not look inside records (a stored batch was validated when appended).
pub fn check_stored(batch: &[u8]) -> Result<BatchHeader> {
    let h = parse_header(batch)?;
    if h.magic != 2 {
        return Err(EngineError::CorruptBatch(format!("magic {} (expected 2)", h.magic)));
    }
    check_length_and_crc(batch, &h)?;
    Ok(h)
}

fn parse_header(batch: &[u8]) -> Result<BatchHeader> {
    BatchHeader::parse(batch)
        .ok_or_else(|| EngineError::CorruptBatch(format!("{} bytes is shorter than a batch header", batch.len())))
}

fn check_length_and_crc(batch: &[u8], h: &BatchHeader) -> Result<()> {
    if h.total_len() < HEADER_LEN || h.total_len() != batch.len() {
        return Err(EngineError::CorruptBatch(format!(
            "batchLength {} does not match {} bytes",
            h.batch_length,
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != h.crc {
        return Err(EngineError::CorruptBatch(format!(
            "CRC-32C mismatch: header {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    Ok(())
}

/// Full validation of a batch a producer sent: structure, CRC, size limit, and
/// for uncompressed batches every record's framing. Nothing is written for a
/// request if any of its batches fails here.
pub fn validate_produced(batch: &[u8], max_message_bytes: usize) -> Result<BatchHeader> {
    if batch.len() > max_message_bytes {
        return Err(EngineError::BatchTooLarge { size: batch.len(), max: max_message_bytes });
    }
    let h = parse_header(batch)?;
    if h.magic != 2 {
        // Message formats v0/v1 are gone since Kafka 4.0; clients we support send v2.
        return Err(EngineError::InvalidBatch(format!("magic {} is not supported (only 2)", h.magic)));
    }
    check_length_and_crc(batch, &h)?;
    if h.records_count <= 0 {
        return Err(EngineError::InvalidBatch(format!("records count {}", h.records_count)));
    }
    if h.last_offset_delta != h.records_count - 1 {
        return Err(EngineError::InvalidBatch(format!(
            "lastOffsetDelta {} but {} records",
            h.last_offset_delta, h.records_count
        )));
    }
    if h.is_control() {
        return Err(EngineError::InvalidBatch("producers may not write control batches".into()));
    }
    if h.compression() > 4 {
        return Err(EngineError::InvalidBatch(format!("unknown compression codec {}", h.compression())));
    }
    if h.compression() == 0 {
        check_records(&batch[HEADER_LEN..], h.records_count)?;
    } else {
        check_compressed_count(&h, batch.len() - HEADER_LEN)?;
    }
    Ok(h)
}

/// Smallest encoded record: length, attributes, timestamp delta, offset
/// delta, key length, value length and header count, one byte each.
const RECORD_BYTES_MIN: u64 = 7;

/// Most bytes one compressed byte can expand to, per codec (0 = none): the
/// format's own limit (deflate's 1032:1; a snappy copy op of 3 bytes makes 64;
/// an lz4 run grows by 255 per byte; a 4-byte zstd RLE block makes 128 KiB).
const EXPANSION_MAX: [u64; 5] = [1, 1032, 22, 256, 32_768];

/// The broker never decompresses (batches are stored as sent), but a
/// compressed batch's claimed record count still sets how many offsets it
/// takes: a 61-byte batch must not claim two billion records. Refuses counts
/// the compressed bytes could not hold even at the codec's best ratio.
fn check_compressed_count(h: &BatchHeader, body_bytes: usize) -> Result<()> {
    let codec = h.compression() as usize;
    let most = (body_bytes as u64).saturating_mul(EXPANSION_MAX[codec]) / RECORD_BYTES_MIN;
    if h.records_count as u64 > most {
        return Err(EngineError::InvalidBatch(format!(
            "a batch of {body_bytes} compressed bytes (codec {codec}) claims {} records; it can hold at most {most}",
            h.records_count
        )));
    }
    Ok(())
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` for a
/// CreateTime batch: its timestamps may be at most `before_max_ms` older and
/// `after_max_ms` newer than `now_ms`. Retention and `segment.ms` age data by
/// these timestamps, so a far-future one would keep a partition forever.
/// Only CreateTime topics check (on a LogAppendTime topic the broker's clock
/// replaces them), whatever timestamp type the producer marked its batch with.
pub fn check_timestamps(h: &BatchHeader, now_ms: u64, before_max_ms: u64, after_max_ms: u64) -> Result<()> {
    let now = now_ms.min(i64::MAX as u64) as i64;
    let earliest = now.saturating_sub(before_max_ms.min(i64::MAX as u64) as i64);
    let latest = now.saturating_add(after_max_ms.min(i64::MAX as u64) as i64);
    for (what, ts) in [("baseTimestamp", h.base_timestamp), ("maxTimestamp", h.max_timestamp)] {
        // -1 means "no timestamp" (clients that set none).
        if ts != -1 && (ts < earliest || ts > latest) {
            return Err(EngineError::InvalidTimestamp(format!(
                "{what} {ts} is outside [{earliest}, {latest}] (message.timestamp.before.max.ms / after.max.ms)"
            )));
        }
    }
    Ok(())
}

/// Splits a Produce request's `records` field into its batches, each as a range.
pub fn split_batches(records: &[u8]) -> Result<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(EngineError::CorruptBatch(format!("{} trailing bytes after the last batch", rest.len())));
        }
        let len = be_i32(rest, 8);
        if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(EngineError::CorruptBatch(format!("batchLength {len}")));
        }
        let total = LOG_OVERHEAD + len as usize;
        if total > rest.len() {
            return Err(EngineError::CorruptBatch(format!("batch of {total} bytes truncated at {}", rest.len())));
        }
        out.push(pos..pos + total);
        pos += total;
    }
    if out.is_empty() {
        return Err(EngineError::InvalidBatch("no record batch in request".into()));
    }
    Ok(out)
}

/// Reads a zig-zag varint (Kafka's record encoding), returning (value, bytes used).
pub fn read_varlong(b: &[u8]) -> Option<(i64, usize)> {
    // One byte covers -64..=63: most lengths, deltas and counts in a batch.
    if let Some(&byte) = b.first() {
        if byte & 0x80 == 0 {
            return Some((unzigzag(byte as u64), 1));
        }
    }
    let mut raw: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((unzigzag(raw), i + 1));
        }
    }
    None
}

#[inline(always)]
fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// `read_varlong` at `*pos`, advancing it. One- and two-byte varints (every
/// length, delta and count in a batch of records under 8 KiB) take the short
/// path: record validation is most of the produce path's CPU.
#[inline(always)]
fn varint_at(b: &[u8], pos: &mut usize) -> Result<i64> {
    let p = *pos;
    if let Some(&b0) = b.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(unzigzag(b0 as u64));
        }
        if let Some(&b1) = b.get(p + 1) {
            if b1 < 0x80 {
                *pos = p + 2;
                return Ok(unzigzag((b0 & 0x7f) as u64 | (b1 as u64) << 7));
            }
        }
    }
    let (v, n) = b.get(p..).and_then(read_varlong).ok_or_else(|| bad("truncated varint"))?;
    *pos = p + n;
    Ok(v)
}

/// The end of a field of `len` bytes at `pos`, if it fits before `limit`.
#[inline(always)]
fn field_end(pos: usize, len: i64, limit: usize, what: &str) -> Result<usize> {
    if len < 0 || len as u64 > (limit - pos) as u64 {
        return Err(overrun(what, len));
    }
    Ok(pos + len as usize)
}

/// Skips a varint-length-prefixed field that may be null (-1).
#[inline(always)]
fn skip_nullable(b: &[u8], pos: &mut usize, what: &str) -> Result<()> {
    let len = varint_at(b, pos)?;
    if len != -1 {
        *pos = field_end(*pos, len, b.len(), what)?;
    }
    Ok(())
}

#[cold]
fn overrun(what: &str, len: i64) -> EngineError {
    bad(&format!("{what} length {len} overruns the record"))
}

#[cold]
fn bad(msg: &str) -> EngineError {
    EngineError::CorruptBatch(msg.to_string())
}

/// One record as laid out in an uncompressed batch body: only the fields the
/// engine needs (offset lookups by timestamp).
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
}

/// Walks `count` records framed back to back in `body`, checking that every
/// length fits and that they fill `body` exactly.
pub fn check_records(body: &[u8], count: i32) -> Result<()> {
    walk_records(body, count, |_| {})
}

/// Calls `f` for each record of an uncompressed batch body, validating framing.
pub fn walk_records(body: &[u8], count: i32, mut f: impl FnMut(RecordMeta)) -> Result<()> {
    let mut pos = 0;
    for i in 0..count as i64 {
        let len = varint_at(body, &mut pos)?;
        let end = field_end(pos, len, body.len(), "record")?;
        let r = &body[..end];
        if pos >= end {
            return Err(bad("empty record"));
        }
        let mut p = pos + 1; // attributes, unused in v2
        let timestamp_delta = varint_at(r, &mut p)?;
        let offset_delta = varint_at(r, &mut p)?;
        if offset_delta != i {
            return Err(EngineError::InvalidBatch(format!("record {i} has offsetDelta {offset_delta}")));
        }
        skip_nullable(r, &mut p, "key")?;
        skip_nullable(r, &mut p, "value")?;
        let headers = varint_at(r, &mut p)?;
        if headers < 0 {
            return Err(bad("negative header count"));
        }
        for _ in 0..headers {
            let key_len = varint_at(r, &mut p)?;
            p = field_end(p, key_len, end, "header key")?;
            skip_nullable(r, &mut p, "header value")?;
        }
        if p != end {
            return Err(bad(&format!("record {i} has {} unread bytes", end - p)));
        }
        f(RecordMeta { offset_delta, timestamp_delta });
        pos = end;
    }
    if pos != body.len() {
        return Err(bad(&format!("{} bytes after the last record", body.len() - pos)));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// Builds a valid uncompressed v2 batch of `count` records with `value_len`-byte
    /// values; timestamps `base_ts + i`. Used by tests across the engine.
    pub fn make_batch(count: i32, value_len: usize, base_ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut r = Vec::new();
            r.push(0u8);
            put_varint(&mut r, i as i64);
            put_varint(&mut r, i as i64);
            put_varint(&mut r, -1); // null key
            put_varint(&mut r, value_len as i64);
            r.extend(std::iter::repeat_n(b'x' ^ (i as u8), value_len));
            put_varint(&mut r, 0);
            put_varint(&mut records, r.len() as i64);
            records.extend_from_slice(&r);
        }
        let mut b = Vec::with_capacity(HEADER_LEN + records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&(base_ts + count as i64 - 1).to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_passes_and_parses() {
        let b = make_batch(5, 10, 1000);
        let h = validate_produced(&b, 1 << 20).unwrap();
        assert_eq!(h.records_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.max_timestamp, 1004);
        assert_eq!(h.total_len(), b.len());
    }

    #[test]
    fn flipped_bit_fails_crc() {
        let mut b = make_batch(3, 10, 0);
        let last = b.len() - 2;
        b[last] ^= 1;
        assert!(matches!(validate_produced(&b, 1 << 20), Err(EngineError::CorruptBatch(_))));
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut b = make_batch(3, 10, 0);
        set_base_offset(&mut b, 12345);
        set_partition_leader_epoch(&mut b, 7);
        let h = check_stored(&b).unwrap();
        assert_eq!(h.base_offset, 12345);
        assert_eq!(h.last_offset(), 12347);
    }

    #[test]
    fn oversized_and_wrong_magic_and_count_mismatch_rejected() {
        let b = make_batch(3, 100, 0);
        assert!(matches!(validate_produced(&b, 100), Err(EngineError::BatchTooLarge { .. })));
        let mut m = b.clone();
        m[16] = 1;
        assert!(matches!(validate_produced(&m, 1 << 20), Err(EngineError::InvalidBatch(_))));
        let mut c = b.clone();
        c[57..61].copy_from_slice(&4i32.to_be_bytes());
        let crc = compute_crc(&c);
        c[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(validate_produced(&c, 1 << 20).is_err());
    }

    #[test]
    fn record_framing_errors_detected_even_with_good_crc() {
        let mut b = make_batch(2, 10, 0);
        // Corrupt the first record's length varint, then fix the CRC so only framing is wrong.
        b[HEADER_LEN] = 0x7e;
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(validate_produced(&b, 1 << 20).is_err());
    }

    #[test]
    fn split_finds_each_batch_and_rejects_truncation() {
        let a = make_batch(1, 5, 0);
        let b = make_batch(2, 7, 0);
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let ranges = split_batches(&all).unwrap();
        assert_eq!(ranges, vec![0..a.len(), a.len()..a.len() + b.len()]);
        assert!(split_batches(&all[..all.len() - 1]).is_err());
        assert!(split_batches(&[]).is_err());
        assert!(split_batches(&[0u8; 5]).is_err());
    }

    #[test]
    fn compressed_batches_cannot_claim_more_records_than_their_bytes_hold() {
        // The 61-byte gzip batch of the review: no body, 2^31-1 records claimed.
        let mut b = make_batch(1, 0, 0);
        b.truncate(HEADER_LEN);
        b[8..12].copy_from_slice(&((HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
        b[21..23].copy_from_slice(&1i16.to_be_bytes()); // gzip
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = validate_produced(&b, 1 << 20).unwrap_err();
        assert!(matches!(err, EngineError::InvalidBatch(ref m) if m.contains("at most 0")), "{err}");
        // 100 compressed bytes of zstd may hold 100 × 32768 / 7 records, not more.
        let mut z = make_batch(1, 100, 0);
        z[21..23].copy_from_slice(&4i16.to_be_bytes());
        let body = (z.len() - HEADER_LEN) as i32;
        let most = body * 32_768 / 7;
        for (count, ok) in [(most, true), (most + 1, false)] {
            z[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            z[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = compute_crc(&z);
            z[17..21].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(validate_produced(&z, 1 << 20).is_ok(), ok, "{count} records");
        }
    }

    /// A stamped batch is still a valid one: the CRC covers the new bytes,
    /// and only the type bit and `maxTimestamp` changed.
    #[test]
    fn a_timestamp_stamp_keeps_the_batch_valid() {
        let b = make_batch(3, 50, 1_000);
        let mut head = b[..STAMP_HEAD_BYTES].to_vec();
        stamp_timestamp(&mut head, &b[STAMP_HEAD_BYTES..], true, 42);
        let stamped = [&head[..], &b[STAMP_HEAD_BYTES..]].concat();
        let h = check_stored(&stamped).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 42);
        let before = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_timestamp, h.records_count, h.compression()), (before.base_timestamp, 3, 0));
        assert_eq!(&stamped[23..35], &b[23..35]);
        assert_eq!(&stamped[STAMP_HEAD_BYTES..], &b[STAMP_HEAD_BYTES..]);
        // And back to CreateTime.
        let mut head2 = stamped[..STAMP_HEAD_BYTES].to_vec();
        stamp_timestamp(&mut head2, &b[STAMP_HEAD_BYTES..], false, before.max_timestamp);
        assert_eq!(&head2[..], &b[..STAMP_HEAD_BYTES]);
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let now = 1_700_000_000_000u64;
        let hour = 3_600_000;
        let h = |base: i64, max: i64, attrs: i16| BatchHeader {
            base_timestamp: base,
            max_timestamp: max,
            attributes: attrs,
            ..BatchHeader::parse(&make_batch(1, 1, 0)).unwrap()
        };
        let n = now as i64;
        assert!(check_timestamps(&h(n, n, 0), now, u64::MAX, hour).is_ok());
        assert!(check_timestamps(&h(-1, -1, 0), now, u64::MAX, hour).is_ok(), "no timestamps");
        assert!(check_timestamps(&h(n, n + hour as i64 + 1, 0), now, u64::MAX, hour).is_err(), "future");
        assert!(check_timestamps(&h(i64::MAX, i64::MAX, 0), now, u64::MAX, u64::MAX).is_ok(), "no overflow");
        assert!(check_timestamps(&h(0, 0, 0), now, hour, hour).is_err(), "too old");
        assert!(
            check_timestamps(&h(0, i64::MAX, 0x08), now, hour, hour).is_err(),
            "a producer's type bit is no way around"
        );
    }

    #[test]
    fn varints_decode() {
        let mut v = Vec::new();
        for x in [0i64, -1, 1, 63, -64, 300, i32::MAX as i64, i64::MIN] {
            v.clear();
            put_varint(&mut v, x);
            assert_eq!(read_varlong(&v), Some((x, v.len())));
        }
        assert_eq!(read_varlong(&[0x80, 0x80]), None);
    }
}

#[cfg(test)]
mod speed {
    use super::tests::make_batch;
    use super::*;

    /// Not a pass/fail test: prints validation cost per record and per KiB
    /// (`cargo test --release -p laminar-engine --lib -- --ignored validation_speed --nocapture`).
    #[test]
    #[ignore = "measurement"]
    fn validation_speed() {
        let b = make_batch(150, 100, 0);
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(validate_produced(std::hint::black_box(&b), usize::MAX).unwrap());
        }
        let per_batch = t.elapsed().as_secs_f64() / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(compute_crc(std::hint::black_box(&b)));
        }
        let crc = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "{} B batch of 150 records: validate {:.2} µs ({:.1} ns/record), of which CRC {:.2} µs",
            b.len(),
            per_batch * 1e6,
            (per_batch - crc) * 1e9 / 150.0,
            crc * 1e6
        );
    }
}

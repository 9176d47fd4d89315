//! Iterates the record batches of a fetch response's `records` bytes and the records inside.
//!
//! A fetch may end with a partial batch (the broker cuts at the byte budget); the reader stops
//! there and reports the leftover via [`BatchReader::truncated_bytes`] instead of failing.
//! Keys, values and headers are zero-copy slices of the fetched (or decompressed) bytes.

use bytes::Bytes;

use crate::batch_builder::{layout, BATCH_HEADER_BYTES};
use crate::compression::{self, Compression};
use crate::error::{Error, Result};
use crate::varint;

/// Default bound on one batch's decompressed size (Kafka's max message size is 1 MiB by default,
/// brokers allow up to a few hundred MiB when configured).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Whether a batch's timestamps are the producer's or the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Reads batches one after another from `data`.
pub struct BatchReader {
    data: Bytes,
    pos: usize,
    verify_crc: bool,
    failed: bool,
}

impl BatchReader {
    pub fn new(data: Bytes) -> Self {
        Self { data, pos: 0, verify_crc: true, failed: false }
    }

    /// Whether to check each batch's CRC-32C (on by default, as in the Java consumer).
    pub fn verify_crc(mut self, verify: bool) -> Self {
        self.verify_crc = verify;
        self
    }

    /// Bytes left over after the last complete batch: a partial batch the broker cut off.
    pub fn truncated_bytes(&self) -> usize {
        self.data.len() - self.pos
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        let rest = &self.data[self.pos..];
        if rest.len() < layout::LENGTH_FIELD_END {
            return None;
        }
        let length = i32::from_be_bytes(rest[layout::LENGTH..layout::PARTITION_LEADER_EPOCH].try_into().ok()?);
        let min_length = (BATCH_HEADER_BYTES - layout::LENGTH_FIELD_END) as i32;
        if length < min_length {
            // Magic 0/1 messages are shorter; both cases are unreadable here.
            return Some(Err(Error::Batch(format!("batch length {length} is below the minimum {min_length}"))));
        }
        let total = layout::LENGTH_FIELD_END + length as usize;
        if rest.len() < total {
            return None; // Partial trailing batch.
        }
        let raw = self.data.slice(self.pos..self.pos + total);
        self.pos += total;
        Some(RecordBatch::parse(raw, self.verify_crc))
    }
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_batch();
        if matches!(item, Some(Err(_))) {
            self.failed = true; // After a framing error the position is meaningless.
        }
        item
    }
}

/// One v2 record batch: the header fields and the (possibly compressed) records section.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    /// The whole batch as received.
    pub raw: Bytes,
}

impl RecordBatch {
    /// Parses a complete batch (`raw` spans exactly one batch).
    pub fn parse(raw: Bytes, verify_crc: bool) -> Result<Self> {
        if raw.len() < BATCH_HEADER_BYTES {
            return Err(Error::Batch(format!("batch of {} bytes is shorter than its header", raw.len())));
        }
        let magic = raw[layout::MAGIC] as i8;
        if magic != 2 {
            return Err(Error::Batch(format!("record batch magic {magic} is not supported (only 2)")));
        }
        let i16_at = |at: usize| i16::from_be_bytes([raw[at], raw[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let i64_at = |at: usize| i64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let crc = i32_at(layout::CRC) as u32;
        if verify_crc {
            let actual = crc32c::crc32c(&raw[layout::ATTRIBUTES..]);
            if actual != crc {
                return Err(Error::Batch(format!("CRC mismatch: batch says {crc:#010x}, content is {actual:#010x}")));
            }
        }
        let batch = RecordBatch {
            base_offset: i64_at(layout::BASE_OFFSET),
            partition_leader_epoch: i32_at(layout::PARTITION_LEADER_EPOCH),
            crc,
            attributes: i16_at(layout::ATTRIBUTES),
            last_offset_delta: i32_at(layout::LAST_OFFSET_DELTA),
            base_timestamp_ms: i64_at(layout::BASE_TIMESTAMP),
            max_timestamp_ms: i64_at(layout::MAX_TIMESTAMP),
            producer_id: i64_at(layout::PRODUCER_ID),
            producer_epoch: i16_at(layout::PRODUCER_EPOCH),
            base_sequence: i32_at(layout::BASE_SEQUENCE),
            record_count: i32_at(layout::RECORD_COUNT),
            raw,
        };
        if batch.record_count < 0 || batch.last_offset_delta < 0 {
            return Err(Error::Batch("negative record count or offset delta".into()));
        }
        Ok(batch)
    }

    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Control batches carry transaction markers, not application records.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset a consumer continues from after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The records, decompressing with the default bound.
    pub fn records(&self) -> Result<Records> {
        self.records_bounded(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// The records, refusing to decompress more than `max_decompressed_bytes`.
    pub fn records_bounded(&self, max_decompressed_bytes: usize) -> Result<Records> {
        let section = self.raw.slice(BATCH_HEADER_BYTES..);
        let data = match self.compression()? {
            Compression::None => section,
            codec => Bytes::from(compression::decompress(codec, &section, max_decompressed_bytes)?),
        };
        let log_append_time_ms =
            (self.timestamp_type() == TimestampType::LogAppendTime).then_some(self.max_timestamp_ms);
        Ok(Records {
            data,
            pos: 0,
            remaining: self.record_count,
            base_offset: self.base_offset,
            base_timestamp_ms: self.base_timestamp_ms,
            log_append_time_ms,
        })
    }
}

/// The records of one batch, in order.
pub struct Records {
    data: Bytes,
    pos: usize,
    remaining: i32,
    base_offset: i64,
    base_timestamp_ms: i64,
    log_append_time_ms: Option<i64>,
}

/// One record. `timestamp_ms` is the broker's when the batch uses LogAppendTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Headers,
}

impl Records {
    fn parse_next(&mut self) -> Result<Record> {
        let mut cur = Cursor { data: &self.data, pos: self.pos };
        let length = cur.varint()?;
        if length < 0 || length as usize > cur.remaining() {
            return Err(Error::Batch(format!("record length {length} exceeds the batch")));
        }
        let end = cur.pos + length as usize;
        let _attributes = cur.byte()?;
        let timestamp_delta = cur.varint()?;
        let offset_delta = cur.varint()?;
        let key = cur.nullable_bytes(&self.data)?;
        let value = cur.nullable_bytes(&self.data)?;
        let header_count = cur.varint()?;
        if header_count < 0 {
            return Err(Error::Batch(format!("negative header count {header_count}")));
        }
        let headers_start = cur.pos;
        for _ in 0..header_count {
            let key_len = cur.varint()?;
            if key_len < 0 {
                return Err(Error::Batch("null header key".into()));
            }
            cur.skip(key_len as usize)?;
            let value_len = cur.varint()?;
            if value_len >= 0 {
                cur.skip(value_len as usize)?;
            }
        }
        if cur.pos != end {
            return Err(Error::Batch(format!("record fields end at {} but its length says {end}", cur.pos)));
        }
        self.pos = end;
        Ok(Record {
            offset: self.base_offset + offset_delta,
            timestamp_ms: self.log_append_time_ms.unwrap_or(self.base_timestamp_ms + timestamp_delta),
            key,
            value,
            headers: Headers { data: self.data.slice(headers_start..end), count: header_count as usize },
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        let item = self.parse_next();
        if item.is_err() {
            self.remaining = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining.max(0) as usize))
    }
}

/// A record's headers, parsed lazily (the bytes were validated when the record was read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    data: Bytes,
    count: usize,
}

impl Headers {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// (key, value) pairs; keys are bytes because Kafka does not check that they are UTF-8.
    pub fn iter(&self) -> impl Iterator<Item = (Bytes, Option<Bytes>)> + '_ {
        let mut cur = Cursor { data: &self.data, pos: 0 };
        (0..self.count).map_while(move |_| {
            let key = cur.nullable_bytes(&self.data).ok()??;
            let value = cur.nullable_bytes(&self.data).ok()?;
            Some((key, value))
        })
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or_else(|| Error::Batch("record ends early".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<i64> {
        let (value, used) =
            varint::get(&self.data[self.pos..]).ok_or_else(|| Error::Batch("bad varint in record".into()))?;
        self.pos += used;
        Ok(value)
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::Batch("record field runs past the batch".into()));
        }
        self.pos += n;
        Ok(())
    }

    /// A varint length (-1 = null) followed by that many bytes, sliced out of `owner`.
    fn nullable_bytes(&mut self, owner: &Bytes) -> Result<Option<Bytes>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let start = self.pos;
        self.skip(len as usize)?;
        Ok(Some(owner.slice(start..self.pos)))
    }
}

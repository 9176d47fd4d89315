//! Writes Kafka v2 (magic 2) record batches straight into a reusable buffer.
//!
//! Appending a record computes its encoded length first (so the leading length varint is
//! written once, in place) and copies key, value and headers into the buffer: no allocation
//! per record. Compressed batches compress the records section once, at `finish`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::compression::{Compression, Compressor};
use crate::error::{Error, Result};
use crate::varint;

/// Bytes before the first record: baseOffset .. recordCount.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Byte offsets of batch header fields (Kafka's DefaultRecordBatch layout).
pub(crate) mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    /// The CRC covers everything from the attributes to the end of the batch.
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    /// Bytes counted by the length field are those after it.
    pub const LENGTH_FIELD_END: usize = 12;
}

/// A record header as appended: Kafka header keys are strings, values nullable bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Identity of an idempotent producer, written into the batch header. Defaults to "none" (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl Default for ProducerIdentity {
    fn default() -> Self {
        Self { producer_id: -1, producer_epoch: -1, base_sequence: -1 }
    }
}

pub struct BatchBuilder {
    compression: Compression,
    compressor: Compressor,
    /// Header placeholder followed by the uncompressed records. Uncompressed batches are split
    /// off this buffer; its capacity is reclaimed once the caller drops the batch.
    buf: BytesMut,
    /// Compressed batches are assembled here and split off.
    out: BytesMut,
    record_count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    producer: ProducerIdentity,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 16 * 1024)
    }

    /// `capacity_bytes` is a hint: the expected uncompressed size of one batch.
    pub fn with_capacity(compression: Compression, capacity_bytes: usize) -> Self {
        Self {
            compression,
            compressor: Compressor::new(),
            buf: BytesMut::with_capacity(capacity_bytes.max(BATCH_HEADER_BYTES)),
            out: BytesMut::new(),
            record_count: 0,
            base_timestamp_ms: 0,
            max_timestamp_ms: 0,
            producer: ProducerIdentity::default(),
        }
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Sets the idempotent-producer fields for the next batch (kept across batches).
    pub fn set_producer(&mut self, producer: ProducerIdentity) {
        self.producer = producer;
    }

    pub fn record_count(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Uncompressed size of the batch so far, header included.
    pub fn size_bytes(&self) -> usize {
        if self.record_count == 0 {
            0
        } else {
            self.buf.len()
        }
    }

    /// Appends one record.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) -> Result<()> {
        let value_len = value.map(|v| v.len());
        self.append_raw(timestamp_ms, key, value_len, headers, |dst| {
            if let (Some(v), Some(dst)) = (value, dst) {
                dst.copy_from_slice(v);
            }
        })
    }

    /// Appends one record whose `value_len`-byte value is written in place by `fill`, which
    /// saves the caller a staging buffer.
    pub fn append_with(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value_len: usize,
        headers: &[RecordHeader<'_>],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        self.append_raw(timestamp_ms, key, Some(value_len), headers, |dst| fill(dst.expect("value is present")))
    }

    fn append_raw(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value_len: Option<usize>,
        headers: &[RecordHeader<'_>],
        fill: impl FnOnce(Option<&mut [u8]>),
    ) -> Result<()> {
        if self.record_count == i32::MAX {
            return Err(Error::Batch("a batch holds at most i32::MAX records".into()));
        }
        if self.record_count == 0 {
            self.buf.clear();
            self.buf.put_bytes(0, BATCH_HEADER_BYTES);
            self.base_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        let timestamp_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = i64::from(self.record_count);

        let body_len = 1
            + varint::len(timestamp_delta)
            + varint::len(offset_delta)
            + nullable_len(key.map(|k| k.len()))
            + nullable_len(value_len)
            + varint::len(headers.len() as i64)
            + headers
                .iter()
                .map(|h| nullable_len(Some(h.key.len())) + nullable_len(h.value.map(|v| v.len())))
                .sum::<usize>();
        if body_len > i32::MAX as usize {
            return Err(Error::Batch(format!("record of {body_len} bytes is too large")));
        }

        let buf = &mut self.buf;
        buf.reserve(varint::len(body_len as i64) + body_len);
        let start = buf.len();
        varint::put(buf, body_len as i64);
        buf.put_u8(0); // record attributes: unused in magic 2
        varint::put(buf, timestamp_delta);
        varint::put(buf, offset_delta);
        put_nullable(buf, key);
        match value_len {
            None => varint::put(buf, -1),
            Some(len) => {
                varint::put(buf, len as i64);
                let at = buf.len();
                buf.put_bytes(0, len);
                fill(Some(&mut buf[at..at + len]));
            }
        }
        varint::put(buf, headers.len() as i64);
        for header in headers {
            put_nullable(buf, Some(header.key.as_bytes()));
            put_nullable(buf, header.value);
        }
        debug_assert_eq!(buf.len() - start, varint::len(body_len as i64) + body_len);

        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        Ok(())
    }

    /// Completes the batch and returns it; the builder is left empty and ready for the next.
    /// Fails on an empty builder: Kafka batches hold at least one record.
    pub fn finish(&mut self) -> Result<Bytes> {
        if self.record_count == 0 {
            return Err(Error::Batch("cannot finish an empty batch".into()));
        }
        let fields = HeaderFields {
            attributes: self.compression as i16,
            last_offset_delta: self.record_count - 1,
            base_timestamp_ms: self.base_timestamp_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            producer: self.producer,
            record_count: self.record_count,
        };
        self.record_count = 0;
        if self.producer.base_sequence >= 0 {
            // Sequences advance per record and wrap past i32::MAX to 0, as Kafka's do.
            self.producer.base_sequence = self.producer.base_sequence.wrapping_add(fields.record_count) & i32::MAX;
        }

        let batch = if self.compression == Compression::None {
            write_header(&mut self.buf, &fields);
            self.buf.split().freeze()
        } else {
            self.out.clear();
            self.out.reserve(self.buf.len() / 2 + BATCH_HEADER_BYTES);
            self.out.put_bytes(0, BATCH_HEADER_BYTES);
            let result = self.compressor.compress(self.compression, &self.buf[BATCH_HEADER_BYTES..], &mut self.out);
            self.buf.clear();
            result?;
            write_header(&mut self.out, &fields);
            self.out.split().freeze()
        };
        Ok(batch)
    }

    /// Drops the records appended since the last `finish`.
    pub fn clear(&mut self) {
        self.record_count = 0;
        self.buf.clear();
    }
}

struct HeaderFields {
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    producer: ProducerIdentity,
    record_count: i32,
}

fn write_header(batch: &mut [u8], f: &HeaderFields) {
    use layout::*;
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    let length = (batch.len() - LENGTH_FIELD_END) as i32;
    batch[BASE_OFFSET..LENGTH].copy_from_slice(&0i64.to_be_bytes());
    batch[LENGTH..PARTITION_LEADER_EPOCH].copy_from_slice(&length.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..MAGIC].copy_from_slice(&(-1i32).to_be_bytes());
    batch[MAGIC] = 2;
    batch[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&f.attributes.to_be_bytes());
    batch[LAST_OFFSET_DELTA..BASE_TIMESTAMP].copy_from_slice(&f.last_offset_delta.to_be_bytes());
    batch[BASE_TIMESTAMP..MAX_TIMESTAMP].copy_from_slice(&f.base_timestamp_ms.to_be_bytes());
    batch[MAX_TIMESTAMP..PRODUCER_ID].copy_from_slice(&f.max_timestamp_ms.to_be_bytes());
    batch[PRODUCER_ID..PRODUCER_EPOCH].copy_from_slice(&f.producer.producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..BASE_SEQUENCE].copy_from_slice(&f.producer.producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE..RECORD_COUNT].copy_from_slice(&f.producer.base_sequence.to_be_bytes());
    batch[RECORD_COUNT..BATCH_HEADER_BYTES].copy_from_slice(&f.record_count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
}

#[inline]
fn nullable_len(len: Option<usize>) -> usize {
    match len {
        None => varint::len(-1),
        Some(n) => varint::len(n as i64) + n,
    }
}

#[inline]
fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put(buf, -1),
        Some(b) => {
            varint::put(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

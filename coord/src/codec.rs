//! Binary encoding of one committed txn (a journal record's payload) and of a
//! snapshot's payload. Little-endian, length-prefixed, no padding; see README.md.
//! Decoding checks every length against the bytes present and the stated limits, so
//! a damaged input is an error, never a panic or a huge allocation.

use std::collections::BTreeMap;

use crate::limits::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use crate::{LeaseId, Versioned};

/// First byte of every journal record payload; bumped if the encoding changes.
/// Format 2 adds the lease of each put; format 1 records (no leases) still decode.
pub(crate) const RECORD_FORMAT: u8 = 2;
const RECORD_FORMAT_V1: u8 = 1;
/// What a journal record may hold when decoded. Wider than today's request
/// limits (`limits.rs`): journals written when the store allowed 10,000 ops and
/// 16 MiB per txn must still replay.
const DECODE_OPS_MAX: usize = 10_000;
const DECODE_TXN_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Format byte, revision, op count.
pub(crate) const RECORD_HEADER_BYTES: usize = 1 + 8 + 4;
/// Largest payload a valid txn can encode to (tag + two lengths per op).
pub(crate) const RECORD_PAYLOAD_MAX: usize = RECORD_HEADER_BYTES + DECODE_OPS_MAX * 17 + DECODE_TXN_BYTES_MAX;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_PREFIX: u8 = 3;

/// Snapshot bytes per live entry besides key and value: key length, version,
/// create revision, lease, value length. Also the unit of the live-size
/// estimate that paces compaction.
pub(crate) const SNAPSHOT_ENTRY_OVERHEAD_BYTES: u64 = 4 + 8 + 8 + 8 + 4;

/// Live keys and their values, as held in memory and in a snapshot.
pub(crate) type Entries = BTreeMap<String, Versioned>;

/// A write as journaled. `DeletePrefix` is one op, not one per key, so a prefix
/// delete stays one small record however many keys it removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JournalOp {
    Put { key: String, value: Vec<u8>, lease: LeaseId },
    Delete { key: String },
    DeletePrefix { prefix: String },
}

/// One committed txn: every op in it carries `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnRecord {
    pub revision: u64,
    pub ops: Vec<JournalOp>,
}

pub(crate) fn encode_txn(revision: u64, ops: &[JournalOp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + ops.iter().map(op_bytes).sum::<usize>());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&revision.to_le_bytes());
    put_len(&mut out, ops.len());
    for op in ops {
        match op {
            JournalOp::Put { key, value, lease } => {
                out.push(TAG_PUT);
                put_bytes(&mut out, key.as_bytes());
                put_bytes(&mut out, value);
                out.extend_from_slice(&lease.to_le_bytes());
            }
            JournalOp::Delete { key } => {
                out.push(TAG_DELETE);
                put_bytes(&mut out, key.as_bytes());
            }
            JournalOp::DeletePrefix { prefix } => {
                out.push(TAG_DELETE_PREFIX);
                put_bytes(&mut out, prefix.as_bytes());
            }
        }
    }
    debug_assert!(out.len() <= RECORD_PAYLOAD_MAX, "txn checked against limits before encoding");
    out
}

fn op_bytes(op: &JournalOp) -> usize {
    match op {
        JournalOp::Put { key, value, .. } => 17 + key.len() + value.len(),
        JournalOp::Delete { key } => 5 + key.len(),
        JournalOp::DeletePrefix { prefix } => 5 + prefix.len(),
    }
}

/// The revision of a payload, read without decoding the rest (used when hunting
/// for valid records past a damaged one).
pub(crate) fn peek_revision(payload: &[u8]) -> Option<u64> {
    if payload.len() < RECORD_HEADER_BYTES || !matches!(payload[0], RECORD_FORMAT | RECORD_FORMAT_V1) {
        return None;
    }
    Some(u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes")))
}

pub(crate) fn decode_txn(payload: &[u8]) -> Result<TxnRecord, String> {
    let mut r = Reader { buf: payload, pos: 0 };
    let format = r.u8()?;
    if format != RECORD_FORMAT && format != RECORD_FORMAT_V1 {
        return Err(format!("unknown record format {format} (this build reads up to {RECORD_FORMAT})"));
    }
    let revision = r.u64()?;
    let count = r.u32()? as usize;
    if count > DECODE_OPS_MAX {
        return Err(format!("record claims {count} ops, over the limit of {DECODE_OPS_MAX}"));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let op = match r.u8()? {
            TAG_PUT => {
                let key = r.key()?;
                let value = r.bytes(VALUE_BYTES_MAX)?.to_vec();
                let lease = if format == RECORD_FORMAT_V1 { 0 } else { r.u64()? as i64 };
                JournalOp::Put { key, value, lease }
            }
            TAG_DELETE => JournalOp::Delete { key: r.key()? },
            TAG_DELETE_PREFIX => JournalOp::DeletePrefix { prefix: r.key()? },
            tag => return Err(format!("unknown op tag {tag}")),
        };
        ops.push(op);
    }
    r.finish()?;
    Ok(TxnRecord { revision, ops })
}

pub(crate) fn encode_snapshot(revision: u64, entries: &Entries) -> Vec<u8> {
    let body: u64 = entries.iter().map(|(k, v)| entry_bytes(k, &v.value)).sum();
    let mut out = Vec::with_capacity(16 + body as usize);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, v) in entries {
        put_bytes(&mut out, key.as_bytes());
        out.extend_from_slice(&v.version.to_le_bytes());
        out.extend_from_slice(&v.create_revision.to_le_bytes());
        out.extend_from_slice(&v.lease.to_le_bytes());
        put_bytes(&mut out, &v.value);
    }
    out
}

/// Bytes one live entry takes in a snapshot.
pub(crate) fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    SNAPSHOT_ENTRY_OVERHEAD_BYTES + key.len() as u64 + value.len() as u64
}

/// Decodes a snapshot payload. `with_history` is false for format-1 snapshots,
/// which kept no create revision or lease (each key counts as created at its
/// version, unleased).
pub(crate) fn decode_snapshot(payload: &[u8], with_history: bool) -> Result<(u64, Entries), String> {
    let mut r = Reader { buf: payload, pos: 0 };
    let revision = r.u64()?;
    let count = r.u64()?;
    let mut entries = BTreeMap::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let key = r.key()?;
        let version = r.u64()?;
        let (create_revision, lease) = if with_history { (r.u64()?, r.u64()? as i64) } else { (version, 0) };
        let value = r.bytes(VALUE_BYTES_MAX)?.to_vec();
        if version == 0 || version > revision {
            return Err(format!("key {key:?} has version {version}, outside 1..={revision}"));
        }
        if create_revision == 0 || create_revision > version {
            return Err(format!("key {key:?} has create revision {create_revision}, outside 1..={version}"));
        }
        if previous.as_ref().is_some_and(|p| *p >= key) {
            return Err(format!("key {key:?} out of order"));
        }
        previous = Some(key.clone());
        entries.insert(key, Versioned { value, version, create_revision, lease });
    }
    r.finish()?;
    Ok((revision, entries))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).expect("lengths are bounded by limits").to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(format!("field of {n} bytes at payload byte {} but only {left} left", self.pos));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self, max: usize) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(format!("field of {len} bytes over the limit of {max}"));
        }
        self.take(len)
    }

    fn key(&mut self) -> Result<String, String> {
        let bytes = self.bytes(KEY_BYTES_MAX)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "key is not UTF-8".to_string())
    }

    fn finish(&self) -> Result<(), String> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(format!("{extra} unexpected bytes after the last field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_round_trips() {
        let ops = vec![
            JournalOp::Put { key: "a".into(), value: b"1".to_vec(), lease: 0 },
            JournalOp::Put { key: "empty".into(), value: vec![], lease: 7 },
            JournalOp::Delete { key: "b".into() },
            JournalOp::DeletePrefix { prefix: "".into() },
        ];
        let payload = encode_txn(42, &ops);
        assert_eq!(peek_revision(&payload), Some(42));
        assert_eq!(decode_txn(&payload).unwrap(), TxnRecord { revision: 42, ops });
    }

    #[test]
    fn txn_decode_rejects_damage() {
        let payload = encode_txn(7, &[JournalOp::Put { key: "k".into(), value: b"v".to_vec(), lease: 0 }]);
        assert!(decode_txn(&payload[..payload.len() - 1]).is_err());
        let mut extra = payload.clone();
        extra.push(0);
        assert!(decode_txn(&extra).is_err());
        let mut bad_tag = payload.clone();
        bad_tag[RECORD_HEADER_BYTES] = 9;
        assert!(decode_txn(&bad_tag).is_err());
        let mut bad_format = payload;
        bad_format[0] = 3;
        assert!(decode_txn(&bad_format).is_err());
    }

    #[test]
    fn snapshot_round_trips_and_checks_order() {
        let mut entries = BTreeMap::new();
        entries.insert("a".to_string(), Versioned::new(b"x".to_vec(), 3));
        entries.insert("b".to_string(), Versioned { value: vec![], version: 9, create_revision: 4, lease: 77 });
        let payload = encode_snapshot(9, &entries);
        let expected_len = 16 + entries.iter().map(|(k, v)| entry_bytes(k, &v.value)).sum::<u64>();
        assert_eq!(payload.len() as u64, expected_len);
        assert_eq!(decode_snapshot(&payload, true).unwrap(), (9, entries.clone()));
        // A version above the snapshot revision is impossible.
        assert!(decode_snapshot(&encode_snapshot(8, &entries), true).is_err());
    }

    #[test]
    fn format_1_records_still_decode() {
        // A put as format 1 wrote it: no lease after the value.
        let mut payload = vec![RECORD_FORMAT_V1];
        payload.extend_from_slice(&5u64.to_le_bytes());
        put_len(&mut payload, 1);
        payload.push(TAG_PUT);
        put_bytes(&mut payload, b"k");
        put_bytes(&mut payload, b"v");
        assert_eq!(peek_revision(&payload), Some(5));
        let ops = vec![JournalOp::Put { key: "k".into(), value: b"v".to_vec(), lease: 0 }];
        assert_eq!(decode_txn(&payload).unwrap(), TxnRecord { revision: 5, ops });
    }
}

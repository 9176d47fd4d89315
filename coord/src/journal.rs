//! The append-only journal: one framed record per committed txn,
//! `[u32 len][u32 crc32c(payload)][payload]` little-endian, fdatasynced before the
//! write is acknowledged. Recovery reads it front to back; see [`scan`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::codec::{self, TxnRecord, RECORD_HEADER_BYTES, RECORD_PAYLOAD_MAX};
use crate::CoordError;

pub(crate) const JOURNAL_FILE: &str = "journal";
pub(crate) const JOURNAL_TMP: &str = "journal.tmp";
/// Length and checksum in front of every payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;

pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("payloads are bounded by RECORD_PAYLOAD_MAX");
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes one record at `offset`, the end of the valid journal, and makes it
/// durable; returns the new end. Writing at an explicit offset (not `O_APPEND`)
/// means a failed earlier attempt's partial bytes are overwritten, never built on.
pub(crate) fn append(file: &File, offset: u64, payload: &[u8]) -> io::Result<u64> {
    assert!(payload.len() <= RECORD_PAYLOAD_MAX, "txn checked against limits before encoding");
    let record = frame(payload);
    file.write_all_at(&record, offset)?;
    file.sync_data()?;
    Ok(offset + record.len() as u64)
}

/// Creates an empty, synced `journal.tmp` and renames it over `journal`, returning
/// the open file. An error means the rename did not happen and the old journal is
/// still in place. The caller must sync the directory to make the rename durable.
pub(crate) fn create_empty(dir: &Path) -> Result<File, CoordError> {
    let tmp = dir.join(JOURNAL_TMP);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(CoordError::io(format!("creating {}", tmp.display())))?;
    file.sync_all().map_err(CoordError::io(format!("syncing {}", tmp.display())))?;
    let dest = dir.join(JOURNAL_FILE);
    fs::rename(&tmp, &dest).map_err(CoordError::io(format!("renaming {} to {}", tmp.display(), dest.display())))?;
    Ok(file)
}

/// What a scan found past the last whole record.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// Bytes of whole, valid records from the start of the journal.
    pub valid_bytes: u64,
    /// Why the bytes after `valid_bytes` (if any) were not a record.
    pub torn: Option<String>,
}

/// Reads every record in `buf` in order, handing each and its byte offset to
/// `apply`. Record revisions
/// must be consecutive. Stops at the first spot that is not a whole valid record:
/// if no valid record follows it anywhere, that is the torn tail of a write that
/// was never acknowledged (we sync after every record, so at most one can be torn)
/// and the caller truncates it; if a valid record does follow, acknowledged data
/// sits behind the damage, and that is [`CoordError::Corrupt`] rather than a silent
/// loss.
pub(crate) fn scan(
    path: &Path,
    buf: &[u8],
    mut apply: impl FnMut(u64, TxnRecord) -> Result<(), CoordError>,
) -> Result<Scanned, CoordError> {
    let corrupt =
        |offset: usize, reason: String| CoordError::Corrupt { path: path.to_path_buf(), offset: offset as u64, reason };
    let mut pos = 0usize;
    let mut last_revision: Option<u64> = None;
    while pos < buf.len() {
        let payload = match frame_at(buf, pos) {
            Ok(payload) => payload,
            Err(reason) => {
                if let Some(next) = find_valid_record(buf, pos + 1, last_revision.unwrap_or(0)) {
                    return Err(corrupt(pos, format!("{reason}, yet a valid record follows at byte {next}")));
                }
                return Ok(Scanned { valid_bytes: pos as u64, torn: Some(reason) });
            }
        };
        // The checksum matched, so these are the bytes we wrote: a decode failure
        // or a revision gap is a bug or foreign data, not a torn write.
        let record = codec::decode_txn(payload).map_err(|reason| corrupt(pos, reason))?;
        if let Some(last) = last_revision {
            if record.revision != last + 1 {
                return Err(corrupt(pos, format!("record has revision {} after revision {last}", record.revision)));
            }
        }
        last_revision = Some(record.revision);
        apply(pos as u64, record)?;
        pos += FRAME_HEADER_BYTES + payload.len();
    }
    Ok(Scanned { valid_bytes: pos as u64, torn: None })
}

/// The payload of the whole, checksum-valid record at `pos`, or why there is none.
fn frame_at(buf: &[u8], pos: usize) -> Result<&[u8], String> {
    let rest = &buf[pos..];
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(format!("incomplete record header ({} of {FRAME_HEADER_BYTES} bytes)", rest.len()));
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if !(RECORD_HEADER_BYTES..=RECORD_PAYLOAD_MAX).contains(&len) {
        return Err(format!("impossible record length {len}"));
    }
    let available = rest.len() - FRAME_HEADER_BYTES;
    if len > available {
        return Err(format!("incomplete record ({available} of {len} payload bytes)"));
    }
    let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
    if crc32c::crc32c(payload) != crc {
        return Err("record checksum mismatch".to_string());
    }
    Ok(payload)
}

/// The offset of any valid record at or after `from` with a revision above
/// `min_revision`. Checks the cheap fields first so a long run of garbage costs
/// few checksum computations.
fn find_valid_record(buf: &[u8], from: usize, min_revision: u64) -> Option<usize> {
    let last_start = buf.len().checked_sub(FRAME_HEADER_BYTES + RECORD_HEADER_BYTES)?;
    (from..=last_start).find(|&pos| {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if !(RECORD_HEADER_BYTES..=RECORD_PAYLOAD_MAX).contains(&len) || len > buf.len() - pos - FRAME_HEADER_BYTES {
            return false;
        }
        let payload = &buf[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len];
        codec::peek_revision(payload).is_some_and(|rev| rev > min_revision) && frame_at(buf, pos).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_txn, JournalOp};

    fn record(revision: u64) -> Vec<u8> {
        frame(&encode_txn(revision, &[JournalOp::Put { key: format!("k{revision}"), value: vec![7; 20], lease: 0 }]))
    }

    fn scan_all(buf: &[u8]) -> Result<(Vec<u64>, Scanned), CoordError> {
        let mut revisions = Vec::new();
        let scanned = scan(Path::new("journal"), buf, |_, r| {
            revisions.push(r.revision);
            Ok(())
        })?;
        Ok((revisions, scanned))
    }

    #[test]
    fn scans_whole_records() {
        let buf = [record(1), record(2), record(3)].concat();
        let (revs, scanned) = scan_all(&buf).unwrap();
        assert_eq!(revs, vec![1, 2, 3]);
        assert_eq!(scanned.valid_bytes, buf.len() as u64);
        assert!(scanned.torn.is_none());
        let (revs, scanned) = scan_all(&[]).unwrap();
        assert!(revs.is_empty() && scanned.valid_bytes == 0 && scanned.torn.is_none());
    }

    #[test]
    fn every_prefix_of_a_record_is_a_torn_tail() {
        let first = record(1);
        let buf = [first.clone(), record(2)].concat();
        for cut in first.len()..buf.len() {
            let (revs, scanned) = scan_all(&buf[..cut]).unwrap();
            assert_eq!(revs, vec![1]);
            assert_eq!(scanned.valid_bytes, first.len() as u64);
            assert_eq!(scanned.torn.is_some(), cut > first.len());
        }
    }

    #[test]
    fn damage_before_a_valid_record_is_corrupt() {
        let mut buf = [record(1), record(2), record(3)].concat();
        let second = record(1).len();
        buf[second + FRAME_HEADER_BYTES + 3] ^= 0x40;
        let err = scan_all(&buf).unwrap_err();
        assert!(matches!(err, CoordError::Corrupt { offset, .. } if offset == second as u64), "{err}");
    }

    #[test]
    fn revision_gap_is_corrupt() {
        let buf = [record(1), record(3)].concat();
        assert!(matches!(scan_all(&buf), Err(CoordError::Corrupt { .. })));
    }
}

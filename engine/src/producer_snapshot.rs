//! Producer-state snapshot files and the recovery that uses them.
//!
//! `<20-digit offset>.snapshot` holds the producer table as of log end offset
//! `offset` (written when a segment rolls and on clean close; the newest two
//! are kept). Recovery loads the newest valid one at or below the log end and
//! replays the headers of the batches after it; without one, it replays every
//! segment's headers.
//!
//! Layout (big-endian):
//! ```text
//!  0 version u16 (=1) | 2 crc u32 (CRC-32C of bytes 6..end) | 6 offset u64 | 14 producers u32
//! 18 per producer: producer_id i64 | epoch i16 | last_append_ms u64 | batches u8 (1..=5)
//!                  then per batch, oldest first:
//!                  first_seq i32 | last_seq i32 | base_offset u64 | last_offset u64 | max_timestamp i64
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::durable;
use crate::producer_state::{BatchMeta, ProducerEntry, ProducerStates, BATCHES_RETAINED};
use crate::segment::{file_stem, Segment};

const VERSION: u16 = 1;
const HEADER_BYTES: usize = 18;
const ENTRY_BYTES: usize = 19;
const BATCH_BYTES: usize = 32;
const SUFFIX: &str = ".snapshot";
/// Snapshots kept: the newest, and one more in case the newest is damaged.
const KEEP: usize = 2;

pub fn path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{}{SUFFIX}", file_stem(offset)))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(off) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)).and_then(|s| s.parse().ok()) {
            out.push(off);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn encode(offset: u64, entries: &[(i64, ProducerEntry)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES + entries.len() * (ENTRY_BYTES + BATCH_BYTES));
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&offset.to_be_bytes());
    let with_batches: Vec<_> = entries.iter().filter(|(_, e)| !e.batches().is_empty()).collect();
    b.extend_from_slice(&(with_batches.len() as u32).to_be_bytes());
    for (pid, e) in with_batches {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&e.epoch.to_be_bytes());
        b.extend_from_slice(&e.last_append_ms.to_be_bytes());
        b.push(e.batches().len() as u8);
        for m in e.batches() {
            b.extend_from_slice(&m.first_seq.to_be_bytes());
            b.extend_from_slice(&m.last_seq.to_be_bytes());
            b.extend_from_slice(&m.base_offset.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
            b.extend_from_slice(&m.max_timestamp.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b[6..]);
    b[2..6].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads fixed-width big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().unwrap())
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

/// Decodes and checks a snapshot: (offset, entries).
pub fn decode(b: &[u8]) -> Result<(u64, Vec<(i64, ProducerEntry)>), String> {
    if b.len() < HEADER_BYTES {
        return Err(format!("{} bytes is shorter than a snapshot header", b.len()));
    }
    let mut r = Reader(b);
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION {
        return Err(format!("version {version} (expected {VERSION})"));
    }
    let crc = r.u32()?;
    if crc != crc32c::crc32c(&b[6..]) {
        return Err("CRC-32C mismatch".into());
    }
    let offset = r.u64()?;
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(b.len() / ENTRY_BYTES));
    for _ in 0..count {
        let pid = r.i64()?;
        let epoch = r.i16()?;
        let mut entry = ProducerEntry::new(epoch, r.u64()?);
        let n = r.u8()? as usize;
        if !(1..=BATCHES_RETAINED).contains(&n) {
            return Err(format!("producer {pid} has {n} batches"));
        }
        for _ in 0..n {
            let m = BatchMeta {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.u64()?,
                last_offset: r.u64()?,
                max_timestamp: r.i64()?,
            };
            entry.push(epoch, m, entry.last_append_ms);
        }
        out.push((pid, entry));
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the last producer", r.0.len()));
    }
    Ok((offset, out))
}

/// Writes the snapshot for `offset` (tmp file, fsync, rename, fsync of the
/// directory), then deletes all but the newest [`KEEP`].
pub fn write(dir: &Path, offset: u64, entries: &[(i64, ProducerEntry)]) -> io::Result<()> {
    let final_path = path(dir, offset);
    let tmp = dir.join(format!("{}{SUFFIX}.tmp", file_stem(offset)));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&encode(offset, entries))?;
        durable::sync_data(&f)?;
    }
    durable::rename(&tmp, &final_path)?;
    durable::sync_dir(dir)?;
    let all = list(dir)?;
    for old in &all[..all.len().saturating_sub(KEEP)] {
        remove(dir, *old)?;
    }
    Ok(())
}

/// Deletes every snapshot (the log restarts empty); durable once the
/// directory is synced.
pub fn remove_all(dir: &Path) -> io::Result<()> {
    for offset in list(dir)? {
        remove(dir, offset)?;
    }
    Ok(())
}

fn remove(dir: &Path, offset: u64) -> io::Result<()> {
    match durable::remove_file(&path(dir, offset)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What rebuilding the producer table on open did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecovery {
    /// Offset of the snapshot loaded, if any.
    pub snapshot_offset: Option<u64>,
    /// Batch headers read from the log after the snapshot.
    pub batches_replayed: u64,
    pub producers: usize,
    pub elapsed_us: u64,
}

/// Rebuilds the producer table for a log ending at `log_end`: newest valid
/// snapshot at or below it, then the headers of every batch after it.
/// Snapshots past the log end (the log was cut back) or damaged are deleted.
pub fn recover(
    dir: &Path,
    segments: &BTreeMap<u64, Segment>,
    log_end: u64,
    now_ms: u64,
) -> crate::Result<(ProducerStates, ProducerRecovery)> {
    let started = std::time::Instant::now();
    let mut report = ProducerRecovery::default();
    let mut table = ProducerStates::default();
    let mut removed = false;
    for offset in list(dir)?.into_iter().rev() {
        if offset > log_end {
            remove(dir, offset)?;
            removed = true;
            continue;
        }
        match fs::read(path(dir, offset)).map_err(|e| e.to_string()).and_then(|b| decode(&b)) {
            Ok((at, entries)) if at == offset => {
                table = ProducerStates::from_entries(entries);
                report.snapshot_offset = Some(offset);
                break;
            }
            Ok((at, _)) => tracing::warn!(dir = %dir.display(), offset, "snapshot claims offset {at}; ignored"),
            Err(e) => tracing::warn!(dir = %dir.display(), offset, "damaged producer snapshot ignored: {e}"),
        }
        remove(dir, offset)?;
        removed = true;
    }
    if removed {
        // A snapshot past the log end describes batches a crash lost. Should
        // it come back at a later crash, once the log has grown past its
        // offset with other batches, it would be loaded.
        durable::sync_dir(dir)?;
    }
    let from = report.snapshot_offset.unwrap_or(0);
    // The segment holding `from` (snapshots sit on batch boundaries), then all later ones.
    let first = segments.range(..=from).next_back().map_or(0, |(b, _)| *b);
    for seg in segments.range(first..).map(|(_, s)| s) {
        let start = if seg.base_offset < from { seg.locate(from)?.map(|(pos, _)| pos) } else { Some(0) };
        let Some(start) = start else { continue };
        seg.for_each_header(start, |h| {
            if h.last_offset() as u64 >= from {
                table.replay(h, now_ms);
                report.batches_replayed += 1;
            }
        })?;
    }
    report.producers = table.len();
    report.elapsed_us = started.elapsed().as_micros() as u64;
    Ok((table, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: i16, batches: &[(i32, i32, u64)]) -> ProducerEntry {
        let mut e = ProducerEntry::new(epoch, 1234);
        for &(f, l, o) in batches {
            let m = BatchMeta {
                first_seq: f,
                last_seq: l,
                base_offset: o,
                last_offset: o + (l - f) as u64,
                max_timestamp: 9,
            };
            e.push(epoch, m, 1234);
        }
        e
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let entries = vec![(1, entry(0, &[(0, 4, 0), (5, 5, 10)])), (77, entry(3, &[(9, 9, 11)]))];
        let b = encode(12, &entries);
        assert_eq!(b.len(), HEADER_BYTES + 2 * ENTRY_BYTES + 3 * BATCH_BYTES);
        assert_eq!(decode(&b).unwrap(), (12, entries));
        for i in [0, 3, 7, 20, b.len() - 1] {
            let mut bad = b.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
        assert_eq!(decode(&encode(0, &[])).unwrap(), (0, vec![]));
    }

    #[test]
    fn keeps_the_newest_two() {
        let dir = tempfile::tempdir().unwrap();
        for off in [5, 100, 7, 300] {
            write(dir.path(), off, &[(1, entry(0, &[(0, 0, 0)]))]).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![100, 300]);
    }
}

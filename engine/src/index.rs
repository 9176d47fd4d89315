//! Sparse per-segment indexes, kept in memory and persisted once a sealed
//! segment's data is synced (in the background after a roll) or when the log is
//! closed cleanly; on a sealed segment their presence tells recovery it is
//! durable. The active segment's index is rebuilt by the recovery scan after a
//! crash, so appends never write index files.
//!
//! On-disk layout, big-endian, Kafka's:
//! - `.index`: 8-byte entries `relative_offset u32 | position u32`, one per
//!   `index.interval.bytes` of log; relative_offset is a batch's base offset minus
//!   the segment's base offset, position its byte position in the `.log`.
//! - `.timeindex`: 12-byte entries `timestamp i64 | relative_offset u32`: the largest
//!   timestamp seen so far in the segment, and the batch that starts at or before it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::durable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub const ENTRY_BYTES: usize = 8;

    /// Loads an index file; `None` if missing, torn or inconsistent with a log of
    /// `log_len` bytes (the caller then rebuilds it by scanning).
    pub fn load(path: &Path, log_len: u64) -> Option<OffsetIndex> {
        let raw = fs::read(path).ok()?;
        if raw.len() % Self::ENTRY_BYTES != 0 {
            return None;
        }
        let mut idx = OffsetIndex { entries: Vec::with_capacity(raw.len() / Self::ENTRY_BYTES) };
        for e in raw.chunks_exact(Self::ENTRY_BYTES) {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(e[0..4].try_into().unwrap()),
                position: u32::from_be_bytes(e[4..8].try_into().unwrap()),
            };
            if entry.position as u64 >= log_len {
                return None;
            }
            if let Some(last) = idx.entries.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position {
                    return None;
                }
            }
            idx.entries.push(entry);
        }
        Some(idx)
    }

    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.entries.last() {
            assert!(relative_offset > last.relative_offset && position > last.position, "index must grow");
        }
        self.entries.push(OffsetEntry { relative_offset, position });
    }

    /// The entry with the largest relative offset ≤ `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self.entries.partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries pointing at or past `log_len` (after a tail truncation).
    pub fn truncate_to_position(&mut self, log_len: u64) {
        self.entries.retain(|e| (e.position as u64) < log_len);
    }

    /// Writes the index (see `write_renamed`: the caller syncs the directory).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * Self::ENTRY_BYTES);
        for e in &self.entries {
            buf.extend_from_slice(&e.relative_offset.to_be_bytes());
            buf.extend_from_slice(&e.position.to_be_bytes());
        }
        write_renamed(path, &buf)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub const ENTRY_BYTES: usize = 12;

    /// Loads a time index; `None` if missing, torn, or not monotonic, or if it names
    /// an offset beyond the offset index's last entry (they are written together).
    pub fn load(path: &Path, last_indexed: Option<OffsetEntry>) -> Option<TimeIndex> {
        let raw = fs::read(path).ok()?;
        if raw.len() % Self::ENTRY_BYTES != 0 {
            return None;
        }
        let max_rel = last_indexed.map(|e| e.relative_offset);
        let mut idx = TimeIndex::default();
        for e in raw.chunks_exact(Self::ENTRY_BYTES) {
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(e[0..8].try_into().unwrap()),
                relative_offset: u32::from_be_bytes(e[8..12].try_into().unwrap()),
            };
            if max_rel.is_none_or(|m| entry.relative_offset > m) {
                return None;
            }
            if let Some(last) = idx.entries.last() {
                if entry.timestamp <= last.timestamp || entry.relative_offset < last.relative_offset {
                    return None;
                }
            }
            idx.entries.push(entry);
        }
        Some(idx)
    }

    /// Records a new segment maximum timestamp; ignored unless it grows.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|l| timestamp > l.timestamp) {
            self.entries.push(TimeEntry { timestamp, relative_offset });
        }
    }

    /// The last entry whose timestamp is < `target`: every batch before its offset
    /// has timestamps < `target` too, so a search for `target` may start there.
    pub fn lookup_before(&self, target: i64) -> Option<TimeEntry> {
        let i = self.entries.partition_point(|e| e.timestamp < target);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn truncate_to_offset(&mut self, relative_offset_end: u32) {
        self.entries.retain(|e| e.relative_offset < relative_offset_end);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the index (see `write_renamed`: the caller syncs the directory).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * Self::ENTRY_BYTES);
        for e in &self.entries {
            buf.extend_from_slice(&e.timestamp.to_be_bytes());
            buf.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        write_renamed(path, &buf)
    }
}

/// Replaces `path` with `data` durably: a crash leaves the old file or the
/// new one, never a torn one, and once this returns, the new one.
pub(crate) fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    write_renamed(path, data)?;
    // Until the directory is synced the rename is not durable: a crash could
    // bring the old file back (a log start offset going backwards).
    durable::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes `data` to a synced temporary file renamed over `path`: a crash
/// leaves the old file or the new one, never a torn one. The rename is
/// durable only once the caller syncs the directory.
pub(crate) fn write_renamed(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        durable::sync_data(&f)?;
    }
    durable::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(10, 4100);
        idx.push(25, 8300);
        assert_eq!(idx.lookup(0).unwrap().position, 0);
        assert_eq!(idx.lookup(9).unwrap().position, 0);
        assert_eq!(idx.lookup(10).unwrap().position, 4100);
        assert_eq!(idx.lookup(1000).unwrap().position, 8300);
        let empty = OffsetIndex::default();
        assert!(empty.lookup(5).is_none());
    }

    #[test]
    fn offset_index_round_trips_and_rejects_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(7, 5000);
        idx.write(&p).unwrap();
        let back = OffsetIndex::load(&p, 6000).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.lookup(8).unwrap().position, 5000);
        // The log is shorter than an entry's position: stale.
        assert!(OffsetIndex::load(&p, 5000).is_none());
        // Torn file.
        let raw = fs::read(&p).unwrap();
        fs::write(&p, &raw[..raw.len() - 3]).unwrap();
        assert!(OffsetIndex::load(&p, 6000).is_none());
    }

    #[test]
    fn time_index_lookup_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.timeindex");
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(100, 3); // not larger: ignored
        t.push(200, 5);
        t.push(300, 9);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup_before(100), None);
        assert_eq!(t.lookup_before(101).unwrap().relative_offset, 0);
        assert_eq!(t.lookup_before(300).unwrap().relative_offset, 5);
        t.write(&p).unwrap();
        let last = Some(OffsetEntry { relative_offset: 9, position: 1 });
        assert_eq!(TimeIndex::load(&p, last).unwrap().len(), 3);
        let short = Some(OffsetEntry { relative_offset: 5, position: 1 });
        assert!(TimeIndex::load(&p, short).is_none());
        t.truncate_to_offset(5);
        assert_eq!(t.len(), 1);
    }
}

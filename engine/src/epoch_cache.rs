//! The leader-epoch cache (Kafka's `leader-epoch-checkpoint`, KIP-101): for
//! each leader epoch the log has batches of, the offset its first batch
//! starts at. A follower (or a restarted leader) asks the current leader where
//! its last epoch ended there and cuts its own log back to that point, so a
//! divergent tail a deposed leader wrote is never kept — where truncating to
//! the high watermark alone would lose acknowledged writes or keep
//! unacknowledged ones.
//!
//! On disk, Kafka's text format: `0\n<count>\n<epoch> <start offset>\n…`,
//! replaced whole (tmp file, fsync, rename, directory fsync) on every change.
//! Changes are rare (a new leader, a truncation), and the log waits for the
//! file before it appends batches of a new epoch, so the file never lags the
//! log.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The epoch Kafka calls UNDEFINED_EPOCH.
pub const UNDEFINED_EPOCH: i32 = -1;
/// The offset Kafka calls UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, u64)>,
}

impl EpochCache {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CHECKPOINT_FILE)
    }

    /// Reads the checkpoint; a missing one is an empty cache. A damaged one
    /// is an error (it is only ever replaced whole).
    pub fn load(dir: &Path) -> io::Result<EpochCache> {
        let text = match fs::read_to_string(Self::path(dir)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(EpochCache::default()),
            Err(e) => return Err(e),
        };
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{CHECKPOINT_FILE}: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some("0") {
            return Err(bad("unknown version"));
        }
        let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("no entry count"))?;
        let mut cache = EpochCache::default();
        for _ in 0..count {
            let line = lines.next().ok_or_else(|| bad("fewer entries than its count"))?;
            let (e, o) = line.split_once(' ').ok_or_else(|| bad("malformed entry"))?;
            let (epoch, start): (i32, u64) =
                (e.trim().parse().map_err(|_| bad("bad epoch"))?, o.trim().parse().map_err(|_| bad("bad offset"))?);
            if cache.entries.last().is_some_and(|&(le, ls)| epoch <= le || start < ls) {
                return Err(bad("entries out of order"));
            }
            cache.entries.push((epoch, start));
        }
        Ok(cache)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s.into_bytes()
    }

    pub fn entries(&self) -> &[(i32, u64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Records that `epoch` starts at `start`. Returns whether anything
    /// changed (an older or equal epoch changes nothing). A start before the
    /// latest entry's means that entry's batches were truncated: its entry
    /// and those after it go.
    pub fn assign(&mut self, epoch: i32, start: u64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|e| epoch <= e) {
            return false;
        }
        self.entries.retain(|&(_, s)| s < start);
        self.entries.push((epoch, start));
        true
    }

    /// The log was cut back to end at `end`: epochs starting at or after it are gone.
    pub fn truncate_from(&mut self, end: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end);
        self.entries.len() != before
    }

    /// The log was emptied and restarts at `start` (a follower behind the
    /// leader's log start): nothing of the old log is left.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's `endOffsetFor`: the largest epoch ≤ `requested` this log has,
    /// and the offset where it ends (the next epoch's start, or `log_end`
    /// for the latest), or UNDEFINED when `requested` is newer than anything
    /// known, or undefined.
    pub fn end_offset_for(&self, requested: i32, log_end: u64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH || self.entries.is_empty() {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end as i64);
        }
        let higher = self.entries.iter().find(|(e, _)| *e > requested);
        let Some(&(_, higher_start)) = higher else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.entries.iter().rev().find(|(e, _)| *e <= requested) {
            Some(&(floor, _)) => (floor, higher_start as i64),
            None => (requested, higher_start as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(3, 100), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert!(c.assign(2, 10) && c.assign(5, 40) && c.assign(7, 60));
        assert!(!c.assign(5, 70), "an older epoch changes nothing");
        assert_eq!(c.end_offset_for(7, 100), (7, 100), "the latest ends at the log end");
        assert_eq!(c.end_offset_for(5, 100), (5, 60));
        assert_eq!(c.end_offset_for(6, 100), (5, 60), "an unknown epoch between: the floor's end");
        assert_eq!(c.end_offset_for(1, 100), (1, 10), "older than any: ends where the first starts");
        assert_eq!(c.end_offset_for(9, 100), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert!(c.truncate_from(40));
        assert_eq!(c.entries(), &[(2, 10)]);
        assert!(c.assign(8, 30));
        assert_eq!(c.entries(), &[(2, 10), (8, 30)]);
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::default();
        c.assign(0, 0);
        c.assign(3, 17);
        fs::write(EpochCache::path(dir.path()), c.encode()).unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap(), c);
        fs::write(EpochCache::path(dir.path()), b"0\n2\n3 17\n0 0\n").unwrap();
        assert!(EpochCache::load(dir.path()).is_err());
        fs::remove_file(EpochCache::path(dir.path())).unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap(), EpochCache::default());
    }
}

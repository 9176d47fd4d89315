//! The open files of one log's sealed segments.
//!
//! A sealed segment is only read (fetch, ListOffsets, a follower's
//! truncation, producer-state recovery), so its file need not stay open: kept
//! open, a partition of 6,000 segments held 6,000 descriptors, past the
//! broker's open-file budget of a few per partition. Sealed segments' files
//! are opened when read, and at most [`SEALED_FILES_OPEN_MAX`] of them stay
//! open per log, the least recently used closed first. A reader is handed an
//! `Arc<File>`: its descriptor stays open while the reader holds it (a fetch's
//! sendfile), whatever the cache closes meanwhile, so descriptors above the
//! bound are those of reads in flight.
//!
//! A `Mutex`, not a `RefCell`: a log's segments are built on a blocking thread
//! by recovery and then moved to their shard, so this must be `Send`. It is
//! only ever taken by one thread at a time (uncontended: tens of ns).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::segment::Segment;

/// Sealed segments' files a log keeps open between reads. One: consumers
/// reading behind the tail usually read one segment after another, and a
/// miss costs one open(2) (a few microseconds) against a fetch of up to
/// megabytes. The broker's open-file budget counts it per partition
/// (`log::FILES_OPEN_MAX`).
pub const SEALED_FILES_OPEN_MAX: usize = 1;

pub struct SealedFiles {
    dir: PathBuf,
    /// (segment base offset, file), least recently used first; at most
    /// [`SEALED_FILES_OPEN_MAX`] entries.
    open: Mutex<Vec<(u64, Arc<File>)>>,
}

impl SealedFiles {
    pub fn new(dir: PathBuf) -> Arc<SealedFiles> {
        Arc::new(SealedFiles { dir, open: Mutex::new(Vec::with_capacity(SEALED_FILES_OPEN_MAX + 1)) })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, Arc<File>)>> {
        // Nothing here can panic half-way through a change; a poisoned lock
        // still holds a consistent list.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file of the sealed segment at `base`, opened read-only if no
    /// reader touched it lately.
    pub fn get(&self, base: u64) -> io::Result<Arc<File>> {
        let mut open = self.lock();
        if let Some(i) = open.iter().position(|(b, _)| *b == base) {
            let entry = open.remove(i);
            let file = entry.1.clone();
            open.push(entry);
            return Ok(file);
        }
        let file = Arc::new(File::open(Segment::log_path(&self.dir, base))?);
        Self::insert(&mut open, base, file.clone());
        Ok(file)
    }

    /// Keeps the file of a segment just sealed as the most recently used:
    /// the reads most likely next are of it (consumers just behind the tail).
    pub fn keep(&self, base: u64, file: Arc<File>) {
        let mut open = self.lock();
        open.retain(|(b, _)| *b != base);
        Self::insert(&mut open, base, file);
    }

    fn insert(open: &mut Vec<(u64, Arc<File>)>, base: u64, file: Arc<File>) {
        if open.len() >= SEALED_FILES_OPEN_MAX {
            open.drain(..=open.len() - SEALED_FILES_OPEN_MAX);
        }
        open.push((base, file));
        debug_assert!(open.len() <= SEALED_FILES_OPEN_MAX);
    }

    /// Closes the file of the segment at `base`, if open here (it was
    /// deleted, cut, or became the active segment again).
    pub fn forget(&self, base: u64) {
        self.lock().retain(|(b, _)| *b != base);
    }

    /// Closes every file (the log's segments are all gone).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Files open here now.
    pub fn open_count(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn open_bases(&self) -> Vec<u64> {
        self.lock().iter().map(|(b, _)| *b).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_the_bound_least_recently_used_closed_first() {
        let dir = tempfile::tempdir().unwrap();
        for base in [0u64, 10, 20] {
            std::fs::write(Segment::log_path(dir.path(), base), base.to_string()).unwrap();
        }
        let files = SealedFiles::new(dir.path().to_path_buf());
        let held = files.get(0).unwrap();
        files.get(10).unwrap();
        files.get(20).unwrap();
        files.get(20).unwrap();
        let newest: Vec<u64> = [0, 10, 20].into_iter().rev().take(SEALED_FILES_OPEN_MAX).rev().collect();
        assert_eq!(files.open_bases(), newest);
        // The reader's handle outlives its eviction.
        assert_eq!(
            std::fs::read_to_string(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*held))).unwrap(),
            "0"
        );
        assert!(files.get(30).is_err(), "no such segment");
        files.forget(20);
        files.clear();
        assert_eq!(files.open_count(), 0);
    }
}

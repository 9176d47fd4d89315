//! A log holds a bounded number of file descriptors whatever its segment
//! count: sealed segments are opened when read, through a small cache
//! (`sealed_files`), and a slice handed to a reader keeps its file open.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::tests::make_batch;
use crate::batch::BatchHeader;
use crate::log_tests::{bm, read_all, run};
use crate::{LogConfig, PartitionLog};

/// Descriptors of this process open on files under `dir`.
fn fds_into(dir: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Descriptors under `dir` once the log's background work is over: a
/// roll's producer snapshot is written on a blocking thread nobody waits for,
/// so a count may briefly include its file. Waits up to 2 s for the count to
/// drop to `bound`, and returns it.
async fn steady_fds_into(dir: &Path, bound: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let open = fds_into(dir);
        if open <= bound || std::time::Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until the writer is idle and every roll's background seal is done,
/// so only the log's steady-state descriptors are open.
async fn settled(log: &PartitionLog) {
    loop {
        let busy = {
            let st = log.st.borrow();
            st.writer_running || !st.unsynced_sealed.is_empty() || st.removals_pending > 0
        };
        if !busy {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The first record batch of a slice.
fn first_header(s: &crate::FileSlice) -> BatchHeader {
    let mut h = [0u8; 61];
    s.file.read_exact_at(&mut h, s.position).unwrap();
    BatchHeader::parse(&h).unwrap()
}

const SEALED_SEGMENTS: u64 = 200;

#[test]
fn a_log_of_many_segments_holds_a_bounded_number_of_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().canonicalize().unwrap();
    // One ~560-byte batch per 1 KiB segment: every append after the first rolls.
    let config = LogConfig { segment_bytes: 1024, ..LogConfig::default() };
    let bound = super::FILES_OPEN_MAX as usize;
    run(async {
        let (log, _) = PartitionLog::open(&dir, config.clone()).unwrap();
        for i in 0..=SEALED_SEGMENTS {
            log.append(vec![bm(&make_batch(1, 500, 1_000 + i as i64))], false).await.unwrap();
        }
        settled(&log).await;
        assert_eq!(log.segment_count() as u64, SEALED_SEGMENTS + 1);
        let open = steady_fds_into(&dir, bound).await;
        assert!(open <= bound, "{open} descriptors open on a log of {} segments (bound {bound})", log.segment_count());

        // A slice of the oldest segment stays readable while reads of every
        // other segment push its file out of the cache.
        let oldest = log.read(0, 1 << 20, true).unwrap().slice.unwrap();
        for offset in 1..=SEALED_SEGMENTS {
            let s = log.read(offset, 1 << 20, true).unwrap().slice.unwrap();
            assert_eq!(first_header(&s).base_offset as u64, offset);
            assert!(fds_into(&dir) <= bound + 2, "the cache keeps its bound while slices are held");
        }
        assert_eq!(first_header(&oldest).base_offset, 0);
        drop(oldest);
        assert_eq!(read_all(&log).len() as u64, SEALED_SEGMENTS + 1);
        // ListOffsets by time reaches into an old sealed segment.
        assert_eq!(log.offset_for_timestamp(1_005).unwrap().map(|(o, _)| o), Some(5));
        let open = fds_into(&dir);
        assert!(open <= bound, "{open} descriptors open after reading every segment (bound {bound})");
        log.close().await.unwrap();
    });
    assert_eq!(fds_into(&dir), 0, "a closed log holds nothing open");

    // Recovery opens every segment once, and keeps only the bound open.
    run(async {
        let (log, rep) = PartitionLog::open(&dir, config).unwrap();
        assert_eq!(rep.segments as u64, SEALED_SEGMENTS + 1);
        let open = fds_into(&dir);
        assert!(open <= bound, "{open} descriptors open after recovery (bound {bound})");
        assert_eq!(read_all(&log).len() as u64, SEALED_SEGMENTS + 1);
        log.append(vec![bm(&make_batch(1, 500, 5_000))], false).await.unwrap();
        settled(&log).await;
        assert!(steady_fds_into(&dir, bound).await <= bound);
        log.close().await.unwrap();
    });
}

//! Tests of the pipelined writer: several writes in flight, rolls between
//! them, and failures behind writes that did land.

use std::cell::RefCell;
use std::rc::Rc;

use crate::batch::tests::make_batch;
use crate::log_tests::{bm, read_all, run};
use crate::{EngineError, LogConfig, PartitionLog};

fn pipelined(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, writes_in_flight: 4, ..LogConfig::default() }
}

/// Starts `n` appenders at once, each appending `batches` batches of `records`
/// records, so they all reach the writer's first round together.
fn spawn_appenders(
    log: &PartitionLog,
    n: usize,
    batches: usize,
    value_len: usize,
) -> Vec<tokio::task::JoinHandle<crate::Result<crate::AppendInfo>>> {
    (0..n)
        .map(|i| {
            let log = log.clone();
            let req: Vec<_> = (0..batches).map(|_| bm(&make_batch(2, value_len, i as i64))).collect();
            tokio_uring::spawn(async move { log.append(req, false).await })
        })
        .collect()
}

#[test]
fn pipelined_appends_land_in_order_whole_and_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(64 << 10)).unwrap();
        // A long-polling reader that looks at the high watermark every time it
        // is published, while writes are in flight.
        let seen = Rc::new(RefCell::new(Vec::new()));
        let reader = {
            let (watch, seen) = (log.watch(), seen.clone());
            tokio_uring::spawn(async move {
                loop {
                    let changed = watch.changed();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    seen.borrow_mut().push(watch.high_watermark());
                    changed.await;
                }
            })
        };
        let mut ends = vec![0u64];
        let mut total_batches = 0;
        for round in 0..20 {
            // 1–3 batches per append, ~1 KiB each.
            let tasks = spawn_appenders(&log, 48, 1 + round % 3, 500);
            total_batches += 48 * (1 + round % 3);
            for t in tasks {
                let a = t.await.unwrap().unwrap();
                ends.push(a.last_offset + 1);
            }
        }
        reader.abort();
        let st = log.stats();
        assert!(st.writes_in_flight_peak > 1, "the pipeline never had two writes in flight: {st:?}");
        assert!(st.rolls >= 10, "{st:?}");
        // Offsets are contiguous, every batch reads back, and the reader only
        // ever saw the high watermark at the end of a whole append.
        ends.sort_unstable();
        ends.dedup();
        let all = read_all(&log);
        assert_eq!(all.len(), total_batches);
        assert_eq!(log.high_watermark(), *ends.last().unwrap());
        assert!(seen.borrow().len() > 20, "the reader saw {} publishes", seen.borrow().len());
        for hw in seen.borrow().iter() {
            assert!(ends.binary_search(hw).is_ok(), "high watermark {hw} splits an append");
        }
        // No append straddles a segment: each segment starts at an append's first offset.
        let hw = log.high_watermark();
        log.close().await.unwrap();
        drop(log);
        let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".log")?.parse().ok())
            .collect();
        bases.sort_unstable();
        assert!(bases.len() >= 10);
        for b in &bases {
            assert!(ends.binary_search(b).is_ok(), "segment {b} starts inside an append");
        }
        let (log, rep) = PartitionLog::open(dir.path(), pipelined(64 << 10)).unwrap();
        assert_eq!((rep.log_end_offset, rep.truncated_bytes), (hw, 0));
        assert_eq!(read_all(&log).len(), total_batches);
    });
}

#[test]
fn a_failed_write_behind_others_fails_every_unacknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(1 << 30)).unwrap();
        // 64 appends of ~1 KiB arrive together: four writes of 16 appends.
        // The second write fails; the third and fourth land on disk but must
        // not count, since offsets before them were lost.
        log.inject_write_error_after(1, libc::EIO);
        let tasks = spawn_appenders(&log, 64, 1, 500);
        let mut acked = Vec::new();
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(a) => acked.push(a.base_offset),
                Err(e) => {
                    assert!(matches!(e, EngineError::Storage(_)), "{e}");
                    failed += 1;
                }
            }
        }
        let st = log.stats();
        assert!(st.writes_in_flight_peak >= 3, "{st:?}");
        assert_eq!((acked.len(), failed), (16, 48), "{st:?}");
        acked.sort_unstable();
        assert_eq!(acked, (0..16).map(|i| 2 * i).collect::<Vec<u64>>());
        assert_eq!(log.high_watermark(), 32);
        let file_len = std::fs::metadata(dir.path().join("00000000000000000000.log")).unwrap().len();
        assert_eq!(file_len, log.size_bytes(), "the writes that landed after the failure were cut");
        // The lost offsets are handed out again.
        let a = log.append(vec![bm(&make_batch(1, 10, 0))], false).await.unwrap();
        assert_eq!(a.base_offset, 32);
        assert_eq!(read_all(&log).len(), 17);
        log.close().await.unwrap();
    });
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), pipelined(1 << 30)).unwrap();
        assert_eq!((rep.log_end_offset, rep.truncated_bytes), (33, 0));
        assert_eq!(read_all(&log).len(), 17);
    });
}

#[test]
fn an_append_split_across_writes_lands_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(1 << 30)).unwrap();
        // 600 batches: more iovecs than one writev takes, so two writes.
        let req: Vec<_> = (0..600).map(|_| bm(&make_batch(1, 10, 0))).collect();
        log.inject_write_error_after(1, libc::ENOSPC);
        let e = log.append(req.clone(), false).await.unwrap_err();
        assert!(e.to_string().contains("No space"), "{e}");
        assert_eq!(log.stats().writes, 2);
        assert_eq!((log.high_watermark(), log.size_bytes()), (0, 0));
        let file_len = std::fs::metadata(dir.path().join("00000000000000000000.log")).unwrap().len();
        assert_eq!(file_len, 0, "the first half of the append was cut");
        let a = log.append(req, false).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 599));
        assert_eq!(read_all(&log).len(), 600);
    });
}

#[test]
fn durable_appends_are_not_split_and_every_commit_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(1 << 30)).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = log.clone();
                let b = bm(&make_batch(2, 500, i));
                tokio_uring::spawn(async move { log.append(vec![b], true).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let st = log.stats();
        assert_eq!(st.batches, 64);
        assert_eq!(st.writes, 1, "64 KiB of durable appends go out under one write and one sync: {st:?}");
        assert_eq!(st.syncs, st.commits);
    });
}

/// Closes a log of buffered appends spread over several small segments and
/// returns the sealed segments' base offsets, oldest first.
fn sealed_segments(dir: &std::path::Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases.pop(); // the active one
    bases
}

fn stem(dir: &std::path::Path, base: u64, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

#[test]
fn rolls_sync_sealed_segments_in_the_background_then_write_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(8 << 10)).unwrap();
        for i in 0..40 {
            log.append(vec![bm(&make_batch(2, 500, i))], false).await.unwrap();
        }
        // A durable append right after rolls: it must cover the sealed segments too.
        log.append(vec![bm(&make_batch(2, 500, 0))], true).await.unwrap();
        assert!(log.stats().rolls >= 3);
        log.close().await.unwrap();
    });
    let sealed = sealed_segments(dir.path());
    assert!(sealed.len() >= 3);
    for base in sealed {
        assert!(stem(dir.path(), base, "index").exists(), "sealed segment {base} has no index");
        assert!(stem(dir.path(), base, "timeindex").exists());
    }
}

#[test]
fn a_torn_sealed_segment_without_indexes_drops_everything_after_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(8 << 10)).unwrap();
        for i in 0..60 {
            log.append(vec![bm(&make_batch(2, 500, i))], false).await.unwrap();
        }
        log.close().await.unwrap();
    });
    // A crash before the background sync of the second segment finished:
    // no indexes yet, and its last batch only partly on disk. The segments
    // rolled after it (whatever writeback got to) cannot be trusted.
    let sealed = sealed_segments(dir.path());
    assert!(sealed.len() >= 4, "{sealed:?}");
    let torn = sealed[1];
    for ext in ["index", "timeindex"] {
        std::fs::remove_file(stem(dir.path(), torn, ext)).unwrap();
    }
    let path = stem(dir.path(), torn, "log");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 100).unwrap();
    // The previous segment, synced and indexed, is not scanned and stays whole.
    let keep = sealed[0];
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), pipelined(8 << 10)).unwrap();
        let later = sealed.len() - 1; // sealed after the torn one, plus the active one
        assert_eq!(rep.segments_dropped, later, "{rep:?}");
        assert_eq!(rep.segments, 2);
        assert!(rep.truncation_reason.is_some());
        assert_eq!(log.segment_count(), 2);
        // Everything up to the last whole batch of the torn segment reads back.
        let all = read_all(&log);
        assert_eq!(all.first().unwrap().0, keep);
        let end = log.high_watermark();
        assert!(end > torn && end < sealed[2], "log end {end}");
        assert_eq!(all.iter().map(|(_, n)| *n as u64).sum::<u64>(), end);
        // Appends carry on from there, into the torn segment, now the active one.
        let a = log.append(vec![bm(&make_batch(1, 10, 0))], false).await.unwrap();
        assert_eq!(a.base_offset, end);
        for &gone in &sealed[2..] {
            assert!(!stem(dir.path(), gone, "log").exists());
        }
    });
}

#[test]
fn damage_in_a_sealed_segment_with_indexes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(8 << 10)).unwrap();
        for i in 0..40 {
            log.append(vec![bm(&make_batch(2, 500, i))], false).await.unwrap();
        }
        log.close().await.unwrap();
    });
    // Indexes say it was synced: a bad byte after the last index entry is disk
    // damage to acknowledged durable data, not a torn write to repair silently.
    let sealed = sealed_segments(dir.path());
    let path = stem(dir.path(), sealed[0], "log");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 1).unwrap();
    let e = PartitionLog::open(dir.path(), pipelined(8 << 10)).err().expect("damaged durable segment");
    assert!(matches!(e, EngineError::Recovery { .. }), "{e}");
}

#[test]
fn one_fdatasync_covers_every_write_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), pipelined(1 << 30)).unwrap();
        // The second durable append arrives while the first one's write is in
        // flight (nothing reaches the kernel before the runtime parks): its
        // own write goes out at once, and the first commit's fdatasync waits
        // for it instead of leaving it a sync of its own.
        let first = {
            let log = log.clone();
            tokio_uring::spawn(async move { log.append(vec![bm(&make_batch(2, 500, 0))], true).await.unwrap() })
        };
        let second = {
            let log = log.clone();
            tokio_uring::spawn(async move {
                tokio::task::yield_now().await;
                log.append(vec![bm(&make_batch(2, 500, 1))], true).await.unwrap()
            })
        };
        assert_eq!(first.await.unwrap().base_offset, 0);
        assert_eq!(second.await.unwrap().base_offset, 2);
        let st = log.stats();
        assert_eq!((st.writes, st.syncs, st.commits), (2, 1, 1), "{st:?}");
    });
}

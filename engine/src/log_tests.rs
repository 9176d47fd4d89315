//! Tests of the partition log: append/read, group commit, rolls, recovery,
//! retention, failures. Each runs inside a tokio-uring runtime as a shard would.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::BytesMut;

use crate::batch::tests::make_batch;
use crate::batch::{check_stored, BatchHeader};
use crate::{EngineError, LogConfig, PartitionLog};

pub(crate) fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio_uring::start(f)
}

pub(crate) fn bm(b: &[u8]) -> BytesMut {
    BytesMut::from(b)
}

/// Reads every batch between log start and high watermark via `read`, checking
/// offsets are contiguous and CRCs good. Returns (base offset, records) pairs.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<(u64, i32)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let r = log.read(offset, 1 << 20, true).unwrap();
        let s = r.slice.expect("data below the high watermark");
        let mut buf = vec![0u8; s.len as usize];
        s.file.read_exact_at(&mut buf, s.position).unwrap();
        let mut pos = 0;
        while pos + 61 <= buf.len() {
            let h = BatchHeader::parse(&buf[pos..]).unwrap();
            if pos + h.total_len() > buf.len() {
                break; // cut at max_bytes, as Kafka may
            }
            check_stored(&buf[pos..pos + h.total_len()]).unwrap();
            assert!(h.last_offset() as u64 >= offset);
            out.push((h.base_offset as u64, h.records_count));
            offset = h.last_offset() as u64 + 1;
            pos += h.total_len();
        }
    }
    out
}

fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 512, ..LogConfig::default() }
}

#[test]
fn append_assigns_contiguous_offsets_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(rep.log_end_offset, 0);
        let a = log.append(vec![bm(&make_batch(3, 10, 100))], false).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 2));
        let b = log.append(vec![bm(&make_batch(2, 10, 200)), bm(&make_batch(4, 10, 300))], false).await.unwrap();
        assert_eq!((b.base_offset, b.last_offset), (3, 8));
        assert_eq!(log.high_watermark(), 9);
        assert_eq!(read_all(&log), vec![(0, 3), (3, 2), (5, 4)]);
        // A read from the middle of a batch starts at that batch.
        let r = log.read(6, 1 << 20, true).unwrap();
        let s = r.slice.unwrap();
        let mut h = [0u8; 61];
        s.file.read_exact_at(&mut h, s.position).unwrap();
        assert_eq!(BatchHeader::parse(&h).unwrap().base_offset, 5);
        // At the high watermark: nothing, no error. Past it: out of range.
        assert!(log.read(9, 1 << 20, true).unwrap().slice.is_none());
        assert!(matches!(log.read(10, 100, true), Err(EngineError::OffsetOutOfRange { .. })));
    });
}

#[test]
fn max_bytes_cuts_but_min_one_returns_a_whole_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let b = make_batch(5, 200, 0);
        log.append(vec![bm(&b), bm(&b)], false).await.unwrap();
        let r = log.read(0, 10, true).unwrap();
        assert_eq!(r.slice.unwrap().len, b.len() as u64);
        let r = log.read(0, 10, false).unwrap();
        assert_eq!(r.slice.unwrap().len, 10);
        let r = log.read(0, 1 << 20, false).unwrap();
        assert_eq!(r.slice.unwrap().len, 2 * b.len() as u64);
    });
}

#[test]
fn a_bad_batch_lands_nothing_from_its_request() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let good = make_batch(2, 10, 0);
        let mut bad = make_batch(2, 10, 0);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let r = log.append(vec![bm(&good), bm(&bad)], false).await;
        assert!(matches!(r, Err(EngineError::CorruptBatch(_))), "{r:?}");
        assert_eq!(log.high_watermark(), 0);
        let too_big = make_batch(1, 2000, 0);
        log.set_config(LogConfig { max_message_bytes: 1000, ..LogConfig::default() }).unwrap();
        assert!(matches!(log.append(vec![bm(&too_big)], false).await, Err(EngineError::BatchTooLarge { .. })));
        let ok = log.append(vec![bm(&good)], false).await.unwrap();
        assert_eq!(ok.base_offset, 0);
        assert_eq!(log.size_bytes(), good.len() as u64);
    });
}

#[test]
fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio_uring::spawn(
                async move { log.append(vec![bm(&make_batch(1, 100, i))], true).await.unwrap() },
            ));
        }
        let mut offsets: Vec<u64> = Vec::new();
        for t in tasks {
            offsets.push(t.await.unwrap().base_offset);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
        let st = log.stats();
        assert_eq!(st.batches, 200);
        // Everything queued behind the first write goes out together.
        assert!(st.commits < 20, "{st:?}");
        assert_eq!(st.syncs, st.commits);
    });
}

#[test]
fn heads_cut_from_shared_buffers_stay_whole_across_logs_and_buffers() {
    // Appends' rewritten heads are cut from per-thread buffers of 1024 heads:
    // two logs sharing them, enough appends in flight to span several
    // buffers, and one append too big for a buffer of its own.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let (a, _) = PartitionLog::open(da.path(), LogConfig::default()).unwrap();
        let (b, _) = PartitionLog::open(db.path(), LogConfig::default()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..2500 {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio_uring::spawn(async move {
                log.append(vec![bm(&make_batch(2, 20, i))], false).await.unwrap();
            }));
        }
        let big: Vec<_> = (0..1500).map(|i| bm(&make_batch(1, 10, i))).collect();
        let info = a.append(big, false).await.unwrap();
        assert_eq!(info.last_offset - info.base_offset, 1499);
        for t in tasks {
            t.await.unwrap();
        }
        for (log, batches) in [(&a, 1250 + 1500), (&b, 1250)] {
            let read = read_all(log);
            assert_eq!(read.len(), batches);
            // Every base offset as assigned: contiguous, no head swapped or torn.
            let mut next = 0;
            for (base, records) in read {
                assert_eq!(base, next);
                next += records as u64;
            }
            assert_eq!(next, log.high_watermark());
        }
    });
}

#[test]
fn flush_messages_policy_syncs_only_when_due() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let cfg = LogConfig { flush_messages: Some(10), flush_ms: Some(0), ..LogConfig::default() };
        let (log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
        for _ in 0..4 {
            log.append(vec![bm(&make_batch(3, 10, 0))], false).await.unwrap();
        }
        // 12 records: one sync after the 4th append crossed 10.
        assert_eq!(log.stats().syncs, 1);
        assert!(!log.flush_due(crate::log::now_ms()));
        log.append(vec![bm(&make_batch(1, 10, 0))], false).await.unwrap();
        assert!(log.flush_due(crate::log::now_ms()));
        log.flush().await.unwrap();
        assert!(!log.flush_due(crate::log::now_ms()));
    });
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(vec![bm(&make_batch(2, 200, i))], false).await.unwrap();
        }
        assert!(log.segment_count() >= 4, "{}", log.segment_count());
        let all = read_all(&log);
        assert_eq!(all.len(), 40);
        assert_eq!(all.last().unwrap().0, 78);
        log.close().await.unwrap();
    });
    // Clean reopen scans nothing but what follows the last index entry.
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        assert_eq!(rep.log_end_offset, 80);
        assert_eq!(rep.truncated_bytes, 0);
        assert!(rep.batches_scanned <= 2 * rep.segments as u64, "{rep:?}");
        assert_eq!(read_all(&log).len(), 40);
        let a = log.append(vec![bm(&make_batch(1, 10, 0))], false).await.unwrap();
        assert_eq!(a.base_offset, 80);
    });
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn torn_tail_is_truncated_at_every_cut_point() {
    let dir = tempfile::tempdir().unwrap();
    let batch = make_batch(3, 50, 7);
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..5 {
            log.append(vec![bm(&batch)], true).await.unwrap();
        }
        // No close: an unclean stop.
    });
    let seg = last_segment(dir.path());
    let whole = fs::read(&seg).unwrap();
    let four = 4 * batch.len();
    for cut in [four + 1, four + 12, four + 60, four + 61, whole.len() - 1] {
        fs::write(&seg, &whole[..cut]).unwrap();
        run(async {
            let (log, rep) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
            assert_eq!(rep.log_end_offset, 12, "cut at {cut}");
            assert_eq!(rep.truncated_bytes, (cut - four) as u64);
            assert!(rep.truncation_reason.is_some());
            assert_eq!(read_all(&log).len(), 4);
            assert_eq!(fs::metadata(&seg).unwrap().len(), four as u64);
        });
    }
    // Garbage after whole batches, and a whole batch with a flipped bit.
    let mut g = whole.clone();
    g.extend_from_slice(&[0xAB; 100]);
    fs::write(&seg, &g).unwrap();
    run(async {
        let (_, rep) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!((rep.log_end_offset, rep.truncated_bytes), (15, 100));
    });
    let mut c = whole.clone();
    c[four + 70] ^= 1;
    fs::write(&seg, &c).unwrap();
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(rep.log_end_offset, 12);
        let a = log.append(vec![bm(&batch)], true).await.unwrap();
        assert_eq!(a.base_offset, 12);
    });
}

#[test]
fn missing_and_stale_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        for i in 0..30 {
            log.append(vec![bm(&make_batch(1, 300, i))], false).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let mut n = 0;
    for e in fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        match p.extension().and_then(|e| e.to_str()) {
            Some("index") if n % 2 == 0 => {
                fs::remove_file(&p).unwrap();
                n += 1;
            }
            Some("index") => {
                fs::write(&p, [0xff; 13]).unwrap();
                n += 1;
            }
            _ => {}
        }
    }
    assert!(n > 2);
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        assert_eq!(rep.log_end_offset, 30);
        assert_eq!(rep.truncated_bytes, 0);
        assert_eq!(read_all(&log).len(), 30);
        for off in 0..30 {
            let s = log.read(off, 1, true).unwrap().slice.unwrap();
            let mut h = [0u8; 61];
            s.file.read_exact_at(&mut h, s.position).unwrap();
            assert_eq!(BatchHeader::parse(&h).unwrap().base_offset as u64, off);
        }
    });
}

#[test]
fn retention_by_bytes_and_time_and_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        // Timestamps of now: only the size rule applies at first.
        let now = crate::log::now_ms() as i64;
        for i in 0..40 {
            log.append(vec![bm(&make_batch(1, 300, now + i))], false).await.unwrap();
        }
        let segs = log.segment_count();
        let size = log.size_bytes();
        // By bytes: keep at most ~half.
        log.set_config(LogConfig { retention_bytes: Some(size / 2), ..small_segments() }).unwrap();
        let rep = log.enforce_retention(crate::log::now_ms());
        assert!(rep.segments_deleted > 0);
        assert!(log.size_bytes() <= size / 2 + 4096);
        assert_eq!(log.log_start_offset(), rep.log_start_offset);
        assert!(matches!(log.read(0, 100, true), Err(EngineError::OffsetOutOfRange { .. })));
        assert_eq!(read_all(&log).first().unwrap().0, log.log_start_offset());
        // By time: an hour later everything has expired, the idle active
        // segment included (it is rolled first, as Kafka does).
        log.set_config(LogConfig { retention_ms: Some(60_000), ..small_segments() }).unwrap();
        log.enforce_retention(crate::log::now_ms() + 3_600_000);
        assert_eq!(log.segment_count(), 1);
        assert!(segs > 1);
        assert_eq!(log.log_start_offset(), log.high_watermark());
        assert_eq!(log.size_bytes(), 0);
        // DeleteRecords inside the active segment: start moves, data stays until rolled away.
        log.set_config(small_segments()).unwrap();
        for i in 0..5 {
            log.append(vec![bm(&make_batch(1, 300, crate::log::now_ms() as i64 + i))], false).await.unwrap();
        }
        let hw = log.high_watermark();
        assert_eq!(log.delete_records(hw - 2).await.unwrap(), hw - 2);
        assert!(log.delete_records(hw + 1).await.is_err());
        assert_eq!(log.delete_records(hw - 4).await.unwrap(), hw - 2, "never moves back");
        assert_eq!(read_all(&log).len(), 2);
        log.close().await.unwrap();
        assert_eq!(hw, 45);
    });
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        assert_eq!(rep.log_start_offset, 43);
        assert_eq!(log.log_start_offset(), 43);
    });
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small_segments()).unwrap();
        // batch i holds records with timestamps 1000*i .. 1000*i+4
        for i in 0..30 {
            log.append(vec![bm(&make_batch(5, 100, 1000 * i))], false).await.unwrap();
        }
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(3002).unwrap(), Some((17, 3002)));
        assert_eq!(log.offset_for_timestamp(3005).unwrap(), Some((20, 4000)));
        assert_eq!(log.offset_for_timestamp(29_004).unwrap(), Some((149, 29_004)));
        assert_eq!(log.offset_for_timestamp(29_005).unwrap(), None);
    });
}

#[test]
fn failed_write_lands_nothing_and_offsets_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        log.append(vec![bm(&make_batch(2, 10, 0))], false).await.unwrap();
        let size = log.size_bytes();
        log.inject_write_error(libc::ENOSPC);
        let e = log.append(vec![bm(&make_batch(2, 10, 0))], false).await.unwrap_err();
        assert!(e.to_string().contains("No space"), "{e}");
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(log.size_bytes(), size);
        let a = log.append(vec![bm(&make_batch(1, 10, 0))], false).await.unwrap();
        assert_eq!(a.base_offset, 2);
        assert_eq!(read_all(&log), vec![(0, 2), (2, 1)]);
    });
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let cfg = LogConfig { segment_ms: 50, ..LogConfig::default() };
        let (log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
        log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap();
        log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap();
        assert_eq!(log.segment_count(), 1, "young segment keeps taking appends");
        std::thread::sleep(std::time::Duration::from_millis(60));
        let c = log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap();
        assert_eq!(log.segment_count(), 2, "an old segment is sealed before the next append");
        assert_eq!(c.base_offset, 4);
        assert_eq!(read_all(&log), vec![(0, 2), (2, 2), (4, 2)]);
        log.close().await.unwrap();
    });
}

#[test]
fn a_panicking_writer_takes_the_log_offline_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap();
        log.inject_writer_panic();
        let e = log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap_err();
        assert!(matches!(e, EngineError::Storage(_)), "{e}");
        let e = log.append(vec![bm(&make_batch(2, 10, 100))], false).await.unwrap_err();
        assert!(e.to_string().contains("offline"), "{e}");
        // What was written before stays readable.
        assert_eq!(read_all(&log), vec![(0, 2)]);
    });
}

/// A zstd-flagged batch (the broker never decompresses) of `body_bytes`
/// claiming `count` records: the most offsets a producer can take per batch.
fn huge_count_batch(count: i32, body_bytes: usize, ts: i64) -> Vec<u8> {
    let mut b = make_batch(1, 0, ts);
    b.truncate(crate::batch::HEADER_LEN);
    b.extend(std::iter::repeat_n(0x5a, body_bytes));
    let len = (b.len() - crate::batch::LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[21..23].copy_from_slice(&4i16.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crate::batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Regression (hardening issue, item 2): relative offsets in the indexes are
/// 32 bits, so a segment spanning more than i32::MAX offsets made fetches skip
/// records and recovery compute a wrong log end. Batches that claim the most
/// records a producer may claim now roll the segment before the span overflows.
#[test]
fn a_segment_never_spans_more_than_i32_max_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let count = i32::MAX;
    // Enough compressed bytes for the count to pass validation (7 bytes a record at 32768:1).
    let body = (count as usize / 32_768) * 7 + 64;
    let bases = run_and(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let mut bases = Vec::new();
        for i in 0..4 {
            let info = log.append(vec![bm(&huge_count_batch(count, body, 1000 + i))], false).await.unwrap();
            assert_eq!(info.last_offset - info.base_offset, count as u64 - 1);
            bases.push(info.base_offset);
        }
        for &b in &bases {
            let s = log.read(b + 17, 100, true).unwrap().slice.unwrap();
            let mut h = [0u8; 61];
            s.file.read_exact_at(&mut h, s.position).unwrap();
            assert_eq!(BatchHeader::parse(&h).unwrap().base_offset as u64, b, "fetch at {b}+17 finds its batch");
        }
        assert!(log.segment_count() >= 2, "must roll before the span passes i32::MAX");
        log.close().await.unwrap();
        bases
    });
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(rep.log_end_offset, 4 * count as u64);
        assert_eq!(rep.truncated_bytes, 0);
        assert_eq!(read_all(&log).iter().map(|(b, _)| *b).collect::<Vec<_>>(), bases);
    });
}

pub(crate) fn run_and<T, F: std::future::Future<Output = T>>(f: F) -> T {
    tokio_uring::start(f)
}

/// Regression (item 13): `segment.ms` counted from the last restart, so a
/// broker restarted more often than `segment.ms` never rolled. It now counts
/// from the segment file's birth (kept by the filesystem across restarts).
#[test]
fn segment_ms_counts_from_the_segment_birth_not_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: 300, ..LogConfig::default() };
    let now = || crate::log::now_ms() as i64;
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        log.append(vec![bm(&make_batch(1, 10, now()))], false).await.unwrap();
        log.close().await.unwrap();
    });
    // Restarts more often than segment.ms.
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        run(async {
            let (log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
            log.close().await.unwrap();
        });
    }
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append(vec![bm(&make_batch(1, 10, now()))], false).await.unwrap();
        assert_eq!(log.segment_count(), 2, "the segment is 400 ms old, past segment.ms, however often restarted");
    });
}

/// Item 13: a producer timestamp far in the future is refused (it would keep
/// the partition's data past retention), and a partition that stopped
/// receiving data still loses it to retention.
#[test]
fn future_timestamps_are_refused_and_idle_data_expires() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let far = crate::log::now_ms() as i64 + 10 * 3_600_000;
        let err = log.append(vec![bm(&make_batch(1, 10, far))], false).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidTimestamp(_)), "{err}");
        let now = crate::log::now_ms();
        log.append(vec![bm(&make_batch(3, 10, now as i64))], false).await.unwrap();
        assert_eq!(log.enforce_retention(now).segments_deleted, 0, "fresh data stays");
        // Eight days later nothing new arrived: the active segment is rolled and deleted.
        let later = now + 8 * 24 * 3_600_000;
        let r = log.enforce_retention(later);
        assert_eq!((r.segments_deleted, r.log_start_offset), (1, 3));
        assert_eq!(log.log_start_offset(), log.high_watermark());
        log.append(vec![bm(&make_batch(1, 10, now as i64))], false).await.unwrap();
        assert_eq!(read_all(&log), vec![(3, 1)]);
    });
}

/// A producer may send any base timestamp (when the topic allows any:
/// `message.timestamp.after.max.ms`); a record's delta past i64::MAX
/// overflowed (a panic in debug builds, a wrapped timestamp in release) when
/// ListOffsets searched by time.
#[test]
fn timestamps_at_the_end_of_the_range_do_not_overflow() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let any_time = LogConfig { message_timestamp_after_max_ms: u64::MAX, ..small_segments() };
        let (log, _) = PartitionLog::open(dir.path(), any_time).unwrap();
        let mut b = make_batch(2, 10, i64::MAX - 2);
        // baseTimestamp = maxTimestamp = i64::MAX: the second record's delta of 1 goes past it.
        b[27..35].copy_from_slice(&i64::MAX.to_be_bytes());
        b[35..43].copy_from_slice(&i64::MAX.to_be_bytes());
        let crc = crate::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        log.append(vec![bm(&b)], false).await.unwrap();
        assert_eq!(log.offset_for_timestamp(i64::MAX).unwrap(), Some((0, i64::MAX)));
    });
}

/// The simulated full disk (`DiskBudget`): a write past it fails with ENOSPC
/// and lands nothing, acknowledged data stays readable, and deleting data
/// (retention / DeleteRecords) or the log frees room again.
#[test]
fn a_full_simulated_disk_refuses_writes_and_deletions_free_room() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_bytes: 4096, index_interval_bytes: 512, retention_ms: None, ..LogConfig::default() };
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        log.append(vec![bm(&make_batch(1, 100, 1_000))], false).await.unwrap();
        let disk = std::sync::Arc::new(crate::DiskBudget::new(16 * 1024));
        log.set_disk_budget(disk.clone());
        assert_eq!(disk.used_bytes(), log.size_bytes(), "data already there is counted");
        let batch = make_batch(4, 200, 1_000);
        let mut acked = 1;
        let err = loop {
            match log.append(vec![bm(&batch)], false).await {
                Ok(_) => acked += 4,
                Err(e) => break e,
            }
            assert!(acked < 1000, "a 16 KiB disk fills up");
        };
        let EngineError::Storage(io) = &err else { panic!("{err:?}") };
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull, "{io}");
        assert_eq!(log.high_watermark(), acked);
        assert_eq!(read_all(&log).iter().map(|(_, n)| *n as u64).sum::<u64>(), acked, "every acked record reads");
        assert_eq!(disk.used_bytes(), log.size_bytes(), "a refused write leaves no charge behind");
        assert!(log.append(vec![bm(&batch)], false).await.is_err(), "still full");
        // DeleteRecords drops the sealed segments below it: room again.
        log.delete_records(log.high_watermark()).await.unwrap();
        assert_eq!(disk.used_bytes(), log.size_bytes());
        let info = log.append(vec![bm(&batch)], true).await.unwrap();
        assert_eq!(info.base_offset, acked);
        // Closing gives everything back (the log no longer counts against it).
        log.close().await.unwrap();
        assert_eq!(disk.used_bytes(), 0);
    });
}

/// Reads every stored batch's bytes between log start and high watermark.
fn stored_batches(log: &PartitionLog) -> Vec<Vec<u8>> {
    let r = log.read(log.log_start_offset(), u64::MAX, true).unwrap();
    let s = r.slice.expect("data");
    let mut buf = vec![0u8; s.len as usize];
    s.file.read_exact_at(&mut buf, s.position).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let h = BatchHeader::parse(&buf[pos..]).unwrap();
        out.push(buf[pos..pos + h.total_len()].to_vec());
        pos += h.total_len();
    }
    out
}

/// `message.timestamp.type=LogAppendTime`: each batch is stored as sent
/// except its timestamp-type bit and maxTimestamp, set to the append time,
/// and the CRC they change; the append reports that time; reads, time
/// lookups and recovery see the stamped batch.
#[test]
fn log_append_time_stamps_each_batch_at_append() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { timestamp_type: crate::TimestampType::LogAppendTime, ..LogConfig::default() };
    let sent = [make_batch(3, 20, 100), make_batch(2, 30, 5_000_000_000_000)];
    let stamped_ms = std::cell::Cell::new(0);
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
        let before = crate::log::now_ms() as i64;
        let info = log.append(vec![bm(&sent[0]), bm(&sent[1])], false).await.unwrap();
        assert!(info.log_append_time_ms >= before && info.log_append_time_ms <= crate::log::now_ms() as i64);
        stamped_ms.set(info.log_append_time_ms);
        let stored = stored_batches(&log);
        assert_eq!(stored.len(), 2);
        for (s, b) in stored.iter().zip(&sent) {
            let h = check_stored(s).expect("the CRC covers the stamp");
            assert!(h.is_log_append_time());
            assert_eq!(h.max_timestamp, info.log_append_time_ms);
            assert_eq!(&s[16..17], &b[16..17], "magic");
            assert_eq!(&s[23..35], &b[23..35], "lastOffsetDelta and baseTimestamp as sent");
            assert_eq!(&s[43..], &b[43..], "producer fields and records as sent");
        }
        // Every record of a LogAppendTime batch has the append time.
        assert_eq!(log.offset_for_timestamp(info.log_append_time_ms).unwrap(), Some((0, info.log_append_time_ms)));
        assert_eq!(log.offset_for_timestamp(info.log_append_time_ms + 1).unwrap(), None);
        log.close().await.unwrap();
    });
    run(async {
        let (log, rep) = PartitionLog::open(dir.path(), cfg).unwrap();
        assert_eq!((rep.log_end_offset, rep.truncated_bytes), (5, 0));
        assert!(stored_batches(&log).iter().all(|s| check_stored(s).unwrap().max_timestamp == stamped_ms.get()));
    });
}

/// On a CreateTime topic a producer's LogAppendTime bit is no way around the
/// timestamp checks: it is cleared (as Kafka does), the CRC recomputed, and
/// the producer's timestamps checked like any others.
#[test]
fn create_time_clears_a_producers_log_append_time_bit() {
    let dir = tempfile::tempdir().unwrap();
    let flagged = |base_ts: i64| {
        let mut b = make_batch(2, 10, base_ts);
        b[21..23].copy_from_slice(&crate::batch::LOG_APPEND_TIME_FLAG.to_be_bytes());
        let crc = crate::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    };
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        let future = crate::log::now_ms() as i64 + 2 * 3_600_000;
        let r = log.append(vec![bm(&flagged(future))], false).await;
        assert!(matches!(r, Err(EngineError::InvalidTimestamp(_))), "{r:?}");
        let ok = flagged(1_000);
        let info = log.append(vec![bm(&ok)], false).await.unwrap();
        assert_eq!(info.log_append_time_ms, -1);
        let stored = stored_batches(&log);
        let h = check_stored(&stored[0]).unwrap();
        assert!(!h.is_log_append_time());
        assert_eq!(h.max_timestamp, 1_001, "the producer's");
        assert_eq!(&stored[0][23..], &make_batch(2, 10, 1_000)[23..]);
    });
}

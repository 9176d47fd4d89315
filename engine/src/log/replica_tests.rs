//! The replication operations of a partition log: a follower's log is the
//! leader's byte for byte; a divergent tail is cut durably; a follower behind
//! the leader's log start starts over; the high watermark bounds consumers,
//! not followers; epochs are durable before their batches.

use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};

use crate::batch::tests::make_batch;
use crate::batch::{compute_crc, set_base_offset, set_partition_leader_epoch, BatchHeader};
use crate::crashsim::CrashDir;
use crate::epoch_cache::{UNDEFINED_EPOCH, UNDEFINED_OFFSET};
use crate::{EngineError, LogConfig, PartitionLog, ReadLimit};

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio_uring::start(f)
}

fn small() -> LogConfig {
    LogConfig { segment_bytes: 2048, index_interval_bytes: 256, ..LogConfig::default() }
}

/// Every batch from `from` to the log end, as stored, read the way a
/// follower's fetch reads.
fn stored_batches(log: &PartitionLog, from: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let s = log.read_to(offset, 1 << 20, true, ReadLimit::LogEnd).unwrap().slice.expect("data below the log end");
        let mut buf = vec![0u8; s.len as usize];
        s.file.read_exact_at(&mut buf, s.position).unwrap();
        let mut pos = 0;
        while pos + 61 <= buf.len() {
            let h = BatchHeader::parse(&buf[pos..]).unwrap();
            if pos + h.total_len() > buf.len() {
                break;
            }
            out.push(Bytes::copy_from_slice(&buf[pos..pos + h.total_len()]));
            offset = h.last_offset() as u64 + 1;
            pos += h.total_len();
        }
    }
    out
}

/// A batch as a leader of `epoch` stores it at `offset`.
fn leader_batch(records: i32, offset: u64, epoch: i32, tag: i64) -> Bytes {
    let mut b = make_batch(records, 40, tag);
    set_base_offset(&mut b, offset);
    set_partition_leader_epoch(&mut b, epoch);
    Bytes::from(b)
}

fn bm(b: &[u8]) -> BytesMut {
    BytesMut::from(b)
}

#[test]
fn a_follower_holds_the_leaders_batches_byte_for_byte() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let (leader, _) = PartitionLog::open(ld.path(), small()).unwrap();
        leader.set_replicated(true);
        leader.become_leader(3).await.unwrap();
        for i in 0..20 {
            leader.append(vec![bm(&make_batch(1 + i % 3, 40, 1000 + i as i64))], false).await.unwrap();
        }
        assert_eq!(leader.high_watermark(), 0, "nobody confirmed anything yet");
        assert!(
            leader.read(0, 1 << 20, true).unwrap().slice.is_none(),
            "consumers see nothing above the high watermark"
        );
        let (follower, _) = PartitionLog::open(fd.path(), small()).unwrap();
        follower.set_replicated(true);
        // Fetch rounds of a few batches each.
        while follower.log_end_offset() < leader.log_end_offset() {
            let batches: Vec<Bytes> = stored_batches(&leader, follower.log_end_offset()).into_iter().take(4).collect();
            follower.append_replicated(batches).await.unwrap();
        }
        assert_eq!(stored_batches(&follower, 0), stored_batches(&leader, 0));
        assert_eq!(follower.epochs(), vec![(3, 0)]);
        assert_eq!(follower.end_offset_for_epoch(3), (3, leader.log_end_offset() as i64));
        // The leader learns the follower has it all: consumers may read.
        assert!(leader.set_high_watermark(follower.log_end_offset()));
        assert_eq!(leader.high_watermark(), leader.log_end_offset());
        assert!(leader.read(0, 1 << 20, true).unwrap().slice.is_some());
        // A batch that does not continue the log is refused.
        let gap = leader_batch(1, follower.log_end_offset() + 5, 3, 9);
        let e = follower.append_replicated(vec![gap]).await.unwrap_err();
        assert!(matches!(e, EngineError::InvalidBatch(_)), "{e}");
        // Neither is an epoch that goes back.
        let old = leader_batch(1, follower.log_end_offset(), 2, 9);
        assert!(follower.append_replicated(vec![old]).await.is_err());
    });
}

#[test]
fn a_divergent_tail_is_cut_durably_and_the_new_leaders_log_follows() {
    let root = CrashDir::new();
    run(async {
        let (log, _) = PartitionLog::open(root.path(), small()).unwrap();
        log.set_replicated(true);
        // Epoch 1: offsets 0..30 (rolls several segments); epoch 2 wrote 30..45
        // here but the new leader (epoch 3) never got them.
        let mut offset = 0;
        for i in 0..10 {
            log.append_replicated(vec![leader_batch(3, offset, 1, i)]).await.unwrap();
            offset += 3;
        }
        for i in 0..5 {
            log.append_replicated(vec![leader_batch(3, offset, 2, 100 + i)]).await.unwrap();
            offset += 3;
        }
        log.flush().await.unwrap();
        log.set_high_watermark(45);
        assert_eq!(log.epochs(), vec![(1, 0), (2, 30)]);
        assert!(log.segment_count() > 1);
        // The new leader says epoch 2 ended at 33 there (it had one batch of it).
        log.truncate_to(33).await.unwrap();
        assert_eq!((log.log_end_offset(), log.high_watermark()), (33, 33));
        assert_eq!(log.epochs(), vec![(1, 0), (2, 30)]);
        assert_eq!(log.end_offset_for_epoch(2), (2, 33));
        // A cut inside a batch drops the whole batch.
        log.truncate_to(31).await.unwrap();
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(log.epochs(), vec![(1, 0)]);
        // The new leader's batches continue it.
        log.append_replicated(vec![leader_batch(2, 30, 3, 500)]).await.unwrap();
        log.flush().await.unwrap();
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), small()).unwrap();
        assert_eq!(after.log_end_offset(), 32, "the cut tail never comes back, the new batch stays");
        assert_eq!(after.epochs(), vec![(1, 0), (3, 30)]);
        assert_eq!(stored_batches(&after, 0), stored_batches(&log, 0));
    });
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small()).unwrap();
        log.set_replicated(true);
        log.append_replicated(vec![leader_batch(2, 0, 0, 1)]).await.unwrap();
        log.restart_at(500).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset(), log.high_watermark()), (500, 500, 500));
        log.append_replicated(vec![leader_batch(2, 500, 4, 2)]).await.unwrap();
        log.close().await.unwrap();
        let (after, _) = PartitionLog::open(dir.path(), small()).unwrap();
        assert_eq!((after.log_start_offset(), after.log_end_offset()), (500, 502));
        assert_eq!(after.epochs(), vec![(4, 500)]);
    });
}

#[test]
fn the_epoch_of_a_new_leader_is_durable_before_its_first_batch() {
    let root = CrashDir::new();
    run(async {
        let (log, _) = PartitionLog::open(root.path(), small()).unwrap();
        log.set_replicated(true);
        log.become_leader(0).await.unwrap();
        log.append(vec![bm(&make_batch(2, 10, 1))], true).await.unwrap();
        log.become_leader(7).await.unwrap();
        let info = log.append(vec![bm(&make_batch(1, 10, 2))], true).await.unwrap();
        assert_eq!(info.base_offset, 2);
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), small()).unwrap();
        assert_eq!(after.epochs(), vec![(0, 0), (7, 2)]);
        assert_eq!(after.end_offset_for_epoch(0), (0, 2));
        assert_eq!(after.end_offset_for_epoch(9), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        // The batch carries its epoch as stored.
        let stored = stored_batches(&after, 2);
        assert_eq!(BatchHeader::parse(&stored[0]).unwrap().partition_leader_epoch, 7);
    });
}

#[test]
fn the_high_watermark_survives_a_restart_and_bounds_consumers() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small()).unwrap();
        log.set_replicated(true);
        for i in 0..6 {
            log.append(vec![bm(&make_batch(1, 10, i))], false).await.unwrap();
        }
        log.set_high_watermark(4);
        // A consumer at the high watermark or past it (below the log end): nothing yet, no error.
        assert!(log.read(4, 1 << 20, true).unwrap().slice.is_none());
        assert!(log.read(5, 1 << 20, true).unwrap().slice.is_none());
        assert!(matches!(log.read(7, 1 << 20, true), Err(EngineError::OffsetOutOfRange { .. })));
        // A follower reads to the log end.
        assert!(log.read_to(4, 1 << 20, true, ReadLimit::LogEnd).unwrap().slice.is_some());
        log.close().await.unwrap();
        let (after, _) = PartitionLog::open(dir.path(), small()).unwrap();
        after.set_replicated(true);
        assert_eq!((after.high_watermark(), after.log_end_offset()), (4, 6));
        // Unreplicated, the high watermark is the log end.
        after.set_replicated(false);
        assert_eq!(after.high_watermark(), 6);
    });
}

#[test]
fn producer_state_follows_replicated_batches_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let (log, _) = PartitionLog::open(dir.path(), small()).unwrap();
        log.set_replicated(true);
        let idem = |seq: i32, offset: u64| {
            let mut b = make_batch(1, 10, 7);
            b[43..51].copy_from_slice(&42i64.to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            set_base_offset(&mut b, offset);
            Bytes::from(b)
        };
        for seq in 0..4 {
            log.append_replicated(vec![idem(seq, seq as u64)]).await.unwrap();
        }
        log.truncate_to(2).await.unwrap();
        // Becoming leader: a retry of seq 1 is a duplicate, seq 2 continues, seq 3 would be a gap.
        log.become_leader(1).await.unwrap();
        let retry = {
            let mut b = idem(1, 0).to_vec();
            set_base_offset(&mut b, 0);
            b
        };
        assert_eq!(log.append(vec![bm(&retry)], false).await.unwrap().base_offset, 1);
        let gap = idem(3, 0).to_vec();
        assert!(log.append(vec![bm(&gap)], false).await.is_err());
        let next = idem(2, 0).to_vec();
        assert_eq!(log.append(vec![bm(&next)], false).await.unwrap().base_offset, 2);
    });
}

#[test]
fn an_epoch_led_without_a_batch_is_dropped_by_a_cut_at_the_log_end() {
    // This broker led epoch 5 briefly and appended nothing; the new leader
    // (epoch 7) never had 5 and says our log diverges at our log end. The
    // cut removes nothing from the log but must drop epoch 5: reported as
    // our last fetched epoch, it would be answered "diverging" forever.
    let root = CrashDir::new();
    run(async {
        let (log, _) = PartitionLog::open(root.path(), small()).unwrap();
        log.set_replicated(true);
        log.become_leader(4).await.unwrap();
        log.append(vec![bm(&make_batch(3, 10, 1))], true).await.unwrap();
        log.become_leader(5).await.unwrap();
        assert_eq!(log.latest_epoch(), Some(5));
        log.truncate_to(3).await.unwrap();
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.latest_epoch(), Some(4));
        assert_eq!(log.epochs(), vec![(4, 0)]);
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), small()).unwrap();
        assert_eq!(after.epochs(), vec![(4, 0)], "durable");
    });
}

//! Crash tests on the simulated-crash layer (`crate::crashsim`): a crash
//! loses every write not synced and every name not made durable by a
//! directory sync, which a SIGKILL (engine/tests/crash_recovery.rs) cannot
//! show. One regression test per durability gap found, then a seeded
//! property test running random operation sequences with crashes between and
//! during them (`LAMINAR_CRASHSIM_CASES`, `LAMINAR_CRASHSIM_STEPS`,
//! `LAMINAR_CRASHSIM_SEED`; `LAMINAR_CRASHSIM_DEBUG` prints each reopen's
//! files and recovery report).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;

use super::{now_ms, PartitionLog};
use crate::batch::tests::make_batch;
use crate::batch::{check_stored, compute_crc, set_base_offset, BatchHeader, HEADER_LEN};
use crate::crashsim::CrashDir;
use crate::LogConfig;

fn run<F: Future<Output = ()>>(f: F) {
    tokio_uring::start(f)
}

fn bm(b: &[u8]) -> BytesMut {
    BytesMut::from(b)
}

/// A batch of `records` records whose timestamps start at `tag` (so every
/// batch a test makes is distinct); from producer `pid` (epoch 0) at first
/// sequence `seq` when `pid` ≥ 0.
fn batch(pid: i64, seq: i32, records: i32, value_bytes: usize, tag: i64) -> Vec<u8> {
    let mut b = make_batch(records, value_bytes, tag);
    if pid >= 0 {
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

/// `b` as the log stores it at `offset` (leader epoch stays 0 in these tests).
fn stored(b: &[u8], offset: u64) -> Vec<u8> {
    let mut s = b.to_vec();
    set_base_offset(&mut s, offset);
    s
}

/// Every batch from the log start to the high watermark, (base offset, bytes),
/// read through `read` as a fetch would; checks they are whole, CRC-valid and
/// contiguous.
fn batches(log: &PartitionLog) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let s = log.read(offset, 1 << 20, true).unwrap().slice.expect("data below the high watermark");
        let mut buf = vec![0u8; s.len as usize];
        s.file.read_exact_at(&mut buf, s.position).unwrap();
        let mut pos = 0;
        while pos + HEADER_LEN <= buf.len() {
            let h = BatchHeader::parse(&buf[pos..]).unwrap();
            if pos + h.total_len() > buf.len() {
                break;
            }
            let bytes = &buf[pos..pos + h.total_len()];
            check_stored(bytes).unwrap_or_else(|e| panic!("batch at offset {offset}: {e}"));
            let base = h.base_offset as u64;
            assert!(base <= offset && h.last_offset() as u64 >= offset, "offsets contiguous at {offset}: batch {base}");
            out.push((base, bytes.to_vec()));
            offset = h.last_offset() as u64 + 1;
            pos += h.total_len();
        }
    }
    out
}

/// Waits for the log's writer and background seals to stop, then drops the
/// handle: what a process restart leaves (the page cache keeps every write,
/// nothing more is synced).
async fn stop(log: PartitionLog) {
    while Rc::strong_count(&log.st) > 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls `f` exactly once.
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(move |cx| Poll::Ready(f.as_mut().poll(cx))).await
}

#[test]
fn a_durable_retry_after_a_restart_syncs_what_it_acknowledges() {
    // The first append is acknowledged without a sync (acks=1); the process
    // restarts with the batch in the page cache only. The producer's retry
    // asks for acks=all and is answered as a duplicate: that answer promises
    // the batch is durable.
    let root = CrashDir::new();
    run(async {
        let b = batch(7, 0, 1, 20, 100);
        let (log, _) = PartitionLog::open(root.path(), LogConfig::default()).unwrap();
        let first = log.append(vec![bm(&b)], false).await.unwrap();
        stop(log).await;
        let (log, _) = PartitionLog::open(root.path(), LogConfig::default()).unwrap();
        let retry = log.append(vec![bm(&b)], true).await.unwrap();
        assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset), "a duplicate");
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), LogConfig::default()).unwrap();
        assert_eq!(batches(&after), vec![(0, stored(&b, 0))], "acknowledged with acks=all, lost at a crash");
    });
}

#[test]
fn writes_during_a_flush_stay_unflushed() {
    // flush.ms path: a flush's fdatasync covers what was written when it
    // started. A durable commit and then a buffered one (B) land while it
    // runs; B must still count as unflushed when the flush returns, so a
    // durable retry of B syncs it.
    let root = CrashDir::new();
    run(async {
        let cfg = LogConfig { flush_ms: Some(1000), ..LogConfig::default() };
        let (log, _) = PartitionLog::open(root.path(), cfg.clone()).unwrap();
        log.append(vec![bm(&batch(-1, 0, 3, 20, 1))], false).await.unwrap();
        let mut flush = pin!(log.flush());
        assert!(poll_once(flush.as_mut()).await.is_pending(), "the flush's fdatasync is in flight");
        log.append(vec![bm(&batch(-1, 0, 1, 20, 2))], true).await.unwrap();
        let b = batch(7, 0, 1, 20, 3);
        let at = log.append(vec![bm(&b)], false).await.unwrap().base_offset;
        flush.await.unwrap();
        assert!(log.flush_due(now_ms() + 1000), "B landed after the flush's sync started: still unflushed");
        log.append(vec![bm(&b)], true).await.unwrap();
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), cfg).unwrap();
        assert!(batches(&after).contains(&(at, stored(&b, at))), "B was acknowledged with acks=all, then lost");
    });
}

#[test]
fn flush_messages_counts_writes_that_land_during_a_flush() {
    // flush.messages path: records written while a flush runs still count
    // towards the next sync; counter subtraction lost them.
    let root = CrashDir::new();
    run(async {
        let cfg = LogConfig { flush_messages: Some(4), ..LogConfig::default() };
        let (log, _) = PartitionLog::open(root.path(), cfg.clone()).unwrap();
        log.append(vec![bm(&batch(-1, 0, 3, 20, 1))], false).await.unwrap();
        let mut flush = pin!(log.flush());
        assert!(poll_once(flush.as_mut()).await.is_pending(), "the flush's fdatasync is in flight");
        log.append(vec![bm(&batch(-1, 0, 1, 20, 2))], true).await.unwrap();
        let b = batch(-1, 0, 2, 20, 3);
        let b_at = log.append(vec![bm(&b)], false).await.unwrap().base_offset;
        flush.await.unwrap();
        let syncs = log.stats().syncs;
        let c = batch(-1, 0, 2, 20, 4);
        let c_at = log.append(vec![bm(&c)], false).await.unwrap().base_offset;
        assert_eq!(log.stats().syncs, syncs + 1, "B and C make 4 records since the flush's sync started");
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), cfg).unwrap();
        let found = batches(&after);
        assert!(found.contains(&(b_at, stored(&b, b_at))) && found.contains(&(c_at, stored(&c, c_at))));
    });
}

#[test]
fn the_log_start_offset_survives_a_crash_after_delete_records() {
    let root = CrashDir::new();
    run(async {
        // No time retention: the test batches' timestamps are near the epoch.
        let cfg =
            LogConfig { segment_bytes: 1024, index_interval_bytes: 256, retention_ms: None, ..LogConfig::default() };
        let (log, _) = PartitionLog::open(root.path(), cfg.clone()).unwrap();
        let mut written = Vec::new();
        for i in 0..12 {
            let b = batch(-1, 0, 1, 200, i);
            let at = log.append(vec![bm(&b)], true).await.unwrap().base_offset;
            written.push((at, stored(&b, at)));
        }
        assert!(log.segment_count() >= 4);
        // Into the first segment: only the checkpoint changes.
        assert_eq!(log.delete_records(1).await.unwrap(), 1);
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), cfg.clone()).unwrap();
        assert_eq!(after.log_start_offset(), 1, "an acknowledged DeleteRecords went back");
        assert_eq!(batches(&after), written[1..]);
        // Past the first segments (deleted) and into the middle of one.
        let to = log.st.borrow().segments.keys().nth(2).unwrap() + 1;
        assert_eq!(log.delete_records(to).await.unwrap(), to);
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), cfg).unwrap();
        assert_eq!(after.log_start_offset(), to, "an acknowledged DeleteRecords went back");
        let kept: Vec<_> = written.into_iter().filter(|(at, _)| *at >= to).collect();
        assert_eq!(batches(&after), kept);
    });
}

#[test]
fn a_new_partition_directory_survives_a_crash() {
    let root = CrashDir::new();
    run(async {
        let dir = root.path().join("topic-0");
        let (log, _) = PartitionLog::open(&dir, LogConfig::default()).unwrap();
        let b = batch(-1, 0, 1, 20, 1);
        log.append(vec![bm(&b)], true).await.unwrap();
        let image = root.crash();
        let (after, _) = PartitionLog::open(&image.path().join("topic-0"), LogConfig::default()).unwrap();
        assert_eq!(batches(&after), vec![(0, stored(&b, 0))], "the partition directory was never made durable");
    });
}

/// Segments of about 1 KiB: three of `filler` fill one.
fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 1024, index_interval_bytes: 256, retention_ms: None, ..LogConfig::default() }
}

/// A batch of about 320 bytes.
fn filler(tag: i64) -> Vec<u8> {
    batch(-1, 0, 1, 250, tag)
}

/// Fills segment 0 with one durable and two buffered batches, holds its
/// syncs (its background seal will still be in flight at the crash), and
/// appends `b1` buffered, which rolls to segment 3.
async fn roll_with_seal_in_flight(root: &CrashDir, log: &PartitionLog, b1: &[u8]) {
    log.append(vec![bm(&filler(1))], true).await.unwrap();
    log.append(vec![bm(&filler(2))], false).await.unwrap();
    log.append(vec![bm(&filler(3))], false).await.unwrap();
    root.hold_syncs(&crate::segment::Segment::log_path(&log.dir(), 0));
    assert_eq!(log.append(vec![bm(b1)], false).await.unwrap().base_offset, 3);
    assert_eq!(log.st.borrow().segments.keys().copied().collect::<Vec<_>>(), vec![0, 3]);
}

#[test]
fn segments_deleted_by_delete_records_stay_deleted_after_a_crash() {
    // DeleteRecords deletes a sealed segment whose background sync is still
    // in flight; later durable appends no longer sync it. Were it to come
    // back at a crash, it would come back short, and recovery would drop
    // every segment after it, durable appends included.
    let root = CrashDir::new();
    run(async {
        let (log, _) = PartitionLog::open(root.path(), small_segments()).unwrap();
        let b1 = filler(4);
        roll_with_seal_in_flight(&root, &log, &b1).await;
        assert_eq!(log.delete_records(3).await.unwrap(), 3);
        let b2 = filler(5);
        assert_eq!(log.append(vec![bm(&b2)], true).await.unwrap().base_offset, 4);
        let image = root.crash();
        let (after, _) = PartitionLog::open(image.path(), small_segments()).unwrap();
        assert_eq!(after.log_start_offset(), 3);
        assert_eq!(batches(&after), vec![(3, stored(&b1, 3)), (4, stored(&b2, 4))]);
    });
}

#[test]
fn segments_dropped_by_recovery_stay_dropped_after_a_crash() {
    // Segment 0's background seal is in flight at the crash, segment 3's
    // finished (it need not wait for the one before): recovery finds 0 cut
    // short and drops 3 and 6. Were they to come back at the next crash,
    // after 0 grew back to exactly offset 3, segment 3's batches, which the
    // first crash discarded, would be read as the log's continuation.
    let root = CrashDir::new();
    run(async {
        let (log, _) = PartitionLog::open(root.path(), small_segments()).unwrap();
        roll_with_seal_in_flight(&root, &log, &filler(4)).await;
        for tag in 5..8 {
            log.append(vec![bm(&filler(tag))], false).await.unwrap();
        }
        assert_eq!(log.st.borrow().segments.keys().copied().collect::<Vec<_>>(), vec![0, 3, 6]);
        while log.st.borrow().unsynced_sealed.contains(&3) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = root.crash();
        // The rolls' producer snapshots failed (a roll only warns): recovery
        // removes none, whose directory sync would cover the drop.
        crate::producer_snapshot::remove_all(first.path()).unwrap();
        crate::durable::sync_dir(first.path()).unwrap();
        let (log, report) = PartitionLog::open(first.path(), small_segments()).unwrap();
        assert_eq!((report.segments_dropped, report.log_end_offset), (2, 1), "{report:?}");
        let x = batch(-1, 0, 2, 50, 9);
        assert_eq!(log.append(vec![bm(&x)], true).await.unwrap().last_offset, 2);
        let second = first.crash();
        let (after, _) = PartitionLog::open(second.path(), small_segments()).unwrap();
        assert_eq!(batches(&after), vec![(0, stored(&filler(1), 0)), (1, stored(&x, 1))]);
    });
}

// ---------------------------------------------------------------------------
// Property test: random operation sequences, crashes between and during them.

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const PRODUCERS: i64 = 3;
/// Batches of a producer a retry may repeat: those the producer state keeps.
const RETRYABLE: usize = crate::producer_state::BATCHES_RETAINED;

#[derive(Default)]
struct Producer {
    next_seq: i32,
    /// Its last acknowledged batches, oldest first: (bytes as sent, base, last offset).
    recent: VecDeque<(Vec<u8>, u64, u64)>,
}

/// What the test knows the log must hold.
struct Model {
    /// Every batch an instance acknowledged, by base offset, as stored.
    acked: BTreeMap<u64, Vec<u8>>,
    /// Offsets below this were acknowledged as durable (acks=all, a flush, a close).
    durable_end: u64,
    /// Offsets below this were acknowledged (a restart without a crash keeps them).
    acked_end: u64,
    /// Where acknowledged DeleteRecords moved the log start to.
    deleted_to: u64,
    producers: Vec<Producer>,
    next_tag: i64,
}

/// One append request as submitted.
struct Request {
    batches: Vec<Vec<u8>>,
    sync: bool,
}

impl Model {
    fn request(&mut self, rng: &mut Rng, sync: bool, pids_taken: &mut Vec<i64>) -> Request {
        let n = if rng.chance(20) { 2 } else { 1 };
        let mut batches = Vec::new();
        for _ in 0..n {
            let records = 1 + rng.below(3) as i32;
            let value_bytes = 10 + rng.below(200) as usize;
            self.next_tag += 1000;
            let pid = rng.below(PRODUCERS as u64 + 1) as i64 - 1;
            // A producer's batches go in sequence order: one per request, and
            // one request per producer among those in flight together.
            if pid >= 0 && !pids_taken.contains(&pid) {
                pids_taken.push(pid);
                let p = &mut self.producers[pid as usize];
                batches.push(batch(pid, p.next_seq, records, value_bytes, self.next_tag));
                p.next_seq += records;
            } else {
                batches.push(batch(-1, 0, records, value_bytes, self.next_tag));
            }
        }
        Request { batches, sync }
    }

    fn acknowledged(&mut self, req: &Request, base: u64) {
        let mut at = base;
        for b in &req.batches {
            let h = BatchHeader::parse(b).unwrap();
            let last = at + h.last_offset_delta as u64;
            self.acked.insert(at, stored(b, at));
            if h.producer_id >= 0 {
                let recent = &mut self.producers[h.producer_id as usize].recent;
                recent.push_back((b.clone(), at, last));
                if recent.len() > RETRYABLE {
                    recent.pop_front();
                }
            }
            at = last + 1;
        }
        self.acked_end = self.acked_end.max(at);
        if req.sync {
            self.durable_end = self.durable_end.max(at);
        }
    }

    /// Checks a reopened log against the model; `must_keep_end`: acknowledged
    /// batches below it must be there byte for byte. Then the model becomes
    /// what the log holds.
    fn check_and_adopt(&mut self, log: &PartitionLog, must_keep_end: u64, what: &str) {
        let found = batches(log);
        let (start, hw) = (log.log_start_offset(), log.high_watermark());
        assert!(
            start >= self.deleted_to,
            "{what}: log start {start} went back past DeleteRecords to {}",
            self.deleted_to
        );
        assert!(hw >= must_keep_end, "{what}: high watermark {hw}, acknowledged up to {must_keep_end}");
        let present: HashMap<u64, &Vec<u8>> = found.iter().map(|(o, b)| (*o, b)).collect();
        for (&at, bytes) in self.acked.range(start..) {
            let last = at + BatchHeader::parse(bytes).unwrap().last_offset_delta as u64;
            if last < must_keep_end {
                assert_eq!(present.get(&at), Some(&bytes), "{what}: acknowledged batch at {at} lost or changed");
            }
        }
        for (at, bytes) in &found {
            assert_eq!(self.acked.get(at), Some(bytes), "{what}: batch at {at} was never acknowledged as such");
        }
        self.check_producers(log, &found, what);
        self.acked = found.into_iter().collect();
        self.acked_end = hw;
        self.durable_end = hw;
    }

    /// Producer state must match the log: each producer's batches in the log
    /// are in sequence, its last ones are what the state remembers, and no
    /// remembered batch at or past the log start is missing from the log.
    fn check_producers(&mut self, log: &PartitionLog, found: &[(u64, Vec<u8>)], what: &str) {
        let start = log.log_start_offset();
        let st = log.st.borrow();
        for pid in 0..PRODUCERS {
            let mine: Vec<(BatchHeader, u64, &Vec<u8>)> = found
                .iter()
                .map(|(at, b)| (BatchHeader::parse(b).unwrap(), *at, b))
                .filter(|(h, _, _)| h.producer_id == pid)
                .collect();
            for w in mine.windows(2) {
                let last_seq = w[0].0.base_sequence + w[0].0.last_offset_delta;
                assert_eq!(last_seq + 1, w[1].0.base_sequence, "{what}: producer {pid} sequences in the log");
            }
            let state = st.producers.get(pid);
            let remembered: Vec<_> = state.map_or(vec![], |e| e.batches().to_vec());
            for m in remembered.iter().filter(|m| m.base_offset >= start) {
                let in_log = mine.iter().find(|(_, at, _)| *at == m.base_offset);
                let Some((h, _, _)) = in_log else {
                    panic!("{what}: producer {pid} state remembers offset {} the log lacks", m.base_offset)
                };
                assert_eq!((h.base_sequence, h.last_offset() as u64), (m.first_seq, m.last_offset), "{what}: {pid}");
            }
            let tail = &mine[mine.len().saturating_sub(RETRYABLE)..];
            for (h, at, _) in tail {
                assert!(
                    remembered.iter().any(|m| m.base_offset == *at && m.first_seq == h.base_sequence),
                    "{what}: producer {pid}'s batch at {at} is in the log but not in its state"
                );
            }
            let p = &mut self.producers[pid as usize];
            if let Some(last) = remembered.last() {
                p.next_seq = last.last_seq + 1;
            }
            // An unknown producer may start anywhere (KIP-360): keep its next sequence.
            p.recent =
                tail.iter().map(|(h, at, b)| (stored(b, 0), *at, h.last_offset() as u64)).collect::<VecDeque<_>>();
        }
    }
}

fn case_config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: [1024, 2048, 4096][rng.below(3) as usize],
        index_interval_bytes: 256,
        writes_in_flight: 1 + rng.below(4) as usize,
        flush_messages: if rng.chance(30) { Some(4 + rng.below(16)) } else { None },
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// The partition directory under a root: a subdirectory, so its creation
/// must be made durable too.
fn log_dir(root: &CrashDir) -> PathBuf {
    root.path().join("topic-0")
}

fn open(dir: &Path, cfg: &LogConfig) -> PartitionLog {
    let (log, report) = PartitionLog::open(dir, cfg.clone()).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    if std::env::var("LAMINAR_CRASHSIM_DEBUG").is_ok() {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        eprintln!("open: {names:?}\n  {report:?}");
    }
    log
}

type Completions = Rc<RefCell<Vec<(usize, crate::Result<super::AppendInfo>)>>>;

/// Appends `reqs` concurrently; completions are recorded in the order seen.
fn spawn_requests(log: &PartitionLog, reqs: &[Request], done: &Completions) -> Vec<tokio::task::JoinHandle<()>> {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let (log, done) = (log.clone(), done.clone());
            let batches: Vec<BytesMut> = r.batches.iter().map(|b| bm(b)).collect();
            let sync = r.sync;
            tokio_uring::spawn(async move {
                let result = log.append(batches, sync).await;
                done.borrow_mut().push((i, result));
            })
        })
        .collect()
}

/// Prints the operations of a failing case (with its seed) as the panic unwinds.
struct Trace {
    seed: u64,
    ops: Vec<String>,
}

impl Drop for Trace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("crashsim case {:#x} failed after:\n  {}", self.seed, self.ops.join("\n  "));
        }
    }
}

async fn run_case(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let cfg = case_config(&mut rng);
    let mut trace = Trace { seed, ops: vec![format!("{cfg:?}")] };
    let mut root = CrashDir::new();
    let mut log = open(&log_dir(&root), &cfg);
    let mut m = Model {
        acked: BTreeMap::new(),
        durable_end: 0,
        acked_end: 0,
        deleted_to: 0,
        producers: (0..PRODUCERS).map(|_| Producer::default()).collect(),
        next_tag: 0,
    };
    for step in 0..steps {
        let what = |kind: &str| format!("seed {seed:#x} step {step} ({kind})");
        match rng.below(100) {
            // A single append, or a burst of concurrent ones; a crash may cut
            // the power while they are in flight.
            0..=54 => {
                let n = if rng.chance(25) { 2 + rng.below(4) as usize } else { 1 };
                let durable = rng.chance(30);
                let mut taken = Vec::new();
                let mut reqs = Vec::with_capacity(n);
                for _ in 0..n {
                    let sync = durable || rng.chance(15);
                    reqs.push(m.request(&mut rng, sync, &mut taken));
                }
                let syncs: Vec<bool> = reqs.iter().map(|r| r.sync).collect();
                let crash = rng.chance(12);
                // A flush racing the appends (flush.ms firing mid-burst),
                // started before or after them.
                let flush = rng.chance(25).then(|| rng.chance(50));
                trace.ops.push(format!(
                    "{step}: append x{n} sync={syncs:?}{}{}",
                    flush.map_or("", |first| if first { ", flush first" } else { ", flush" }),
                    if crash { ", crash" } else { "" }
                ));
                let done: Completions = Rc::default();
                let flushed = Rc::new(std::cell::Cell::new(false));
                let spawn_flush = || {
                    let (log, flushed) = (log.clone(), flushed.clone());
                    tokio_uring::spawn(async move {
                        log.flush().await.unwrap();
                        flushed.set(true);
                    })
                };
                // A flush covers at least what was acknowledged before it started.
                let flush_covers = m.acked_end;
                let mut tasks = Vec::new();
                if flush == Some(true) {
                    tasks.push(spawn_flush());
                }
                tasks.extend(spawn_requests(&log, &reqs, &done));
                if flush == Some(false) {
                    tasks.push(spawn_flush());
                }
                let mut seen = 0;
                let mut image = None;
                if crash {
                    for _ in 0..rng.below(12) {
                        tokio::task::yield_now().await;
                    }
                    for (i, r) in done.borrow().iter() {
                        m.acknowledged(&reqs[*i], r.as_ref().expect("append").base_offset);
                    }
                    seen = done.borrow().len();
                    if flushed.get() {
                        m.durable_end = m.durable_end.max(flush_covers);
                    }
                    image = Some((root.crash(), m.durable_end));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                for (i, r) in done.borrow().iter().skip(seen) {
                    let info = r.as_ref().unwrap_or_else(|e| panic!("{}: append failed: {e}", what("append")));
                    m.acknowledged(&reqs[*i], info.base_offset);
                }
                if flushed.get() {
                    m.durable_end = m.durable_end.max(flush_covers);
                }
                if let Some((image, durable_end)) = image {
                    stop(log).await;
                    log = open(&log_dir(&image), &cfg);
                    root = image;
                    m.check_and_adopt(&log, durable_end, &what("crash during appends"));
                }
            }
            // A retry of a recent batch: a duplicate, answered with its offsets.
            55..=62 => {
                let pid = rng.below(PRODUCERS as u64) as usize;
                let recent = &m.producers[pid].recent;
                if recent.is_empty() {
                    continue;
                }
                let (b, base, last) = recent[rng.below(recent.len() as u64) as usize].clone();
                let sync = rng.chance(80);
                trace.ops.push(format!("{step}: retry of producer {pid}'s batch at {base}, sync={sync}"));
                let info = log.append(vec![bm(&b)], sync).await.unwrap();
                assert_eq!((info.base_offset, info.last_offset), (base, last), "{}", what("retry"));
                if sync {
                    m.durable_end = m.durable_end.max(last + 1);
                }
            }
            63..=69 => {
                trace.ops.push(format!("{step}: flush"));
                let before = m.acked_end;
                log.flush().await.unwrap();
                m.durable_end = m.durable_end.max(before);
            }
            70..=74 => {
                let (start, hw) = (log.log_start_offset(), log.high_watermark());
                let to = start + rng.below(hw - start + 1);
                trace.ops.push(format!("{step}: delete_records to {to}"));
                let now = log.delete_records(to).await.unwrap();
                assert!(now >= to, "{}", what("delete_records"));
                m.deleted_to = m.deleted_to.max(now);
            }
            75..=79 => {
                trace.ops.push(format!("{step}: close, reopen"));
                log.close().await.unwrap();
                m.durable_end = m.acked_end;
                stop(log).await;
                log = open(&log_dir(&root), &cfg);
                m.check_and_adopt(&log, m.acked_end, &what("close"));
            }
            80..=86 => {
                trace.ops.push(format!("{step}: restart without a crash"));
                let durable_end = m.durable_end;
                stop(log).await;
                log = open(&log_dir(&root), &cfg);
                m.check_and_adopt(&log, m.acked_end, &what("restart"));
                // The page cache kept it all, but no more of it is durable.
                m.durable_end = durable_end;
            }
            _ => {
                trace.ops.push(format!("{step}: crash"));
                let durable_end = m.durable_end;
                let image = root.crash();
                stop(log).await;
                log = open(&log_dir(&image), &cfg);
                root = image;
                m.check_and_adopt(&log, durable_end, &what("crash"));
            }
        }
    }
    trace.ops.push("final crash".into());
    let durable_end = m.durable_end;
    let image = root.crash();
    stop(log).await;
    let log = open(&log_dir(&image), &cfg);
    m.check_and_adopt(&log, durable_end, &format!("seed {seed:#x} final crash"));
    stop(log).await;
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Random appends (durable or not, single or concurrent), retries, flushes,
/// rolls (small segments), DeleteRecords, clean closes, restarts and crashes
/// (between operations and with appends in flight). After every reopen:
/// every batch acknowledged as durable, and everything before it, is there
/// byte for byte; the log is contiguous and CRC-valid; the log start never
/// goes back past an acknowledged DeleteRecords; producer state matches the
/// log. `LAMINAR_CRASHSIM_CASES` (default 6) and `LAMINAR_CRASHSIM_STEPS`
/// (default 60) run more; `LAMINAR_CRASHSIM_SEED` sets the first seed
/// (printed per case, so a failure replays with CASES=1).
#[test]
fn random_operations_and_crashes_keep_every_durable_acknowledgement() {
    let cases = env_u64("LAMINAR_CRASHSIM_CASES").unwrap_or(6);
    let steps = env_u64("LAMINAR_CRASHSIM_STEPS").unwrap_or(60) as usize;
    let first = env_u64("LAMINAR_CRASHSIM_SEED").unwrap_or(0x1a31_0000);
    let started = std::time::Instant::now();
    for seed in first..first + cases {
        eprintln!("crashsim case {seed:#x}, {steps} steps");
        run(run_case(seed, steps));
    }
    eprintln!("crashsim: {cases} cases of {steps} steps in {} ms", started.elapsed().as_millis());
}

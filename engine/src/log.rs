//! A partition log: ordered segments, offset assignment, positional reads for
//! zero-copy fetch, retention. The write side is in `writer`.
//!
//! Produce path: `append` validates every batch of the request and assigns
//! offsets synchronously (so order is fixed and a bad batch lands nothing), then
//! queues them. One writer task per log (`writer::run`) turns the queue into
//! io_uring writes, a few in flight at once (group commit: everything queued
//! while earlier writes run goes out together), fdatasyncs when an append asked
//! for durability or the flush policy says so, and only then moves the high
//! watermark and acknowledges.
//!
//! The log is owned by one shard (`Rc`, not `Send`): no locks on this path.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::batch::{self, BatchHeader};
use crate::config::{LogConfig, TimestampType};
use crate::disk_budget::DiskBudget;
use crate::durable;
use crate::epoch_cache::EpochCache;
use crate::error::{EngineError, Result};
use crate::index;
use crate::index::write_synced;
use crate::producer_snapshot::{self, ProducerRecovery};
use crate::producer_state::{AppendPlan, ProducerStates};
use crate::sealed_files::{SealedFiles, SEALED_FILES_OPEN_MAX};
use crate::segment::{ScanReport, Segment};
use crate::watch::LogWatch;
use writer::{sync_dir_if_needed, QueuedAppend};

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod open_files_tests;
mod replica;
#[cfg(test)]
mod replica_tests;
mod writer;
#[cfg(test)]
mod writer_tests;

const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Descriptors one log holds open between requests, whatever its segment
/// count: its active segment twice (the read side, and the io_uring write
/// side once written to) and at most [`SEALED_FILES_OPEN_MAX`] sealed
/// segments (`sealed_files`). Index files are read into memory at open and
/// written whole, never held open. Above it, for a moment: the files of
/// fetches in flight (each holds its slice's file until sent), a roll's
/// sealed segment until its background sync ends, and one directory or
/// checkpoint file during a sync or write. The broker's open-file budget
/// per partition is this.
pub const FILES_OPEN_MAX: u64 = 2 + SEALED_FILES_OPEN_MAX as u64;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// What every in-sync replica has: consumers.
    HighWatermark,
    /// Everything written here: followers replicating the log.
    LogEnd,
}

/// What one `append` call was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    pub log_start_offset: u64,
    /// On a LogAppendTime topic, the time stamped on the batches (Produce's
    /// `log_append_time_ms`); -1 on a CreateTime topic.
    pub log_append_time_ms: i64,
}

/// A byte range of a segment file holding whole batches (except possibly the
/// last, cut at `max_bytes` as Kafka does), ready for sendfile.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<fs::File>,
    pub position: u64,
    pub len: u64,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub slice: Option<FileSlice>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub dir: PathBuf,
    pub segments: usize,
    pub bytes_scanned: u64,
    pub batches_scanned: u64,
    pub truncated_bytes: u64,
    pub truncation_reason: Option<String>,
    /// Segments after a torn, never-synced sealed segment, deleted.
    pub segments_dropped: usize,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub elapsed_us: u64,
    /// Idempotent-producer state: snapshot loaded and batch headers replayed.
    pub producer_state: ProducerRecovery,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: u64,
}

/// Counters for the write path (the log's probe): group-commit effectiveness
/// is `batches / commits`, write size `bytes / writes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub batches: u64,
    pub bytes: u64,
    /// Groups of appends acknowledged together (each after at most one fdatasync).
    pub commits: u64,
    /// `writev` submissions.
    pub writes: u64,
    /// Most writes that were in flight at once.
    pub writes_in_flight_peak: u64,
    pub syncs: u64,
    pub rolls: u64,
}

/// Bytes of a batch the broker rewrites (see `writer::QueuedAppend`).
const OWNED_HEAD_BYTES: usize = 16;
/// Heads are cut from shared buffers of this size, so a one-batch append
/// costs no allocation for its head: a buffer of its own would cost a malloc
/// and a free (4-6% of a 1 KiB append's instructions, callgrind).
const HEAD_ARENA_BYTES: usize = 16 << 10;

thread_local! {
    /// Per thread, not per log: a shard's thousands of idle logs would each
    /// hold a part-used buffer. A buffer lives until its last head is written.
    static HEAD_ARENA: Cell<BytesMut> = Cell::new(BytesMut::new());
}

struct LogState {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<u64, Segment>,
    /// The sealed segments' open files (shared with the segments).
    sealed_files: Arc<SealedFiles>,
    log_start_offset: u64,
    /// Next offset to hand out; runs ahead of the log end by the queue.
    next_offset: u64,
    /// Offset after the last batch written and acknowledged here (the log end
    /// offset, LEO): what a follower's fetch reads up to.
    log_end: u64,
    /// What consumers may read up to: the log end for a log nobody
    /// replicates; for a replicated one, what every in-sync replica has
    /// (`set_high_watermark`, driven by the broker's replication).
    high_watermark: u64,
    /// Whether the high watermark is set from outside (`set_replicated`).
    replicated: bool,
    /// The last high watermark written to its checkpoint (`checkpoint_high_watermark`).
    hw_checkpointed: u64,
    /// Byte position of the high watermark: segment base and position in it
    /// (reads stop there).
    hw_segment: u64,
    hw_position: u64,
    leader_epoch: i32,
    /// Where each leader epoch starts (`epoch_cache`).
    epochs: EpochCache,
    /// Serializes writes of the epoch checkpoint.
    epoch_lock: Rc<tokio::sync::Mutex<()>>,
    /// Idempotent producers' sequence state, updated as offsets are assigned.
    producers: ProducerStates,
    queue: Vec<QueuedAppend>,
    writer_running: bool,
    /// Sealed segments (by base offset) whose background fdatasync has not
    /// finished (`writer::seal`).
    unsynced_sealed: Vec<u64>,
    /// The active segment's write side on io_uring (opened by the first write).
    active_writer: Option<Rc<tokio_uring::fs::File>>,
    /// Rolls so far, and how many of them a completed directory fsync
    /// covers: while `dir_synced_rolls < rolls`, a segment file's name may not
    /// be durable and the next durable commit fsyncs the directory first. A
    /// count, not a flag: a sync that started before a roll must not clear
    /// what that roll needs.
    dir_rolls: u64,
    dir_synced_rolls: u64,
    /// Serializes log-start checkpoint writes (DeleteRecords), so two
    /// concurrent requests cannot leave the smaller offset on disk.
    checkpoint_lock: Rc<tokio::sync::Mutex<()>>,
    /// Segment removals (retention, DeleteRecords) whose unlinks and
    /// directory fsync are still running on a blocking thread.
    removals_pending: u32,
    removals_done: Rc<tokio::sync::Notify>,
    /// Set while the writer waits with writes in flight: new appends wake it
    /// so they can be submitted before those writes finish.
    writer_waker: Option<Waker>,
    /// Records committed since open, and how many of them a completed sync
    /// covers (`flush.messages` counts the difference). Both only grow, so a
    /// flush that races the writer's own syncs cannot lose count of writes.
    records_committed: u64,
    records_synced: u64,
    /// Wall-clock ms of the oldest write not yet synced; `None` only when
    /// every acknowledged write is known to be synced.
    unflushed_since_ms: Option<u64>,
    /// Set after an fdatasync failure: the page cache can no longer be trusted
    /// to match the disk, so the log refuses writes until reopened (fsyncgate).
    offline: Option<String>,
    /// Failure probe: after letting this many writes through, the next
    /// fails with this errno.
    inject_write_error: Option<(u64, i32)>,
    /// Failure probe: a simulated disk this log's segment writes are charged
    /// to (`set_disk_budget`), and how much of the active segment is charged.
    disk: Option<Arc<DiskBudget>>,
    disk_active_charged_bytes: u64,
    /// Failure probe: the writer task panics at its next round.
    #[cfg(test)]
    inject_writer_panic: bool,
    watch: Arc<LogWatch>,
    stats: LogStats,
}

/// A partition's log. Cheap to clone (shared handle within one shard).
#[derive(Clone)]
pub struct PartitionLog {
    st: Rc<RefCell<LogState>>,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log has at least one segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log has at least one segment")
    }
    fn publish(&self) {
        debug_assert!(self.log_start_offset <= self.high_watermark);
        debug_assert!(self.high_watermark <= self.log_end);
        debug_assert!(self.log_end <= self.next_offset);
        self.watch.publish(self.high_watermark, self.log_start_offset, self.log_end);
    }

    /// Sets the high watermark's offset and byte position (`hw` is clamped
    /// to the log; inside a batch, reads stop at that batch's start).
    fn place_high_watermark(&mut self, hw: u64) {
        let hw = hw.clamp(self.log_start_offset.min(self.log_end), self.log_end);
        let Some((&base, seg)) = self.segments.range(..=hw).next_back() else {
            // Below the first segment (log start inside nothing yet): nothing readable.
            let first = self.segments.keys().next().copied().unwrap_or(0);
            self.high_watermark = hw;
            self.hw_segment = first;
            self.hw_position = 0;
            return;
        };
        let position = if hw >= seg.next_offset {
            seg.size
        } else {
            match seg.locate(hw) {
                Ok(Some((pos, _))) => pos,
                _ => seg.size,
            }
        };
        self.high_watermark = hw;
        self.hw_segment = base;
        self.hw_position = position;
    }
}

/// A log read back from disk by [`PartitionLog::recover`], not yet attached to
/// a shard. `Send`: recovery (reads, CRC scans, truncations, fsyncs) runs on a
/// blocking thread, so opening thousands of partitions never stalls the shard
/// that will own them; [`PartitionLog::from_recovered`] then takes it over on
/// the shard's own thread.
pub struct RecoveredLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<u64, Segment>,
    sealed_files: Arc<SealedFiles>,
    log_start_offset: u64,
    producers: ProducerStates,
    epochs: EpochCache,
    /// The high watermark last checkpointed, for a replicated log.
    hw_checkpoint: Option<u64>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it: every segment's
    /// unindexed tail is scanned and CRC-checked, a torn tail of the last segment
    /// is truncated, missing or stale indexes are rebuilt. Blocking: on a shard
    /// use [`PartitionLog::recover`] on a blocking thread instead.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(PartitionLog, RecoveryReport)> {
        let (recovered, report) = Self::recover(dir, config)?;
        Ok((Self::from_recovered(recovered), report))
    }

    /// The blocking half of [`PartitionLog::open`]: everything that touches the
    /// disk, with no `Rc` in sight.
    pub fn recover(dir: &Path, config: LogConfig) -> Result<(RecoveredLog, RecoveryReport)> {
        config.validate().map_err(|e| EngineError::Recovery { dir: dir.display().to_string(), reason: e })?;
        let started = Instant::now();
        let now = now_ms();
        durable::create_dir_all(dir)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<u64>() {
                    bases.push(base);
                }
            } else if name.ends_with(".tmp") {
                // An index write that did not finish its rename.
                let _ = durable::remove_file(&dir.join(&*name));
            }
        }
        bases.sort_unstable();
        let mut report = RecoveryReport { dir: dir.to_path_buf(), ..Default::default() };
        let mut segments = BTreeMap::new();
        let sealed_files = SealedFiles::new(dir.to_path_buf());
        let mut expected_next: Option<u64> = None;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let (mut seg, scan): (Segment, ScanReport) =
                Segment::open(dir, base, last, now, config.index_interval_bytes, &sealed_files)?;
            if let Some(next) = expected_next {
                if next != base {
                    return Err(EngineError::Recovery {
                        dir: dir.display().to_string(),
                        reason: format!("segment {base} follows a segment ending at offset {next}"),
                    });
                }
            }
            // A sealed segment without indexes was rolled but its background
            // sync had not finished (`log::writer::seal`). Whole: sync it, and
            // its indexes mark it durable. Torn: nothing after the tear can be
            // trusted, later segments included (writeback does not go in log
            // order), and none of it was acknowledged as durable: a durable
            // append syncs every sealed segment before it. Ending short of the
            // next segment (a crash lost whole unsynced batches) is the same.
            let cut_short = !last && !scan.indexed && seg.next_offset != bases[i + 1];
            let torn_sealed = !last && (scan.truncated_bytes > 0 || cut_short);
            if !last && !scan.indexed && !torn_sealed {
                durable::sync_data(seg.active_file())?;
                seg.write_indexes()?;
            }
            if !last && !torn_sealed {
                // Only the active segment keeps its file open (`sealed_files`);
                // a torn sealed one becomes the active one below.
                seg.seal_file();
            }
            expected_next = Some(seg.next_offset);
            report.bytes_scanned += scan.bytes_scanned;
            report.batches_scanned += scan.batches;
            report.truncated_bytes += scan.truncated_bytes;
            if scan.reason.is_some() {
                report.truncation_reason = scan.reason.clone();
            }
            segments.insert(base, seg);
            if torn_sealed {
                for &later in &bases[i + 1..] {
                    report.truncated_bytes += fs::metadata(Segment::log_path(dir, later))?.len();
                    Segment::delete_files_at(dir, later)?;
                    report.segments_dropped += 1;
                }
                // Else they come back at the next crash, once the log has
                // grown past their base offsets again.
                durable::sync_dir(dir)?;
                break;
            }
        }
        let checkpoint = read_checkpoint(dir)?;
        let end = segments.values().next_back().map_or(0, |s| s.next_offset);
        if let Some(start) = checkpoint.filter(|&c| c > end) {
            restart_at_log_start(
                dir,
                &mut segments,
                &sealed_files,
                start,
                now,
                config.index_interval_bytes,
                &mut report,
            )?;
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0, now, config.index_interval_bytes, &sealed_files)?);
        }
        let first_base = *segments.keys().next().unwrap();
        let active = segments.values().next_back().unwrap();
        let log_end = active.next_offset;
        let log_start = checkpoint.unwrap_or(0).max(first_base).min(log_end);
        let (mut producers, producer_report) = producer_snapshot::recover(dir, &segments, log_end, now)?;
        producers.enforce_cap(config.producer_ids_max);
        let mut epochs = EpochCache::load(dir)
            .map_err(|e| EngineError::Recovery { dir: dir.display().to_string(), reason: e.to_string() })?;
        if epochs.truncate_from(log_end) {
            // A crash cut the tail the newest epochs started in.
            index::write_synced(&EpochCache::path(dir), &epochs.encode())?;
        }
        let hw_checkpoint = read_hw_checkpoint(dir)?.map(|hw| hw.clamp(log_start, log_end));
        report.producer_state = producer_report;
        report.segments = segments.len();
        report.log_start_offset = log_start;
        report.log_end_offset = log_end;
        report.elapsed_us = started.elapsed().as_micros() as u64;
        let recovered = RecoveredLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            sealed_files,
            log_start_offset: log_start,
            producers,
            epochs,
            hw_checkpoint,
        };
        Ok((recovered, report))
    }

    /// Attaches a recovered log to the calling (shard) thread.
    pub fn from_recovered(r: RecoveredLog) -> PartitionLog {
        let active = r.segments.values().next_back().expect("recovery leaves at least one segment");
        let (log_end, hw_segment, hw_position) = (active.next_offset, active.base_offset, active.size);
        let watch = Arc::new(LogWatch::default());
        let st = LogState {
            dir: r.dir,
            config: r.config,
            segments: r.segments,
            sealed_files: r.sealed_files,
            log_start_offset: r.log_start_offset,
            next_offset: log_end,
            log_end,
            high_watermark: log_end,
            replicated: false,
            hw_checkpointed: r.hw_checkpoint.unwrap_or(r.log_start_offset),
            hw_segment,
            hw_position,
            leader_epoch: r.epochs.latest_epoch().unwrap_or(0),
            epochs: r.epochs,
            epoch_lock: Rc::default(),
            producers: r.producers,
            queue: Vec::new(),
            writer_running: false,
            unsynced_sealed: Vec::new(),
            active_writer: None,
            dir_rolls: 0,
            dir_synced_rolls: 0,
            checkpoint_lock: Rc::default(),
            removals_pending: 0,
            removals_done: Rc::default(),
            writer_waker: None,
            records_committed: 0,
            records_synced: 0,
            // The tail may have been written by a process that died before
            // syncing it, and still be in the page cache only: the first
            // durable retry or flush syncs it (a clean file syncs in ~50 us).
            unflushed_since_ms: (hw_position > 0).then(now_ms),
            offline: None,
            inject_write_error: None,
            disk: None,
            disk_active_charged_bytes: 0,
            #[cfg(test)]
            inject_writer_panic: false,
            watch,
            stats: LogStats::default(),
        };
        st.publish();
        PartitionLog { st: Rc::new(RefCell::new(st)) }
    }

    pub fn dir(&self) -> PathBuf {
        self.st.borrow().dir.clone()
    }
    pub fn config(&self) -> LogConfig {
        self.st.borrow().config.clone()
    }
    /// Applies new topic configs; they take effect from the next append/roll/retention pass.
    pub fn set_config(&self, config: LogConfig) -> std::result::Result<(), String> {
        config.validate()?;
        let mut st = self.st.borrow_mut();
        for seg in st.segments.values_mut() {
            seg.index_interval_bytes = config.index_interval_bytes;
        }
        st.config = config;
        Ok(())
    }
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.st.borrow_mut().leader_epoch = epoch;
    }
    /// The writer's state in one line, for logs about a log that seems stuck.
    pub fn describe_state(&self) -> String {
        let st = self.st.borrow();
        format!(
            "writer_running={} queue={} unsynced_sealed={} removals={} offline={:?} epoch_lock_free={} next={} log_end={}",
            st.writer_running,
            st.queue.len(),
            st.unsynced_sealed.len(),
            st.removals_pending,
            st.offline,
            st.epoch_lock.try_lock().is_ok(),
            st.next_offset,
            st.log_end
        )
    }
    pub fn watch(&self) -> Arc<LogWatch> {
        self.st.borrow().watch.clone()
    }
    pub fn log_start_offset(&self) -> u64 {
        self.st.borrow().log_start_offset
    }
    /// What consumers may read up to (see `LogState::high_watermark`).
    pub fn high_watermark(&self) -> u64 {
        self.st.borrow().high_watermark
    }
    /// Offset after the last batch written here (LEO).
    pub fn log_end_offset(&self) -> u64 {
        self.st.borrow().log_end
    }
    /// With no transactions yet, the last stable offset is the high watermark.
    pub fn last_stable_offset(&self) -> u64 {
        self.high_watermark()
    }
    pub fn size_bytes(&self) -> u64 {
        self.st.borrow().segments.values().map(|s| s.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.st.borrow().segments.len()
    }

    pub fn stats(&self) -> LogStats {
        self.st.borrow().stats
    }

    /// Failure probe for tests: the next write fails with `errno` (e.g. ENOSPC).
    pub fn inject_write_error(&self, errno: i32) {
        self.inject_write_error_after(0, errno);
    }

    /// Failure probe for tests: `writes` more writes succeed, the one after
    /// fails with `errno` (a failure behind writes still in flight).
    pub fn inject_write_error_after(&self, writes: u64, errno: i32) {
        self.st.borrow_mut().inject_write_error = Some((writes, errno));
    }

    /// Failure probe: charges this log's segment writes to a simulated disk
    /// (see `disk_budget`), counting the data it holds already.
    pub fn set_disk_budget(&self, disk: Arc<DiskBudget>) {
        let mut st = self.st.borrow_mut();
        if let Some(old) = st.disk.take() {
            release_disk(&mut st, &old);
        }
        disk.charge_existing(st.segments.values().map(|s| s.size).sum());
        st.disk_active_charged_bytes = st.active().size;
        st.disk = Some(disk);
    }

    /// Forgets idempotent producers idle for `producer.id.expiration.ms`
    /// (the owner calls this periodically; rolls and closes do it too).
    /// Returns how many were forgotten.
    pub fn expire_producers(&self, now_ms: u64) -> usize {
        let mut st = self.st.borrow_mut();
        let max_idle_ms = st.config.producer_id_expiration_ms;
        st.producers.expire(now_ms, max_idle_ms)
    }

    /// Idempotent producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.st.borrow().producers.len()
    }

    #[cfg(test)]
    pub(crate) fn inject_writer_panic(&self) {
        self.st.borrow_mut().inject_writer_panic = true;
    }

    /// Validates, assigns offsets to and durably queues `batches` (one produce
    /// request's worth for this partition). Resolves once written, and synced if
    /// `sync`. Either every batch lands or none does.
    ///
    /// Batches of idempotent producers are checked against the producer state
    /// here, before offsets are assigned, so the order of checks is the order
    /// of the log. A retry of batches already appended is not written again:
    /// it resolves with the original offsets once those are written.
    pub async fn append<B: Into<Bytes>>(&self, batches: Vec<B>, sync: bool) -> Result<AppendInfo> {
        let batches: Vec<Bytes> = batches.into_iter().map(Into::into).collect();
        let (rx, info) = {
            let mut st = self.st.borrow_mut();
            if let Some(why) = &st.offline {
                return Err(EngineError::Storage(io::Error::other(format!("log is offline: {why}"))));
            }
            let mut headers = Vec::with_capacity(batches.len());
            for b in &batches {
                headers.push(batch::validate_produced(b, st.config.max_message_bytes)?);
            }
            let now = now_ms();
            // On a LogAppendTime topic every batch gets this time as its
            // maxTimestamp (Kafka's rule; timestamps are then not checked).
            // On a CreateTime topic a producer's LogAppendTime bit is cleared,
            // as Kafka does, and its timestamps are checked like any other.
            let log_append_time = st.config.timestamp_type == TimestampType::LogAppendTime;
            let append_time_ms = if log_append_time { now.min(i64::MAX as u64) as i64 } else { -1 };
            let stamp = log_append_time || headers.iter().any(BatchHeader::is_log_append_time);
            for h in headers.iter_mut() {
                if log_append_time {
                    h.attributes |= batch::LOG_APPEND_TIME_FLAG;
                    h.max_timestamp = append_time_ms;
                } else {
                    h.attributes &= !batch::LOG_APPEND_TIME_FLAG;
                    let (before, after) =
                        (st.config.message_timestamp_before_max_ms, st.config.message_timestamp_after_max_ms);
                    batch::check_timestamps(h, now, before, after)?;
                }
            }
            // A stamp rewrites bytes through maxTimestamp (and the CRC): the
            // append owns those instead of the first 16.
            let head_len = if stamp { batch::STAMP_HEAD_BYTES } else { OWNED_HEAD_BYTES };
            match st.producers.check_append(&headers, st.next_offset, now)? {
                AppendPlan::Duplicate { base_offset, last_offset, max_timestamp } => {
                    // A retry is answered with the original's append time.
                    let log_append_time_ms = if log_append_time { max_timestamp } else { -1 };
                    let info = AppendInfo {
                        base_offset,
                        last_offset,
                        log_start_offset: st.log_start_offset,
                        log_append_time_ms,
                    };
                    let unsynced = sync && st.unflushed_since_ms.is_some();
                    if last_offset < st.log_end && !unsynced {
                        return Ok(info);
                    }
                    // The original is still queued or being written (or, for a
                    // durable retry, not synced yet): an empty append queued
                    // behind it resolves when it does, or fails with it.
                    (self.enqueue(&mut st, Bytes::new(), OWNED_HEAD_BYTES, Vec::new(), Vec::new(), sync), info)
                }
                AppendPlan::Append(updates) => {
                    let base_offset = st.next_offset;
                    let epoch = st.leader_epoch;
                    let need = head_len * batches.len();
                    let mut arena = HEAD_ARENA.with(Cell::take);
                    if arena.capacity() < need {
                        arena = BytesMut::with_capacity(need.max(HEAD_ARENA_BYTES));
                    }
                    for (b, h) in batches.iter().zip(headers.iter_mut()) {
                        let at = arena.len();
                        arena.extend_from_slice(&b[..head_len]);
                        let head = &mut arena[at..];
                        batch::set_base_offset(head, st.next_offset);
                        batch::set_partition_leader_epoch(head, epoch);
                        if stamp {
                            batch::stamp_timestamp(head, &b[head_len..], h.is_log_append_time(), h.max_timestamp);
                            h.crc = u32::from_be_bytes(head[17..21].try_into().expect("4 bytes"));
                        }
                        h.base_offset = st.next_offset as i64;
                        h.partition_leader_epoch = epoch;
                        st.next_offset = h.last_offset() as u64 + 1;
                    }
                    let heads = arena.split().freeze();
                    HEAD_ARENA.with(|a| a.set(arena));
                    st.producers.apply(updates);
                    let max = st.config.producer_ids_max;
                    st.producers.enforce_cap(max);
                    let last_offset = st.next_offset - 1;
                    let info = AppendInfo {
                        base_offset,
                        last_offset,
                        log_start_offset: st.log_start_offset,
                        log_append_time_ms: append_time_ms,
                    };
                    st.stats.appends += 1;
                    // In place: the same vector, each batch minus its head.
                    let bodies = batches
                        .into_iter()
                        .map(|mut b| {
                            b.advance(head_len);
                            b
                        })
                        .collect();
                    (self.enqueue(&mut st, heads, head_len, bodies, headers, sync), info)
                }
            }
        };
        match rx.await {
            Ok(Ok(())) => Ok(info),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Storage(io::Error::other("log writer stopped"))),
        }
    }

    /// Queues an append for the writer task (starting it if idle).
    fn enqueue(
        &self,
        st: &mut LogState,
        heads: Bytes,
        head_len: usize,
        bodies: Vec<Bytes>,
        headers: Vec<BatchHeader>,
        sync: bool,
    ) -> oneshot::Receiver<Result<()>> {
        self.enqueue_as(st, heads, head_len, bodies, headers, sync, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_as(
        &self,
        st: &mut LogState,
        heads: Bytes,
        head_len: usize,
        bodies: Vec<Bytes>,
        headers: Vec<BatchHeader>,
        sync: bool,
        replayed: bool,
    ) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        st.queue.push(QueuedAppend { heads, head_len, bodies, headers, sync, replayed, done: tx });
        if !st.writer_running {
            st.writer_running = true;
            tokio_uring::spawn(writer::run(self.st.clone()));
        } else if let Some(waker) = st.writer_waker.take() {
            waker.wake();
        }
        rx
    }

    /// Finds the data for a consumer's fetch at `offset`: up to `max_bytes`
    /// starting at the batch holding `offset`, never past the high watermark.
    /// With `min_one`, a first batch larger than `max_bytes` is returned whole
    /// (KIP-74). An offset between the high watermark and the log end is not
    /// out of range: nothing is readable there yet.
    pub fn read(&self, offset: u64, max_bytes: u64, min_one: bool) -> Result<ReadResult> {
        self.read_to(offset, max_bytes, min_one, ReadLimit::HighWatermark)
    }

    /// A read bounded by `limit`: the high watermark (consumers) or the log
    /// end (followers replicating the log).
    pub fn read_to(&self, offset: u64, max_bytes: u64, min_one: bool, limit: ReadLimit) -> Result<ReadResult> {
        let st = self.st.borrow();
        let out_of_range =
            || EngineError::OffsetOutOfRange { offset, log_start: st.log_start_offset, log_end: st.log_end };
        if offset < st.log_start_offset || offset > st.log_end {
            return Err(out_of_range());
        }
        let mut result =
            ReadResult { slice: None, high_watermark: st.high_watermark, log_start_offset: st.log_start_offset };
        let bound = match limit {
            ReadLimit::HighWatermark => st.high_watermark,
            ReadLimit::LogEnd => st.log_end,
        };
        if offset >= bound {
            return Ok(result);
        }
        for seg in
            st.segments.range(..=offset).next_back().into_iter().chain(st.segments.range(offset + 1..)).map(|(_, s)| s)
        {
            let Some((pos, h)) = seg.locate(offset)? else { continue };
            let end = match limit {
                ReadLimit::LogEnd => seg.size,
                ReadLimit::HighWatermark if seg.base_offset == st.hw_segment => st.hw_position.min(seg.size),
                ReadLimit::HighWatermark if seg.base_offset > st.hw_segment => 0,
                ReadLimit::HighWatermark => seg.size,
            };
            if pos >= end {
                break;
            }
            let mut len = (end - pos).min(max_bytes);
            if min_one {
                len = len.max((h.total_len() as u64).min(end - pos));
            }
            if len > 0 {
                result.slice = Some(FileSlice { file: seg.file()?, position: pos, len });
            }
            return Ok(result);
        }
        Ok(result)
    }

    /// Offset and timestamp of the first record with timestamp ≥ `target`
    /// (ListOffsets by time). Exact for uncompressed batches; for compressed ones
    /// the batch's first offset (a consumer starting there misses nothing). A
    /// LogAppendTime batch's records all have its `maxTimestamp`.
    pub fn offset_for_timestamp(&self, target: i64) -> Result<Option<(u64, i64)>> {
        let st = self.st.borrow();
        for seg in st.segments.values() {
            let Some((pos, h)) = seg.find_timestamp(target)? else { continue };
            if h.base_offset as u64 >= st.high_watermark {
                return Ok(None);
            }
            if h.compression() == 0 && !h.is_log_append_time() {
                let bytes = seg.read_batch(pos, &h)?;
                let mut found = None;
                batch::walk_records(&bytes[batch::HEADER_LEN..], h.records_count, |r| {
                    // Producer-supplied values: saturate rather than overflow.
                    let ts = h.base_timestamp.saturating_add(r.timestamp_delta);
                    if found.is_none() && ts >= target {
                        found = Some((h.base_offset as u64 + r.offset_delta as u64, ts));
                    }
                })?;
                if let Some((off, ts)) = found {
                    return Ok(Some((off.max(st.log_start_offset), ts)));
                }
            }
            return Ok(Some(((h.base_offset as u64).max(st.log_start_offset), h.max_timestamp)));
        }
        Ok(None)
    }

    /// Advances the log start offset to `offset` (Kafka's DeleteRecords) and drops
    /// segments wholly before it. Returns the new log start offset once the
    /// new start is durable (its checkpoint written and synced off the shard's
    /// thread); concurrent calls are applied in order and never move it back.
    pub async fn delete_records(&self, offset: u64) -> Result<u64> {
        {
            let st = self.st.borrow();
            if offset > st.high_watermark {
                return Err(EngineError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start_offset,
                    log_end: st.high_watermark,
                });
            }
        }
        self.advance_log_start(offset).await
    }

    /// Moves the log start to `offset` (≤ the log end) durably and drops the
    /// segments wholly below it; `delete_records` and a follower's
    /// `follow_log_start` bound `offset` each their own way.
    async fn advance_log_start(&self, offset: u64) -> Result<u64> {
        let (dir, lock) = {
            let st = self.st.borrow();
            (st.dir.clone(), st.checkpoint_lock.clone())
        };
        let _serialized = lock.lock().await;
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        let written = tokio::task::spawn_blocking(move || write_checkpoint(&dir, offset)).await;
        written.map_err(io::Error::other).and_then(|r| r)?;
        {
            let mut st = self.st.borrow_mut();
            if offset > st.log_start_offset {
                st.log_start_offset = offset;
                st.publish();
            }
        }
        self.enforce_retention(now_ms());
        Ok(self.log_start_offset())
    }

    /// Deletes sealed segments by `retention.ms` (a segment's age is that of
    /// its newest record) and `retention.bytes`, and those wholly below the
    /// log start offset. An idle log whose active segment has expired is
    /// rolled first, as Kafka does, so old data never lingers because nothing
    /// new arrived. Files are unlinked on a blocking thread (an unlink of a
    /// large file frees its extents, which takes a while); readers holding a
    /// segment's file keep its data until they finish.
    pub fn enforce_retention(&self, now: u64) -> RetentionReport {
        self.roll_if_expired(now);
        let mut st = self.st.borrow_mut();
        let mut report = RetentionReport::default();
        let mut total: u64 = st.segments.values().map(|s| s.size).sum();
        let mut doomed = Vec::new();
        loop {
            if st.segments.len() < 2 {
                break;
            }
            let (first, second_base) = {
                let mut it = st.segments.values();
                let first = it.next().unwrap();
                (first, it.next().unwrap().base_offset)
            };
            let expired = st.config.retention_ms.is_some_and(|r| now.saturating_sub(first.newest_ms()) > r);
            let oversize = st.config.retention_bytes.is_some_and(|r| total - first.size >= r);
            let below_start = second_base <= st.log_start_offset;
            // As Kafka: retention never deletes what the replicas have not all
            // got (a follower would have to start over past data it never saw).
            let committed = second_base <= st.high_watermark;
            if !(below_start || (committed && (expired || oversize))) {
                break;
            }
            let base = first.base_offset;
            let seg = st.segments.remove(&base).unwrap();
            st.sealed_files.forget(base);
            total -= seg.size;
            if let Some(disk) = &st.disk {
                disk.refund(seg.size);
            }
            report.segments_deleted += 1;
            report.bytes_deleted += seg.size;
            // Recovery takes the first remaining segment's base as the log
            // start when it is above the checkpoint, so this needs no write.
            st.log_start_offset = st.log_start_offset.max(second_base);
            doomed.push(base);
        }
        report.log_start_offset = st.log_start_offset;
        if report.segments_deleted > 0 {
            st.publish();
            // The removals must be durable before any later durable append is
            // acknowledged: a deleted segment whose background sync had not
            // finished would come back torn at a crash, and recovery would
            // drop every segment after it (durable ones too, since later
            // durable appends no longer sync it). Durable commits wait for
            // `removals` (`wait_for_removals`).
            let dir = st.dir.clone();
            st.removals_pending += 1;
            let st_rc = self.st.clone();
            tokio_uring::spawn(async move {
                let removed = tokio::task::spawn_blocking(move || {
                    for base in doomed {
                        if let Err(e) = Segment::delete_files_at(&dir, base) {
                            tracing::error!(dir = %dir.display(), base, "deleting a segment's files failed: {e}");
                        }
                    }
                    durable::sync_dir(&dir)
                })
                .await;
                let mut s = st_rc.borrow_mut();
                s.removals_pending -= 1;
                if let Err(e) = removed.map_err(io::Error::other).and_then(|r| r) {
                    s.offline = Some(format!("fsync of the log directory after removing segments failed: {e}"));
                }
                s.removals_done.notify_waiters();
            });
        }
        report
    }

    /// Rolls the active segment of an idle log when retention says its data
    /// is due (by age or size), so the next pass can delete it.
    fn roll_if_expired(&self, now: u64) {
        let due = {
            let st = self.st.borrow();
            let active = st.active();
            let idle = !st.writer_running && st.queue.is_empty() && st.offline.is_none();
            let by_age = st.config.retention_ms.is_some_and(|r| now.saturating_sub(active.newest_ms()) > r);
            let total: u64 = st.segments.values().map(|s| s.size).sum();
            let by_size = st.config.retention_bytes.is_some_and(|r| total > r && st.segments.len() == 1);
            idle && active.size > 0 && (by_age || by_size)
        };
        if due {
            if let Err(e) = writer::roll_idle(&self.st) {
                tracing::warn!(dir = %self.dir().display(), "rolling an expired segment failed: {e}");
            }
        }
    }

    /// True when `flush.ms` says unsynced data is due.
    pub fn flush_due(&self, now: u64) -> bool {
        let st = self.st.borrow();
        match (st.config.flush_ms, st.unflushed_since_ms) {
            (Some(ms), Some(since)) => now.saturating_sub(since) >= ms,
            _ => false,
        }
    }

    /// fdatasyncs the active segment, and sealed ones whose background sync
    /// is still running.
    pub async fn flush(&self) -> Result<()> {
        let (file, committed, started_ms) = {
            let st = self.st.borrow();
            if st.unflushed_since_ms.is_none() {
                return Ok(());
            }
            (st.active().active_file().clone(), st.records_committed, now_ms())
        };
        wait_for_removals(&self.st).await;
        sync_sealed(&self.st).await?;
        // A segment a roll just created needs its name made durable too.
        sync_dir_if_needed(&self.st).await?;
        let synced = sync_file(&file).await;
        let mut st = self.st.borrow_mut();
        if let Err(e) = synced {
            st.offline = Some(e.to_string());
            return Err(e.into());
        }
        // The sync covers what was committed when the flush started; writes
        // committed while it ran may have missed it and stay unflushed.
        st.records_synced = st.records_synced.max(committed);
        if st.records_synced == st.records_committed {
            st.unflushed_since_ms = None;
        } else if let Some(since) = st.unflushed_since_ms.as_mut() {
            *since = (*since).max(started_ms);
        }
        Ok(())
    }

    /// Waits for queued appends, syncs, and persists the active segment's indexes
    /// and the producer table so the next open scans nothing. The disk work
    /// runs on a blocking thread.
    pub async fn close(&self) -> Result<()> {
        while self.st.borrow().writer_running || !self.st.borrow().unsynced_sealed.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        sync_dir_if_needed(&self.st).await?;
        let (file, indexes, snapshot) = {
            let mut st = self.st.borrow_mut();
            let active = st.active();
            let (file, indexes, end) = (active.active_file().clone(), active.index_files(), active.next_offset);
            (file, indexes, producer_snapshot_job(&mut st, end))
        };
        let done = tokio::task::spawn_blocking(move || {
            durable::sync_data(&file)?;
            indexes.write()?;
            snapshot.write()
        })
        .await;
        done.map_err(io::Error::other).and_then(|r| r)?;
        self.checkpoint_high_watermark().await?;
        let mut st = self.st.borrow_mut();
        if let Some(disk) = st.disk.take() {
            release_disk(&mut st, &disk);
        }
        Ok(())
    }

    /// Removes the whole log from disk (DeleteTopics). The handle is dead after.
    /// The directory is first renamed to a name recovery never opens
    /// (`<dir>.deleted`) and the rename made durable, so a crash half-way
    /// through the removal cannot leave a partial log that a new partition of
    /// the same name would pick up; the files go on a blocking thread.
    pub async fn remove(&self) -> Result<()> {
        while self.st.borrow().writer_running {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let dir = {
            let mut st = self.st.borrow_mut();
            st.offline = Some("deleted".into());
            if let Some(disk) = st.disk.take() {
                release_disk(&mut st, &disk);
            }
            st.segments.clear();
            st.sealed_files.clear();
            st.active_writer = None;
            st.dir.clone()
        };
        let removed = tokio::task::spawn_blocking(move || remove_log_dir(&dir)).await;
        removed.map_err(io::Error::other).and_then(|r| r)?;
        Ok(())
    }
}

/// Suffix of a log directory being removed; such directories are never
/// opened, and a sweep at start finishes their removal.
pub const DELETED_DIR_SUFFIX: &str = ".deleted";

/// Renames `dir` out of the way (durably), then removes it.
pub fn remove_log_dir(dir: &Path) -> io::Result<()> {
    let mut doomed = dir.as_os_str().to_owned();
    doomed.push(DELETED_DIR_SUFFIX);
    let doomed = PathBuf::from(doomed);
    match durable::rename(dir, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        durable::sync_dir(parent)?;
    }
    durable::remove_dir_all(&doomed)
}

/// Gives back to a simulated disk everything the log has charged to it.
fn release_disk(st: &mut LogState, disk: &DiskBudget) {
    let active = st.active().base_offset;
    let sealed: u64 = st.segments.values().filter(|s| s.base_offset != active).map(|s| s.size).sum();
    disk.refund(sealed + st.disk_active_charged_bytes);
    st.disk_active_charged_bytes = 0;
}

/// Waits until segment removals in flight are durable (see `enforce_retention`).
async fn wait_for_removals(st: &Rc<RefCell<LogState>>) {
    loop {
        let done = {
            let s = st.borrow();
            if s.removals_pending == 0 {
                return;
            }
            s.removals_done.clone()
        };
        let notified = done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if st.borrow().removals_pending == 0 {
            return;
        }
        notified.await;
    }
}

/// fdatasyncs the sealed segments whose background sync has not finished. A
/// failure takes the log offline, as any failed fdatasync does.
async fn sync_sealed(st: &Rc<RefCell<LogState>>) -> Result<()> {
    let files: Vec<io::Result<Arc<fs::File>>> = {
        let s = st.borrow();
        s.unsynced_sealed.iter().filter_map(|b| s.segments.get(b)).map(|seg| seg.file()).collect()
    };
    for file in files {
        // A sync through any descriptor of the file covers its data.
        if let Err(e) = async { sync_file(&file?).await }.await {
            st.borrow_mut().offline = Some(format!("fdatasync of a sealed segment failed: {e}"));
            return Err(e.into());
        }
    }
    Ok(())
}

async fn sync_file(file: &Arc<fs::File>) -> io::Result<()> {
    let f = tokio_uring::fs::File::from_std(file.try_clone()?);
    let r = durable::synced_by(file, f.sync_data()).await;
    let _ = f.close().await;
    r
}

/// A producer-table snapshot to write: the table as of log end `end`, taken
/// on the shard, written anywhere.
pub(crate) struct SnapshotJob {
    dir: PathBuf,
    end: u64,
    entries: Vec<(i64, crate::producer_state::ProducerEntry)>,
}

impl SnapshotJob {
    pub(crate) fn write(self) -> io::Result<()> {
        producer_snapshot::write(&self.dir, self.end, &self.entries)
    }
}

/// Expires idle producers, then captures the producer table as of log end `end`.
fn producer_snapshot_job(st: &mut LogState, end: u64) -> SnapshotJob {
    st.producers.expire(now_ms(), st.config.producer_id_expiration_ms);
    SnapshotJob { dir: st.dir.clone(), end, entries: st.producers.entries_as_of(end) }
}

/// Writes a producer snapshot in the background (at a roll): only an
/// optimisation for the next open, so a failure is a warning.
fn spawn_producer_snapshot(st: &mut LogState, end: u64) {
    let job = producer_snapshot_job(st, end);
    tokio::task::spawn_blocking(move || {
        let dir = job.dir.clone();
        if let Err(e) = job.write() {
            tracing::warn!(dir = %dir.display(), "producer state snapshot at offset {end} failed: {e}");
        }
    });
}

/// DeleteRecords made the log start offset durable, but not the data up to
/// it, and a crash left the log ending before its start. As Kafka's log
/// loader does, the log restarts empty at its start offset, so offsets
/// consumers were told are deleted are never handed out again; producer
/// snapshots go with the batches they describe.
fn restart_at_log_start(
    dir: &Path,
    segments: &mut BTreeMap<u64, Segment>,
    sealed_files: &Arc<SealedFiles>,
    start: u64,
    now: u64,
    index_interval_bytes: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    for (&base, seg) in segments.iter() {
        report.truncated_bytes += seg.size;
        report.segments_dropped += 1;
        Segment::delete_files_at(dir, base)?;
    }
    segments.clear();
    sealed_files.clear();
    producer_snapshot::remove_all(dir)?;
    report.truncation_reason = Some(format!("the log ended before its start offset {start}"));
    // Its directory sync makes the removals durable too.
    segments.insert(start, Segment::create(dir, start, now, index_interval_bytes, sealed_files)?);
    Ok(())
}

fn read_checkpoint(dir: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(dir.join(LOG_START_CHECKPOINT)) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_checkpoint(dir: &Path, offset: u64) -> io::Result<()> {
    write_synced(&dir.join(LOG_START_CHECKPOINT), offset.to_string().as_bytes())
}

/// The high watermark's checkpoint (Kafka keeps one per log directory,
/// `replication-offset-checkpoint`; one per partition here): where a
/// replicated log's high watermark restarts, so consumers need not wait for
/// the followers to be heard from again before reading what was committed.
const HW_CHECKPOINT: &str = "high-watermark";

fn read_hw_checkpoint(dir: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(dir.join(HW_CHECKPOINT)) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

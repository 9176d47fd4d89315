//! The write side of a partition log. One writer task per log turns queued
//! appends into io_uring `writev`s at explicit positions, keeps up to
//! `writes_in_flight` of them in flight, and acknowledges appends in log order
//! once every byte up to their end is in the file (and synced, when asked).
//!
//! Why more than one write in flight: ext4 cannot do a buffered write without
//! blocking (`RWF_NOWAIT` gives `EOPNOTSUPP`), so io_uring hands every write to
//! an io-wq worker thread. With one write in flight the worker sleeps while the
//! shard acknowledges and validates the next round, the shard sleeps while the
//! worker copies, and every hand-off wakes a halted vCPU. With a few writes
//! queued the worker copies while the shard works (docs/benchmarks.md).
//!
//! Invariants:
//! - Writes are contiguous from the end of the acknowledged data: `reserved`
//!   is the end of the last submitted write, `written` the end of the
//!   completed prefix (completions are taken oldest first).
//! - An append is noted in the segment, counted in the high watermark and
//!   acknowledged only when `written` has passed its end, so a reader never
//!   sees part of an append and a failure never leaves part of one behind.
//! - An append never spans two segments; a roll waits for every write in
//!   flight, but not for the sealed segment's fdatasync (`seal`).
//! - A failed write: the writer lets the others in flight finish, cuts the
//!   file back to the end of the last acknowledged append and fails everything
//!   after it (offsets are handed out again).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{now_ms, spawn_producer_snapshot, sync_file, sync_sealed, LogState};
use crate::batch::BatchHeader;
use crate::durable;
use crate::error::{EngineError, Result};
use crate::segment::Segment;

/// Most offsets one segment may span: relative offsets are u32 in the
/// indexes, and Kafka rolls at i32::MAX.
pub(crate) const SEGMENT_OFFSET_SPAN_MAX: u64 = i32::MAX as u64;
/// Most iovecs handed to one `writev` (Linux's IOV_MAX).
const IOVECS_PER_WRITE_MAX: usize = 1024;
/// Buffered work is spread over free write slots in pieces of at least this
/// much: below it a write's fixed cost (the io-wq hand-off, ext4's per-call
/// inode update) outweighs the overlap gained.
const SPLIT_BYTES_MIN: u64 = 16 << 10;

/// One `append` call's batches, offsets already assigned, waiting to be
/// written. Each batch goes to disk as two iovecs, so the request's bytes are
/// never copied in user space: its broker-owned first `head_len` bytes
/// (baseOffset, batchLength, partitionLeaderEpoch: 16; through maxTimestamp,
/// 43, when the append stamps timestamps), rewritten into `heads` (one slice
/// of a buffer shared by many appends), and the rest exactly as the producer
/// sent it.
/// The writer moves the buffers into its writes instead of cloning them:
/// nothing reads them afterwards, and a clone of a fresh `Bytes` allocates.
pub(super) struct QueuedAppend {
    pub heads: Bytes,
    /// Bytes of `heads` per batch.
    pub head_len: usize,
    pub bodies: Vec<Bytes>,
    pub headers: Vec<BatchHeader>,
    pub sync: bool,
    /// Batches a leader wrote (a follower's append): their producers' state
    /// is learned from them once they are written, as recovery learns it.
    pub replayed: bool,
    pub done: oneshot::Sender<Result<()>>,
}

impl QueuedAppend {
    fn bytes(&self) -> u64 {
        self.headers.iter().map(|h| h.total_len() as u64).sum()
    }
}

/// An append taken from the queue by the writer, not yet acknowledged.
struct Pending {
    append: QueuedAppend,
    bytes: u64,
    /// Batches of it handed to writes so far.
    submitted: usize,
    /// Segment position after its last batch, once all are submitted.
    end: u64,
}

struct InFlight {
    handle: JoinHandle<io::Result<()>>,
    end: u64,
}

struct Writer {
    st: Rc<RefCell<LogState>>,
    /// In log order; those before `next` have every batch submitted.
    pending: VecDeque<Pending>,
    next: usize,
    unsubmitted_bytes: u64,
    in_flight: VecDeque<InFlight>,
    reserved: u64,
    written: u64,
    /// The append at `next` needs a fresh segment: submit nothing until the
    /// writes in flight are done and the roll happened.
    roll_needed: bool,
}

/// Should the writer task die by a panic (a bug), the log must not hang its
/// producers: it goes offline, failing what is queued and every later append
/// (dropping `Writer` drops the senders of the appends it had taken). This is
/// the engine's behaviour on its own (its tests); the `laminar` binary's panic
/// hook aborts the process before any unwinding, so there a writer panic
/// takes the whole broker down instead of leaving it half alive.
struct WriterGuard(Rc<RefCell<LogState>>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Ok(mut s) = self.0.try_borrow_mut() {
            s.offline = Some("the log writer panicked".into());
            s.writer_running = false;
            s.queue.clear();
        }
    }
}

/// The writer task: runs until the queue is drained and nothing is in flight.
pub(super) async fn run(st: Rc<RefCell<LogState>>) {
    let _guard = WriterGuard(st.clone());
    let start = st.borrow().active().size;
    let mut w = Writer {
        st,
        pending: VecDeque::new(),
        next: 0,
        unsubmitted_bytes: 0,
        in_flight: VecDeque::new(),
        reserved: start,
        written: start,
        roll_needed: false,
    };
    loop {
        w.take_queue();
        #[cfg(test)]
        if std::mem::take(&mut w.st.borrow_mut().inject_writer_panic) {
            panic!("injected writer panic");
        }
        // Submit before settling, so new writes run during a settle's fdatasync.
        if let Err(e) = w.submit() {
            w.fail(e).await;
            continue;
        }
        if let Err(e) = w.settle().await {
            w.fail(e).await;
            continue;
        }
        if w.in_flight.is_empty() {
            if w.roll_needed {
                if let Err(e) = w.roll() {
                    w.fail(e).await;
                }
                continue;
            }
            if w.pending.is_empty() {
                let mut s = w.st.borrow_mut();
                if s.queue.is_empty() {
                    s.writer_running = false;
                    return;
                }
            }
            continue;
        }
        match (NextEvent { w: &mut w }).await {
            Event::Queued => {}
            Event::Written(end, Ok(())) => w.written = end,
            Event::Written(_, Err(e)) => w.fail(e.into()).await,
        }
    }
}

impl Writer {
    fn depth(&self) -> usize {
        self.st.borrow().config.writes_in_flight
    }

    fn can_submit(&self) -> bool {
        !self.roll_needed && self.in_flight.len() < self.depth()
    }

    fn take_queue(&mut self) {
        let queue = std::mem::take(&mut self.st.borrow_mut().queue);
        for append in queue {
            let bytes = append.bytes();
            self.unsubmitted_bytes += bytes;
            self.pending.push_back(Pending { append, bytes, submitted: 0, end: 0 });
        }
    }

    /// Fills free write slots. Buffered work is spread over them (see
    /// `SPLIT_BYTES_MIN`) so that, even when every waiting append arrived at
    /// once, completions come back staggered and the pipeline stays full; work
    /// with a durable append in it goes out whole, under one fdatasync.
    fn submit(&mut self) -> Result<()> {
        while self.next < self.pending.len() && self.can_submit() {
            let free = (self.depth() - self.in_flight.len()) as u64;
            let durable = self.pending.range(self.next..).any(|p| p.append.sync);
            let pieces = if durable { 1 } else { (self.unsubmitted_bytes / SPLIT_BYTES_MIN).clamp(1, free) };
            self.submit_one(self.unsubmitted_bytes.div_ceil(pieces))?;
        }
        Ok(())
    }

    /// Submits one write of about `target` bytes (at least one batch) from the
    /// unsubmitted appends, stopping at a segment roll.
    fn submit_one(&mut self, target: u64) -> Result<()> {
        let start = self.reserved;
        let mut bufs: Vec<Bytes> = Vec::new();
        let mut total = 0u64;
        let (segment_bytes, segment_ms, base, age_base_ms) = {
            let s = self.st.borrow();
            let a = s.active();
            (s.config.segment_bytes, s.config.segment_ms, a.base_offset, a.created_ms)
        };
        let old = now_ms().saturating_sub(age_base_ms) >= segment_ms;
        while self.next < self.pending.len() {
            let p = &mut self.pending[self.next];
            if p.submitted == 0 && p.bytes > 0 {
                if total > 0 && total >= target {
                    break;
                }
                let full = start + total + p.bytes > segment_bytes;
                // The indexes hold offsets relative to the segment's base in
                // 32 bits (as Kafka's): a segment may span at most i32::MAX
                // offsets, however few bytes its batches take.
                let last = p.append.headers.last().map_or(base, |h| h.last_offset() as u64);
                let span_full = last - base > SEGMENT_OFFSET_SPAN_MAX;
                if start + total > 0 && (full || old || span_full) {
                    // Rolls happen between writes, never inside one.
                    self.roll_needed = total == 0;
                    break;
                }
            }
            let a = &mut p.append;
            let n = a.headers.len();
            while p.submitted < n && bufs.len() + 2 <= IOVECS_PER_WRITE_MAX {
                if total > 0 && total >= target {
                    break;
                }
                let i = p.submitted;
                // A lone batch (the usual produce request) hands over its head
                // buffer whole; slicing it would allocate a shared header.
                bufs.push(if n == 1 {
                    std::mem::take(&mut a.heads)
                } else {
                    a.heads.slice(i * a.head_len..(i + 1) * a.head_len)
                });
                bufs.push(std::mem::take(&mut a.bodies[i]));
                total += a.headers[i].total_len() as u64;
                p.submitted += 1;
            }
            if p.submitted < n {
                break;
            }
            p.end = start + total;
            self.next += 1;
        }
        if bufs.is_empty() {
            return Ok(()); // only empty appends (duplicate waiters), or a roll first
        }
        let (file, injected) = {
            let mut s = self.st.borrow_mut();
            s.stats.writes += 1;
            let mut injected = match s.inject_write_error {
                Some((0, errno)) => {
                    s.inject_write_error = None;
                    Some(errno)
                }
                Some((n, errno)) => {
                    s.inject_write_error = Some((n - 1, errno));
                    None
                }
                None => None,
            };
            if let (None, Some(disk)) = (injected, &s.disk) {
                if disk.try_charge(total) {
                    s.disk_active_charged_bytes += total;
                } else {
                    injected = Some(libc::ENOSPC);
                }
            }
            if s.active_writer.is_none() {
                let f = s.active().active_file().try_clone()?;
                s.active_writer = Some(Rc::new(tokio_uring::fs::File::from_std(f)));
            }
            (s.active_writer.clone().unwrap(), injected)
        };
        self.reserved += total;
        self.unsubmitted_bytes -= total;
        let handle = tokio_uring::spawn(async move {
            match injected {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => writev_all(&file, bufs, start).await,
            }
        });
        self.in_flight.push_back(InFlight { handle, end: self.reserved });
        let peak = &mut self.st.borrow_mut().stats.writes_in_flight_peak;
        *peak = (*peak).max(self.in_flight.len() as u64);
        Ok(())
    }

    /// Acknowledges, in order, the appends whose bytes are all written: one
    /// fdatasync first if any of them asked for it or `flush.messages` is due,
    /// then they are noted in the segment and the high watermark moves.
    async fn settle(&mut self) -> Result<()> {
        let mut ready = self.ready();
        if ready == 0 {
            return Ok(());
        }
        let mut records = self.records(ready);
        let sync = self.pending.iter().take(ready).any(|p| p.append.sync) || {
            let s = self.st.borrow();
            s.config.flush_messages.is_some_and(|m| s.records_committed + records - s.records_synced >= m)
        };
        if sync {
            // One fdatasync covers every write already submitted: let them
            // land, and commit their appends with these (group commit). Left
            // for later, each would pay a sync of its own.
            self.drain_in_flight().await?;
            ready = self.ready();
            records = self.records(ready);
            // A durable acknowledgement covers everything before it, including
            // sealed segments whose background sync has not finished and
            // segment removals whose directory sync has not.
            super::wait_for_removals(&self.st).await;
            sync_sealed(&self.st).await?;
            self.sync_active().await?;
        }
        let mut acks = Vec::with_capacity(ready);
        let mut s = self.st.borrow_mut();
        let now = now_ms();
        let (mut batches, mut bytes) = (0, 0);
        let mut replayed = Vec::new();
        for p in self.pending.drain(..ready) {
            let active = s.active_mut();
            for h in &p.append.headers {
                let pos = active.size;
                active.note_batch(h, pos, h.total_len() as u64);
            }
            if p.append.replayed {
                replayed.extend(p.append.headers.iter().copied());
            }
            if p.bytes > 0 {
                active.last_modified_ms = now;
            }
            batches += p.append.headers.len() as u64;
            bytes += p.bytes;
            acks.push(p.append.done);
        }
        self.next -= ready;
        for h in &replayed {
            s.producers.replay(h, now);
        }
        s.stats.batches += batches;
        s.stats.bytes += bytes;
        s.stats.commits += 1;
        s.records_committed += records;
        if sync {
            s.records_synced = s.records_committed;
            s.unflushed_since_ms = None;
            s.stats.syncs += 1;
        } else if bytes > 0 {
            s.unflushed_since_ms.get_or_insert(now);
        }
        let (end, base, size) = {
            let a = s.active();
            (a.next_offset, a.base_offset, a.size)
        };
        assert!(end >= s.log_end, "the log end only grows while appending");
        s.log_end = end;
        if !s.replicated {
            // Nobody else holds this log: what is written here is committed.
            s.high_watermark = end;
            s.hw_segment = base;
            s.hw_position = size;
        }
        s.producers.written_up_to(end);
        s.publish();
        drop(s);
        for done in acks {
            let _ = done.send(Ok(()));
        }
        Ok(())
    }

    /// How many appends, from the oldest, have all their bytes written.
    fn ready(&self) -> usize {
        self.pending.iter().take(self.next).take_while(|p| p.end <= self.written).count()
    }

    fn records(&self, appends: usize) -> u64 {
        self.pending.iter().take(appends).flat_map(|p| p.append.headers.iter()).map(|h| h.records_count as u64).sum()
    }

    /// Waits for every write in flight, oldest first; stops at a failure.
    async fn drain_in_flight(&mut self) -> io::Result<()> {
        while let Some(f) = self.in_flight.pop_front() {
            joined(f.handle.await)?;
            self.written = f.end;
        }
        Ok(())
    }

    /// fdatasyncs the active segment, after making its name durable if a
    /// roll created it. A failure takes the log offline: the page cache can no
    /// longer be trusted to match the disk (fsyncgate).
    async fn sync_active(&self) -> Result<()> {
        sync_dir_if_needed(&self.st).await?;
        let (writer, file) = {
            let s = self.st.borrow();
            (s.active_writer.clone(), s.active().active_file().clone())
        };
        if let Err(e) = sync_segment(writer, &file).await {
            self.st.borrow_mut().offline = Some(format!("fdatasync failed: {e}"));
            return Err(e.into());
        }
        Ok(())
    }

    /// Seals the active segment and starts the next one without waiting for
    /// the disk: the sealed segment is synced in the background (`seal`), as
    /// Kafka flushes a rolled segment asynchronously. A synchronous fdatasync
    /// of a full 1 GiB segment stalled the partition for about a second here.
    fn roll(&mut self) -> Result<()> {
        roll_segment(&self.st)?;
        // hw_segment/hw_position stay on the sealed segment until the next commit publishes.
        self.roll_needed = false;
        self.reserved = 0;
        self.written = 0;
        Ok(())
    }

    /// A write (or sync, or roll) failed. Offsets were handed out for every
    /// append not yet acknowledged; none of them may land, so: wait for the
    /// other writes in flight (they may land bytes past the failure), cut the
    /// file back to the acknowledged data, fail those appends and everything
    /// queued behind them, and hand their offsets out again. Producer state
    /// goes back with them.
    async fn fail(&mut self, e: EngineError) {
        while let Some(f) = self.in_flight.pop_front() {
            let _ = f.handle.await;
        }
        let later = {
            let mut s = self.st.borrow_mut();
            let (cut_position, cut) = (s.active().size, s.active().next_offset);
            if let Err(t) = s.active().active_file().set_len(cut_position) {
                tracing::error!(dir = %s.dir.display(), "could not truncate after failed write: {t}");
            }
            s.next_offset = cut;
            if let Some(disk) = &s.disk {
                // Bytes charged past the cut are gone with it.
                disk.refund(s.disk_active_charged_bytes.saturating_sub(cut_position));
            }
            s.disk_active_charged_bytes = s.disk_active_charged_bytes.min(cut_position);
            s.producers.undo_from(cut);
            s.producers.written_up_to(cut);
            self.reserved = cut_position;
            self.written = cut_position;
            std::mem::take(&mut s.queue)
        };
        let kind = match &e {
            EngineError::Storage(io) => io.kind(),
            _ => io::ErrorKind::Other,
        };
        let msg = e.to_string();
        for a in self.pending.drain(..).map(|p| p.append).chain(later) {
            let _ = a.done.send(Err(EngineError::Storage(io::Error::new(kind, msg.clone()))));
        }
        self.next = 0;
        self.unsubmitted_bytes = 0;
        self.roll_needed = false;
    }
}

/// Seals the active segment and starts the next one; the seal's sync and
/// index write run in the background (`seal`). The caller guarantees no
/// write is in flight.
fn roll_segment(st: &Rc<RefCell<LogState>>) -> Result<()> {
    let mut s = st.borrow_mut();
    let interval = s.config.index_interval_bytes;
    let dir = s.dir.clone();
    let active = s.active();
    let (base, next) = (active.base_offset, active.next_offset);
    let file = active.active_file().clone();
    // Indexes a clean close left on the segment are stale, and must not mark
    // it synced: its seal writes them anew once its data is.
    active.delete_indexes()?;
    // Only an optimisation for the next open (without it recovery reads
    // more headers), so it is written in the background.
    spawn_producer_snapshot(&mut s, next);
    // Creating the file is quick; the directory fsync that makes its name
    // durable is not, so it waits for the next durable commit or the seal
    // (`sync_dir_if_needed`) instead of stalling the shard here.
    let seg = Segment::create_unsynced(&dir, next, now_ms(), interval, &s.sealed_files)?;
    let writer = s.active_writer.take();
    s.segments.get_mut(&base).expect("the active segment").seal_file();
    s.segments.insert(next, seg);
    // The sealed segment's bytes stay charged as its size; the new one starts empty.
    s.disk_active_charged_bytes = 0;
    s.dir_rolls += 1;
    s.unsynced_sealed.push(base);
    s.stats.rolls += 1;
    drop(s);
    tokio_uring::spawn(seal(st.clone(), base, writer, file));
    Ok(())
}

/// Rolls the active segment of a log whose writer is idle (retention found
/// its data expired while nothing new arrives).
pub(super) fn roll_idle(st: &Rc<RefCell<LogState>>) -> Result<()> {
    {
        let s = st.borrow();
        assert!(!s.writer_running && s.queue.is_empty(), "roll_idle needs an idle writer");
        if s.active().size == 0 {
            return Ok(());
        }
    }
    roll_segment(st)?;
    // Publish the new active segment as where reads of the high watermark end.
    let mut s = st.borrow_mut();
    if !s.replicated {
        let (base, size) = (s.active().base_offset, s.active().size);
        s.hw_segment = base;
        s.hw_position = size;
    }
    Ok(())
}

/// The background half of a roll: fdatasync the sealed segment, then persist
/// its indexes. Indexes are written only after the data is durable, so on the
/// next open a sealed segment with indexes is trusted and one without is
/// scanned (`Segment::open`). A failed sync takes the log offline (fsyncgate).
async fn seal(st: Rc<RefCell<LogState>>, base: u64, writer: Option<Rc<tokio_uring::fs::File>>, file: Arc<fs::File>) {
    // The segment's own name must be durable before its indexes say "synced".
    let synced = match sync_dir_if_needed(&st).await {
        Ok(()) => sync_segment(writer, &file).await,
        Err(e) => Err(io::Error::other(e.to_string())),
    };
    let indexes = {
        let mut s = st.borrow_mut();
        if let Err(e) = synced {
            s.unsynced_sealed.retain(|&b| b != base);
            s.offline = Some(format!("fdatasync of sealed segment {base} failed: {e}"));
            return;
        }
        // Gone if retention or DeleteTopics removed it meanwhile.
        s.segments.get(&base).map(|seg| (seg.index_files(), s.dir.clone()))
    };
    if let Some((files, dir)) = indexes {
        // Index files are written and fsynced on a blocking thread: a few
        // milliseconds of disk the shard's other partitions need not wait for.
        let written = tokio::task::spawn_blocking(move || files.write()).await;
        if let Err(e) = written.map_err(io::Error::other).and_then(|r| r) {
            // Costs the next open a scan of this segment, nothing else.
            tracing::warn!(dir = %dir.display(), "indexes of sealed segment {base} not written: {e}");
        }
    }
    st.borrow_mut().unsynced_sealed.retain(|&b| b != base);
}

/// fsyncs the log directory (on a blocking thread) if a roll created a
/// segment whose name is not yet durable. A failure takes the log offline.
pub(super) async fn sync_dir_if_needed(st: &Rc<RefCell<LogState>>) -> Result<()> {
    let (dir, covers) = {
        let s = st.borrow();
        if s.dir_synced_rolls >= s.dir_rolls {
            return Ok(());
        }
        (s.dir.clone(), s.dir_rolls)
    };
    // Covers the rolls made before it starts, not those made while it runs.
    let synced = tokio::task::spawn_blocking(move || crate::durable::sync_dir(&dir)).await;
    match synced.map_err(io::Error::other).and_then(|r| r) {
        Ok(()) => {
            let mut s = st.borrow_mut();
            s.dir_synced_rolls = s.dir_synced_rolls.max(covers);
            Ok(())
        }
        Err(e) => {
            st.borrow_mut().offline = Some(format!("fsync of the log directory failed: {e}"));
            Err(e.into())
        }
    }
}

/// fdatasyncs a segment through its io_uring writer, or through its file when
/// no write opened one (a segment that only duplicate waiters reached).
async fn sync_segment(writer: Option<Rc<tokio_uring::fs::File>>, file: &Arc<fs::File>) -> io::Result<()> {
    match writer {
        Some(w) => durable::synced_by(file, w.sync_data()).await,
        None => sync_file(file).await,
    }
}

enum Event {
    /// New appends were queued and a write slot is free.
    Queued,
    /// The oldest write in flight finished; it ended at this position.
    Written(u64, io::Result<()>),
}

/// Waits for the oldest write in flight to finish, or for new appends that can
/// be submitted now (`PartitionLog::enqueue` wakes the writer).
struct NextEvent<'a> {
    w: &'a mut Writer,
}

impl Future for NextEvent<'_> {
    type Output = Event;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let w = &mut *self.w;
        let front = w.in_flight.front_mut().expect("waits only with a write in flight");
        if let Poll::Ready(result) = Pin::new(&mut front.handle).poll(cx) {
            let end = front.end;
            w.in_flight.pop_front();
            return Poll::Ready(Event::Written(end, joined(result)));
        }
        let can_submit = w.can_submit();
        let mut s = w.st.borrow_mut();
        if can_submit && !s.queue.is_empty() {
            return Poll::Ready(Event::Queued);
        }
        s.writer_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A write task's result; a task that died (a bug) counts as a failed write.
fn joined(r: std::result::Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    r.unwrap_or_else(|e| Err(io::Error::other(format!("write task failed: {e}"))))
}

/// Writes every buffer at `pos` with io_uring `writev`, continuing after short
/// writes. (tokio-uring's own `writev_at_all` panics on a short write, which a
/// nearly full disk produces; see docs/architecture.md.)
async fn writev_all(file: &tokio_uring::fs::File, mut bufs: Vec<Bytes>, mut pos: u64) -> io::Result<()> {
    while !bufs.is_empty() {
        let (res, sent) = file.writev_at(bufs, pos).await;
        let mut n = res?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "writev wrote nothing"));
        }
        pos += n as u64;
        // Drop what was written; keep the unwritten tail of a partly written buffer.
        bufs = sent
            .into_iter()
            .filter_map(|b| {
                if n >= b.len() {
                    n -= b.len();
                    None
                } else {
                    let rest = b.slice(n..);
                    n = 0;
                    Some(rest)
                }
            })
            .collect();
    }
    Ok(())
}

//! Idempotent-producer state of one partition: for each producer id, its epoch
//! and its last (up to five) batches, so a retried batch is recognised and
//! answered with its original offsets instead of being written twice. The
//! rules are Kafka's `ProducerAppendInfo` / `ProducerStateEntry`.
//!
//! The table changes when offsets are assigned (so pipelined requests see each
//! other's sequence numbers); until a batch is on disk the table keeps an undo
//! record for it, so a failed write round can put the table back exactly.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::batch::BatchHeader;
use crate::error::{EngineError, Result};

/// Batches remembered per producer: Kafka clients keep at most five requests
/// in flight per partition, so a retry is always one of the last five.
pub const BATCHES_RETAINED: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
    pub last_offset: u64,
    pub max_timestamp: i64,
}

/// A producer's state in one partition. `Copy` and fixed-size so an undo record
/// costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    len: u8,
    /// Oldest first; only `..len` are meaningful.
    batches: [BatchMeta; BATCHES_RETAINED],
    /// Wall-clock ms of the last append, for `producer.id.expiration.ms`.
    pub last_append_ms: u64,
}

impl ProducerEntry {
    pub fn new(epoch: i16, last_append_ms: u64) -> Self {
        ProducerEntry { epoch, len: 0, batches: [BatchMeta::default(); BATCHES_RETAINED], last_append_ms }
    }

    pub fn batches(&self) -> &[BatchMeta] {
        &self.batches[..self.len as usize]
    }

    pub fn last_seq(&self) -> Option<i32> {
        self.batches().last().map(|b| b.last_seq)
    }

    /// Records a batch; a new epoch forgets the old epoch's batches.
    pub fn push(&mut self, epoch: i16, batch: BatchMeta, now_ms: u64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.len = 0;
        }
        if self.len as usize == BATCHES_RETAINED {
            self.batches.rotate_left(1);
            self.len -= 1;
        }
        self.batches[self.len as usize] = batch;
        self.len += 1;
        self.last_append_ms = now_ms;
    }
}

/// The sequence number of a batch's last record; sequences wrap from
/// `i32::MAX` to 0, as Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn last_seq(first_seq: i32, last_offset_delta: i32) -> i32 {
    if first_seq > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - first_seq) - 1
    } else {
        first_seq + last_offset_delta
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq as i64 == last_seq as i64 + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

enum Verdict {
    Accept,
    Duplicate(BatchMeta),
}

/// Kafka's checks for one batch against the producer's current entry.
fn check(pid: i64, entry: Option<&ProducerEntry>, epoch: i16, first_seq: i32, last: i32) -> Result<Verdict> {
    // Unknown producer: any sequence is accepted. This is Kafka's behaviour since
    // 2.5 (KIP-360): the broker no longer answers UNKNOWN_PRODUCER_ID, because a
    // producer's state may be gone for good reasons (retention, DeleteRecords,
    // expiry) and the client cannot tell; requiring seq 0 would wedge it.
    let Some(e) = entry else { return Ok(Verdict::Accept) };
    if epoch < e.epoch {
        return Err(EngineError::InvalidProducerEpoch(format!(
            "producer {pid} sent epoch {epoch}, but epoch {} has fenced it",
            e.epoch
        )));
    }
    if epoch > e.epoch {
        if first_seq != 0 {
            return Err(EngineError::OutOfOrderSequence(format!(
                "producer {pid} started epoch {epoch} at sequence {first_seq}, not 0"
            )));
        }
        return Ok(Verdict::Accept);
    }
    if let Some(d) = e.batches().iter().find(|b| b.first_seq == first_seq && b.last_seq == last) {
        return Ok(Verdict::Duplicate(*d));
    }
    let expected_after = e.last_seq().unwrap_or(-1);
    if in_sequence(expected_after, first_seq) {
        Ok(Verdict::Accept)
    } else {
        Err(EngineError::OutOfOrderSequence(format!(
            "producer {pid} epoch {epoch} sent sequence {first_seq}, expected {}",
            if expected_after == i32::MAX { 0 } else { expected_after + 1 }
        )))
    }
}

/// What the producer checks decided for one append request.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendPlan {
    /// Write the batches; then `ProducerStates::apply` the updates.
    Append(Vec<Update>),
    /// Every batch was written before: answer with these original offsets.
    /// `max_timestamp`: the last original batch's (its append time on a
    /// LogAppendTime topic).
    Duplicate { base_offset: u64, last_offset: u64, max_timestamp: i64 },
}

/// A producer's entry after one batch of the request (in request order).
#[derive(Debug, PartialEq, Eq)]
pub struct Update {
    producer_id: i64,
    base_offset: u64,
    entry: ProducerEntry,
}

/// How to take one not-yet-written batch back out of the table.
#[derive(Debug)]
struct Undo {
    base_offset: u64,
    producer_id: i64,
    previous: Option<ProducerEntry>,
}

/// Producer state of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// One per tracked batch not yet known to be on disk, in offset order.
    pending: VecDeque<Undo>,
}

impl ProducerStates {
    pub fn from_entries(entries: impl IntoIterator<Item = (i64, ProducerEntry)>) -> Self {
        ProducerStates { producers: entries.into_iter().collect(), pending: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks one request's batches (already validated as batches) as if they
    /// were assigned offsets from `first_offset` on. Changes nothing: a request
    /// with one bad batch lands nothing, producer state included.
    ///
    /// A request whose tracked batches are all duplicates (and that has no
    /// untracked batch) is a retry: `Duplicate`. A request mixing duplicates with
    /// new batches is refused (INVALID_RECORD): Kafka clients send one batch per
    /// partition per request, so only a broken client sends it, and neither
    /// writing the duplicates again nor answering with offsets that do not match
    /// the request's records would be right.
    pub fn check_append(&self, headers: &[BatchHeader], first_offset: u64, now_ms: u64) -> Result<AppendPlan> {
        let mut updates: Vec<Update> = Vec::new();
        let mut duplicates: Vec<BatchMeta> = Vec::new();
        let mut untracked = 0;
        let mut offset = first_offset;
        for h in headers {
            let base_offset = offset;
            let last_offset = base_offset + h.last_offset_delta as u64;
            offset = last_offset + 1;
            let pid = h.producer_id;
            if pid < 0 {
                untracked += 1;
                continue;
            }
            if h.base_sequence < 0 {
                return Err(EngineError::InvalidBatch(format!(
                    "batch of producer {pid} has no sequence number ({})",
                    h.base_sequence
                )));
            }
            if h.is_transactional() {
                return Err(EngineError::InvalidBatch("transactional batches are not supported".into()));
            }
            let last = last_seq(h.base_sequence, h.last_offset_delta);
            // The latest entry: this request's own earlier batches count.
            let current = updates.iter().rev().find(|u| u.producer_id == pid).map(|u| &u.entry);
            let current = current.or_else(|| self.producers.get(&pid));
            match check(pid, current, h.producer_epoch, h.base_sequence, last)? {
                Verdict::Duplicate(d) => duplicates.push(d),
                Verdict::Accept => {
                    let mut entry = current.copied().unwrap_or(ProducerEntry::new(h.producer_epoch, now_ms));
                    let meta = BatchMeta {
                        first_seq: h.base_sequence,
                        last_seq: last,
                        base_offset,
                        last_offset,
                        max_timestamp: h.max_timestamp,
                    };
                    entry.push(h.producer_epoch, meta, now_ms);
                    updates.push(Update { producer_id: pid, base_offset, entry });
                }
            }
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(first), Some(last)) if updates.is_empty() && untracked == 0 => Ok(AppendPlan::Duplicate {
                base_offset: first.base_offset,
                last_offset: last.last_offset,
                max_timestamp: last.max_timestamp,
            }),
            (Some(_), _) => Err(EngineError::InvalidBatch(
                "request mixes retried (duplicate) and new batches of an idempotent producer".into(),
            )),
            _ => Ok(AppendPlan::Append(updates)),
        }
    }

    /// Installs a checked request's updates once its offsets are assigned,
    /// keeping what is needed to undo them until they are written.
    pub fn apply(&mut self, updates: Vec<Update>) {
        for u in updates {
            let previous = self.producers.insert(u.producer_id, u.entry);
            debug_assert!(self.pending.back().is_none_or(|p| p.base_offset < u.base_offset));
            self.pending.push_back(Undo { base_offset: u.base_offset, producer_id: u.producer_id, previous });
        }
    }

    /// Everything below `end` is on disk: its undo records are no longer needed.
    pub fn written_up_to(&mut self, end: u64) {
        while self.pending.front().is_some_and(|u| u.base_offset < end) {
            self.pending.pop_front();
        }
    }

    /// The batches at and after `cut` were not written (failed round): put the
    /// table back to what it was before them, newest first.
    pub fn undo_from(&mut self, cut: u64) {
        while let Some(u) = self.pending.back() {
            if u.base_offset < cut {
                break;
            }
            let u = self.pending.pop_back().unwrap();
            match u.previous {
                Some(prev) => self.producers.insert(u.producer_id, prev),
                None => self.producers.remove(&u.producer_id),
            };
        }
    }

    /// Replays a batch read back from the log (recovery): no checks, the log
    /// holds only batches that passed them.
    pub fn replay(&mut self, h: &BatchHeader, now_ms: u64) {
        if h.producer_id < 0 || h.base_offset < 0 {
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset as u64,
            last_offset: h.last_offset() as u64,
            max_timestamp: h.max_timestamp,
        };
        self.producers.entry(h.producer_id).or_insert_with(|| ProducerEntry::new(h.producer_epoch, now_ms)).push(
            h.producer_epoch,
            meta,
            now_ms,
        );
    }

    /// Forgets producers idle for `max_idle_ms` or longer (Kafka's
    /// `producer.id.expiration.ms`). Returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64, max_idle_ms: u64) -> usize {
        let before = self.producers.len();
        let pending = &self.pending;
        self.producers.retain(|pid, e| {
            now_ms.saturating_sub(e.last_append_ms) < max_idle_ms || pending.iter().any(|u| u.producer_id == *pid)
        });
        before - self.producers.len()
    }

    /// Bounds the table at `max` producers: once it holds more, the least
    /// recently appending ones are forgotten, down to `max - max / 64`, so the
    /// O(n) selection runs once per `max / 64` new producers, not at each.
    /// Producers with batches not yet written are kept (their undo records
    /// refer to them). Returns how many were evicted.
    ///
    /// Evict rather than refuse: a client cycling producer ids would otherwise
    /// lock every new producer out of the partition until expiry (a day), while
    /// an evicted producer loses only duplicate detection for a retry of its
    /// last batches (its next batch is an unknown producer's, accepted at any
    /// sequence, as after `producer.id.expiration.ms`).
    pub fn enforce_cap(&mut self, max: usize) -> usize {
        if self.producers.len() <= max {
            return 0;
        }
        let target = max - max / 64;
        let pending: HashSet<i64> = self.pending.iter().map(|u| u.producer_id).collect();
        let mut idle: Vec<(u64, i64)> = self
            .producers
            .iter()
            .filter(|(pid, _)| !pending.contains(pid))
            .map(|(pid, e)| (e.last_append_ms, *pid))
            .collect();
        let excess = (self.producers.len() - target).min(idle.len());
        if excess == 0 {
            return 0;
        }
        if excess < idle.len() {
            // The `excess` least recently used first (ties broken by id).
            idle.select_nth_unstable(excess - 1);
        }
        for (_, pid) in &idle[..excess] {
            self.producers.remove(pid);
        }
        excess
    }

    /// The table as it stands for the log up to `end` (exclusive): batches
    /// assigned offsets at or past `end` but not yet written are left out.
    /// Sorted by producer id so snapshots are deterministic.
    pub fn entries_as_of(&self, end: u64) -> Vec<(i64, ProducerEntry)> {
        let mut before: HashMap<i64, Option<ProducerEntry>> = HashMap::new();
        for u in self.pending.iter().filter(|u| u.base_offset >= end) {
            before.entry(u.producer_id).or_insert(u.previous);
        }
        let mut out: Vec<(i64, ProducerEntry)> = self
            .producers
            .iter()
            .filter_map(|(pid, e)| match before.get(pid) {
                Some(prev) => prev.map(|p| (*pid, p)),
                None => Some((*pid, *e)),
            })
            .collect();
        out.sort_unstable_by_key(|(pid, _)| *pid);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, first_seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 7,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: first_seq,
            records_count: records,
        }
    }

    /// Checks and applies one single-batch request at `offset`.
    fn append(t: &mut ProducerStates, h: BatchHeader, offset: u64) -> Result<AppendPlan> {
        let plan = t.check_append(&[h], offset, 0)?;
        if let AppendPlan::Append(u) = plan {
            t.apply(u);
            return Ok(AppendPlan::Append(Vec::new()));
        }
        Ok(plan)
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(last_seq(0, 4), 4);
        assert_eq!(last_seq(i32::MAX, 0), i32::MAX);
        assert_eq!(last_seq(i32::MAX, 1), 0);
        assert_eq!(last_seq(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, 1));
        let mut t = ProducerStates::default();
        append(&mut t, header(1, 0, i32::MAX - 2, 3), 0).unwrap(); // seqs MAX-2..=MAX
        append(&mut t, header(1, 0, 0, 2), 3).unwrap(); // wraps to 0..=1
        assert!(matches!(append(&mut t, header(1, 0, 3, 1), 5), Err(EngineError::OutOfOrderSequence(_))));
        append(&mut t, header(1, 0, 2, 1), 5).unwrap();
        // A batch straddling the wrap.
        let mut t = ProducerStates::default();
        append(&mut t, header(2, 0, i32::MAX - 1, 4), 0).unwrap();
        assert_eq!(t.get(2).unwrap().last_seq(), Some(1));
        append(&mut t, header(2, 0, 2, 1), 4).unwrap();
    }

    #[test]
    fn duplicates_in_the_five_batch_window_return_original_offsets() {
        let mut t = ProducerStates::default();
        for i in 0..7 {
            append(&mut t, header(9, 0, i * 2, 2), i as u64 * 2).unwrap();
        }
        // Batches 2..=6 (seq 4..=13) are remembered; 0 and 1 are not.
        for i in 2..7 {
            let plan = append(&mut t, header(9, 0, i * 2, 2), 1000).unwrap();
            let expected =
                AppendPlan::Duplicate { base_offset: i as u64 * 2, last_offset: i as u64 * 2 + 1, max_timestamp: 7 };
            assert_eq!(plan, expected);
        }
        assert!(matches!(append(&mut t, header(9, 0, 2, 2), 1000), Err(EngineError::OutOfOrderSequence(_))));
        // Same first sequence but a different range is not a duplicate.
        assert!(matches!(append(&mut t, header(9, 0, 12, 1), 1000), Err(EngineError::OutOfOrderSequence(_))));
    }

    #[test]
    fn gaps_old_epochs_and_new_epochs() {
        let mut t = ProducerStates::default();
        // Unknown producer: any first sequence (Kafka ≥ 2.5).
        append(&mut t, header(5, 3, 10, 1), 0).unwrap();
        assert!(matches!(append(&mut t, header(5, 3, 12, 1), 1), Err(EngineError::OutOfOrderSequence(_))));
        append(&mut t, header(5, 3, 11, 1), 1).unwrap();
        assert!(matches!(append(&mut t, header(5, 2, 12, 1), 2), Err(EngineError::InvalidProducerEpoch(_))));
        assert!(matches!(append(&mut t, header(5, 4, 1, 1), 2), Err(EngineError::OutOfOrderSequence(_))));
        append(&mut t, header(5, 4, 0, 1), 2).unwrap();
        assert_eq!(t.get(5).unwrap().batches().len(), 1, "a new epoch forgets the old batches");
        // The old epoch is fenced, even for what used to be a duplicate.
        assert!(matches!(append(&mut t, header(5, 3, 11, 1), 3), Err(EngineError::InvalidProducerEpoch(_))));
    }

    #[test]
    fn untracked_and_invalid_batches() {
        let mut t = ProducerStates::default();
        append(&mut t, header(-1, -1, -1, 3), 0).unwrap();
        assert!(t.is_empty());
        assert!(matches!(append(&mut t, header(4, 0, -1, 1), 3), Err(EngineError::InvalidBatch(_))));
        let mut txn = header(4, 0, 0, 1);
        txn.attributes = 0x10;
        assert!(matches!(append(&mut t, txn, 3), Err(EngineError::InvalidBatch(_))));
    }

    #[test]
    fn one_request_chains_its_own_batches_and_refuses_mixed_retries() {
        let mut t = ProducerStates::default();
        let plan = t.check_append(&[header(1, 0, 0, 2), header(1, 0, 2, 3)], 10, 0).unwrap();
        let AppendPlan::Append(u) = plan else { panic!() };
        t.apply(u);
        assert_eq!(t.get(1).unwrap().batches().len(), 2);
        assert_eq!(t.get(1).unwrap().batches()[1].base_offset, 12);
        let both = t.check_append(&[header(1, 0, 0, 2), header(1, 0, 2, 3)], 99, 0).unwrap();
        assert_eq!(both, AppendPlan::Duplicate { base_offset: 10, last_offset: 14, max_timestamp: 7 });
        let mixed = t.check_append(&[header(1, 0, 2, 3), header(1, 0, 5, 1)], 99, 0);
        assert!(matches!(mixed, Err(EngineError::InvalidBatch(_))));
        // A failing batch later in the request leaves the table untouched.
        let before = *t.get(1).unwrap();
        assert!(t.check_append(&[header(1, 0, 5, 1), header(1, 0, 9, 1)], 15, 0).is_err());
        assert_eq!(*t.get(1).unwrap(), before);
    }

    #[test]
    fn undo_restores_exactly_and_snapshot_view_hides_unwritten() {
        let mut t = ProducerStates::default();
        append(&mut t, header(1, 0, 0, 1), 0).unwrap();
        append(&mut t, header(2, 0, 0, 1), 1).unwrap();
        t.written_up_to(2);
        let written = t.entries_as_of(2);
        append(&mut t, header(1, 0, 1, 1), 2).unwrap();
        append(&mut t, header(3, 0, 0, 1), 3).unwrap();
        append(&mut t, header(1, 1, 0, 1), 4).unwrap();
        assert_eq!(t.entries_as_of(2), written);
        assert_eq!(t.entries_as_of(5).len(), 3);
        t.undo_from(3);
        assert_eq!(t.get(1).unwrap().last_seq(), Some(1));
        assert!(t.get(3).is_none());
        t.undo_from(2);
        assert_eq!(t.entries_as_of(u64::MAX), written);
    }

    #[test]
    fn the_table_is_bounded_by_evicting_the_least_recently_used() {
        let mut t = ProducerStates::default();
        let max = 128;
        // Producer i last appended at time i: 0 is the least recently used.
        for pid in 0..max as i64 {
            let AppendPlan::Append(u) = t.check_append(&[header(pid, 0, 0, 1)], pid as u64, pid as u64).unwrap() else {
                panic!()
            };
            t.apply(u);
        }
        t.written_up_to(max as u64);
        assert_eq!(t.enforce_cap(max), 0, "at the cap, nothing goes");
        // Producer 0 appends again: now 1 is the least recently used.
        let AppendPlan::Append(u) = t.check_append(&[header(0, 0, 1, 1)], 500, 1_000).unwrap() else { panic!() };
        t.apply(u);
        t.written_up_to(501);
        // A new producer whose batch is not written yet: over the cap.
        let AppendPlan::Append(u) = t.check_append(&[header(9_999, 0, 0, 1)], 501, 2_000).unwrap() else { panic!() };
        t.apply(u);
        assert_eq!(t.len(), max + 1);
        let evicted = t.enforce_cap(max);
        assert_eq!(evicted, 1 + max / 64, "down to max - max/64 at once");
        assert_eq!(t.len(), max - max / 64);
        assert!(t.get(0).is_some(), "recently used stays");
        assert!(t.get(9_999).is_some(), "pending stays");
        assert!((1..=evicted as i64).all(|pid| t.get(pid).is_none()), "the oldest go first");
        assert!(t.get(evicted as i64 + 1).is_some());
        // An evicted producer is unknown again: its next batch is accepted at any sequence.
        assert!(t.check_append(&[header(1, 0, 7, 1)], 502, 3_000).is_ok());
        // A cycling client cannot grow the table: ten thousand new ids later it is still bounded.
        t.written_up_to(u64::MAX);
        for pid in 10_000..20_000i64 {
            let AppendPlan::Append(u) = t.check_append(&[header(pid, 0, 0, 1)], pid as u64, pid as u64).unwrap() else {
                panic!()
            };
            t.apply(u);
            t.written_up_to(u64::MAX);
            t.enforce_cap(max);
            assert!(t.len() <= max);
        }
    }

    #[test]
    fn idle_producers_expire_unless_pending() {
        let mut t = ProducerStates::default();
        let plan = t.check_append(&[header(1, 0, 0, 1)], 0, 1_000).unwrap();
        let AppendPlan::Append(u) = plan else { panic!() };
        t.apply(u);
        let plan = t.check_append(&[header(2, 0, 0, 1)], 1, 50_000).unwrap();
        let AppendPlan::Append(u) = plan else { panic!() };
        t.apply(u);
        assert_eq!(t.expire(100_000, 60_000), 0, "pending batches keep their producer");
        t.written_up_to(2);
        assert_eq!(t.expire(100_000, 60_000), 1);
        assert!(t.get(1).is_none() && t.get(2).is_some());
    }
}

//! A partition's leader-side replication state, on the shard that owns the
//! partition: what each follower has (from its fetches), the in-sync replica
//! set, the high watermark, and the produce requests waiting for it
//! (Kafka's purgatory: parked oneshots, completed when the high watermark
//! passes them, failed when leadership moves — no thread, no polling).
//!
//! High watermark = the smallest log end among the leader and every member
//! of the *maximal* ISR: the committed ISR plus members being added (Kafka's
//! rule: an expansion counts at once, a shrink only once committed). The
//! committed ISR is what the controller elects from; counting at least those
//! members means every acknowledged write is on whichever replica it elects.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use laminar_coord::cluster::{IsrMember, PartitionRecord, Stored};
use laminar_engine::PartitionLog;
use tokio::sync::oneshot;

use crate::errors::{self, KafkaError};

/// A follower's progress as the leader sees it.
#[derive(Debug, Clone)]
pub struct FollowerProgress {
    /// Its log end (the offset of its last fetch); unknown until it fetches
    /// in this leadership.
    pub log_end: Option<u64>,
    /// When it last had everything the leader had at the time (Kafka's
    /// lastCaughtUpTime): ISR shrink measures lag from here.
    pub caught_up_at: Instant,
    pub last_fetch_at: Option<Instant>,
    /// When its being outside the ISR was last logged (rate-limited).
    pub last_out_of_isr_log: Option<Instant>,
}

/// How often a follower kept out of the ISR is logged (debug).
const OUT_OF_ISR_LOG_EVERY: Duration = Duration::from_secs(2);

/// Why an acks=all produce stopped waiting.
pub type Waited = Result<(), KafkaError>;

pub struct LeaderState {
    pub epoch: i32,
    /// The partition record this leadership works from (its ISR and version);
    /// replaced by the leader's own ISR changes and by newer records from
    /// the controller.
    pub record: Arc<Stored<PartitionRecord>>,
    pub followers: HashMap<i32, FollowerProgress>,
    /// Members being added to the ISR (a write in flight): they count for
    /// the high watermark already.
    pub adding: Vec<IsrMember>,
    /// An ISR change is being written: one at a time.
    pub isr_write_in_flight: bool,
    pub min_insync_replicas: i32,
    /// Where this leadership's epoch starts in the log: a follower joins the
    /// ISR only once it has data of this epoch (KIP-101).
    pub epoch_start: u64,
    /// Produce requests waiting for the high watermark, by the offset it must
    /// pass (last offset + 1).
    waiters: BTreeMap<u64, Vec<oneshot::Sender<Waited>>>,
    me: i32,
}

pub type SharedLeader = Rc<RefCell<LeaderState>>;

impl LeaderState {
    pub fn new(me: i32, record: Arc<Stored<PartitionRecord>>, min_insync_replicas: i32, epoch_start: u64) -> Self {
        let now = Instant::now();
        let followers = record
            .record
            .replicas
            .iter()
            .filter(|&&n| n != me)
            .map(|&n| {
                (
                    n,
                    FollowerProgress {
                        log_end: None,
                        caught_up_at: now,
                        last_fetch_at: None,
                        last_out_of_isr_log: None,
                    },
                )
            })
            .collect();
        LeaderState {
            epoch: record.record.leader_epoch,
            record,
            followers,
            adding: Vec::new(),
            isr_write_in_flight: false,
            min_insync_replicas,
            epoch_start,
            waiters: BTreeMap::new(),
            me,
        }
    }

    /// Members counted for the high watermark: the ISR plus those being added.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.record.record.isr.iter().map(|m| m.node).collect();
        for m in &self.adding {
            if !v.contains(&m.node) {
                v.push(m.node);
            }
        }
        v
    }

    /// The committed ISR's size, which `min.insync.replicas` is checked against.
    pub fn isr_size(&self) -> usize {
        self.record.record.isr.len()
    }

    /// Takes a newer record (the controller's, or our own ISR write echoed
    /// by the view). Older ones are ignored.
    pub fn adopt(&mut self, record: Arc<Stored<PartitionRecord>>) {
        if record.version <= self.record.version {
            return;
        }
        let now = Instant::now();
        for &n in &record.record.replicas {
            if n != self.me {
                self.followers.entry(n).or_insert(FollowerProgress {
                    log_end: None,
                    caught_up_at: now,
                    last_fetch_at: None,
                    last_out_of_isr_log: None,
                });
            }
        }
        self.followers.retain(|n, _| record.record.replicas.contains(n));
        self.adding.retain(|m| !record.record.isr.iter().any(|i| i.node == m.node));
        self.record = record;
    }

    /// The high watermark the replicas' progress allows, given the leader's
    /// own log end.
    pub fn high_watermark(&self, leader_log_end: u64) -> u64 {
        let mut hw = leader_log_end;
        for node in self.maximal_isr() {
            if node == self.me {
                continue;
            }
            match self.followers.get(&node).and_then(|f| f.log_end) {
                Some(end) => hw = hw.min(end),
                // An in-sync follower not heard from in this leadership yet:
                // nothing new is committed until it is.
                None => return 0,
            }
        }
        hw
    }

    /// Records a follower's fetch at `offset`; returns whether it should be
    /// added to the ISR (it has everything committed, and something of this
    /// leader's epoch, KIP-101's condition).
    pub fn follower_fetched(&mut self, node: i32, offset: u64, leader_log_end: u64, hw: u64, epoch_start: u64) -> bool {
        let now = Instant::now();
        let Some(f) = self.followers.get_mut(&node) else { return false };
        f.log_end = Some(offset);
        f.last_fetch_at = Some(now);
        if offset >= leader_log_end {
            f.caught_up_at = now;
        }
        let in_isr = self.maximal_isr().contains(&node);
        let write_in_flight = self.isr_write_in_flight;
        let add = !in_isr && !write_in_flight && offset >= hw && offset >= epoch_start;
        let f = self.followers.get_mut(&node).expect("looked up above");
        if !in_isr && !add && f.last_out_of_isr_log.is_none_or(|t| now.duration_since(t) >= OUT_OF_ISR_LOG_EVERY) {
            f.last_out_of_isr_log = Some(now);
            tracing::debug!(
                node,
                offset,
                leader_log_end,
                hw,
                epoch_start,
                write_in_flight,
                "follower out of the ISR, not added yet"
            );
        }
        add
    }

    /// Followers in the ISR that have not caught up for `lag`: to remove.
    pub fn lagging(&self, lag: Duration) -> Vec<i32> {
        let now = Instant::now();
        self.record
            .record
            .isr
            .iter()
            .filter(|m| m.node != self.me)
            .filter(|m| self.followers.get(&m.node).is_none_or(|f| now.duration_since(f.caught_up_at) > lag))
            .map(|m| m.node)
            .collect()
    }

    /// Parks an acks=all produce until the high watermark passes `offset`.
    pub fn wait_for(&mut self, offset: u64) -> oneshot::Receiver<Waited> {
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(offset).or_default().push(tx);
        rx
    }

    /// Completes the waiters the high watermark `hw` has passed. Those whose
    /// partition's committed ISR is now smaller than `min.insync.replicas`
    /// get NOT_ENOUGH_REPLICAS_AFTER_APPEND, as Kafka answers: the write is
    /// committed, but with fewer copies than asked.
    pub fn complete(&mut self, hw: u64) {
        let later = self.waiters.split_off(&(hw + 1));
        let done = std::mem::replace(&mut self.waiters, later);
        for tx in done.into_values().flatten() {
            let _ = tx.send(self.committed_answer());
        }
    }

    /// The answer to an acks=all write the high watermark has passed.
    pub fn committed_answer(&self) -> Waited {
        if (self.isr_size() as i32) < self.min_insync_replicas {
            Err(KafkaError::new(
                errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                format!("written, but the ISR has {} replicas, fewer than min.insync.replicas", self.isr_size()),
            ))
        } else {
            Ok(())
        }
    }

    /// Leadership ended: every waiter fails. Their batches are in this log
    /// and may be in the new leader's too, so the answer must say "possibly
    /// written" (NOT_ENOUGH_REPLICAS_AFTER_APPEND: clients retry, and an
    /// idempotent producer keeps the batch's sequence numbers, which the new
    /// leader deduplicates). NOT_LEADER_OR_FOLLOWER would tell librdkafka the
    /// batch was not written: after its next epoch bump it would send it again
    /// under new sequence numbers, a duplicate if it survived.
    pub fn fail_all(&mut self, why: &str) {
        for tx in std::mem::take(&mut self.waiters).into_values().flatten() {
            let _ = tx.send(Err(ended(why)));
        }
    }

    /// Recomputes the high watermark after an append or a follower's fetch,
    /// moves the log's, and completes waiters. Returns the high watermark.
    pub fn advance(&mut self, log: &PartitionLog) -> u64 {
        let hw = self.high_watermark(log.log_end_offset());
        log.set_high_watermark(hw);
        let hw = log.high_watermark();
        self.complete(hw);
        hw
    }
}

/// The answer to a write this leader appended but whose commit it will not
/// see (see `LeaderState::fail_all`).
pub fn ended(why: &str) -> KafkaError {
    KafkaError::new(
        errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        format!("written, but leadership ended before the in-sync replicas confirmed it ({why}); retry"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(isr: &[i32], version: u64) -> Arc<Stored<PartitionRecord>> {
        Arc::new(Stored {
            record: PartitionRecord {
                topic_id: uuid::Uuid::nil(),
                replicas: vec![1, 2, 3],
                shards: vec![0, 0, 0],
                leader: 1,
                leader_epoch: 4,
                leader_incarnation: 1,
                isr: isr.iter().map(|&node| IsrMember { node, incarnation: 1 }).collect(),
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            },
            version,
            create_revision: 1,
            lease: 0,
        })
    }

    #[test]
    fn the_high_watermark_waits_for_every_member_of_the_maximal_isr() {
        let mut l = LeaderState::new(1, record(&[1, 2], 10), 2, 0);
        assert_eq!(l.high_watermark(100), 0, "follower 2 unheard of");
        l.follower_fetched(2, 60, 100, 0, 0);
        assert_eq!(l.high_watermark(100), 60);
        // 3 is not in the ISR: its progress does not hold the high watermark back...
        assert!(l.follower_fetched(3, 60, 100, 60, 0), "...but once it has what is committed, it joins");
        l.adding.push(IsrMember { node: 3, incarnation: 1 });
        l.follower_fetched(3, 30, 100, 60, 0);
        assert_eq!(l.high_watermark(100), 30, "a member being added counts at once");
        // The committed record adds it; an older record is ignored.
        l.adopt(record(&[1, 2, 3], 11));
        assert!(l.adding.is_empty());
        l.adopt(record(&[1], 5));
        assert_eq!(l.isr_size(), 3);
    }

    #[test]
    fn waiters_complete_in_offset_order_and_fail_when_leadership_moves() {
        let mut l = LeaderState::new(1, record(&[1, 2], 10), 2, 0);
        let mut a = l.wait_for(10);
        let mut b = l.wait_for(20);
        l.complete(15);
        assert!(matches!(a.try_recv(), Ok(Ok(()))));
        assert!(b.try_recv().is_err(), "not yet");
        // The ISR shrank below min.insync.replicas before 20 was committed.
        l.adopt(record(&[1], 12));
        l.complete(20);
        assert!(matches!(b.try_recv(), Ok(Err(e)) if e.code == errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND));
        let mut c = l.wait_for(30);
        l.fail_all("moved");
        assert!(matches!(c.try_recv(), Ok(Err(e)) if e.code == errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND));
    }

    #[test]
    fn followers_that_stop_catching_up_are_reported_lagging() {
        let mut l = LeaderState::new(1, record(&[1, 2, 3], 10), 1, 0);
        l.follower_fetched(2, 100, 100, 100, 0);
        std::thread::sleep(Duration::from_millis(30));
        l.follower_fetched(3, 100, 100, 100, 0);
        assert_eq!(l.lagging(Duration::from_millis(20)), vec![2]);
    }
}

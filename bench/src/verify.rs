//! Delivery verification: producers note which sequences were acknowledged, consumers note
//! what arrived, and the two are compared at the end.
//!
//! Sequences are per (producer id, partition). The bench never retries a failed produce, so an
//! acknowledged record must arrive exactly once, and a partition must deliver one producer's
//! records in increasing sequence order. Records whose produce failed or timed out may or may
//! not have been written; they are reported but are not errors.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::seq_set::SeqSet;

/// (producer id, partition).
pub type Stream = (u32, i32);

/// Producer side: what was acknowledged, per stream.
#[derive(Debug, Default)]
pub struct AckLedger {
    pub acked: HashMap<Stream, SeqSet>,
    /// Highest offset + 1 acknowledged per partition, so consumers know how far to read.
    pub acked_end_offset: HashMap<i32, i64>,
    pub failed_records: u64,
}

impl AckLedger {
    /// `count` records starting at `first_seq` were acknowledged at `base_offset` (-1 unknown).
    pub fn acked(&mut self, stream: Stream, first_seq: u64, count: u64, base_offset: i64) {
        self.acked.entry(stream).or_default().insert_range(first_seq, first_seq + count);
        if base_offset >= 0 {
            let end = base_offset + count as i64;
            let slot = self.acked_end_offset.entry(stream.1).or_insert(end);
            *slot = (*slot).max(end);
        }
    }

    pub fn failed(&mut self, count: u64) {
        self.failed_records += count;
    }

    pub fn absorb(&mut self, other: AckLedger) {
        for (stream, set) in other.acked {
            let mine = self.acked.entry(stream).or_default();
            for &(s, e) in set.ranges() {
                mine.insert_range(s, e);
            }
        }
        for (partition, end) in other.acked_end_offset {
            let slot = self.acked_end_offset.entry(partition).or_insert(end);
            *slot = (*slot).max(end);
        }
        self.failed_records += other.failed_records;
    }
}

/// Consumer side: what arrived, per stream, with duplicate and order checks as records come.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    streams: HashMap<Stream, StreamLog>,
}

#[derive(Debug, Default)]
struct StreamLog {
    seen: SeqSet,
    highest: Option<u64>,
    duplicates: u64,
    reordered: u64,
    /// First few anomalies, for the report: (sequence, offset, what).
    examples: Vec<(u64, i64, &'static str)>,
}

/// Anomaly examples kept per stream; enough to start debugging, bounded in memory.
const EXAMPLES_PER_STREAM: usize = 5;

impl DeliveryLog {
    pub fn observe(&mut self, stream: Stream, seq: u64, offset: i64) {
        let log = self.streams.entry(stream).or_default();
        if !log.seen.insert(seq) {
            log.duplicates += 1;
            log.note(seq, offset, "duplicate");
            return;
        }
        match log.highest {
            Some(h) if seq < h => {
                log.reordered += 1;
                log.note(seq, offset, "reordered");
            }
            _ => log.highest = Some(seq),
        }
    }

    pub fn absorb(&mut self, other: DeliveryLog) {
        // Partitions are split among consumers, so streams never collide; merge anyway.
        for (stream, log) in other.streams {
            match self.streams.get_mut(&stream) {
                None => {
                    self.streams.insert(stream, log);
                }
                Some(mine) => {
                    for &(s, e) in log.seen.ranges() {
                        mine.seen.insert_range(s, e);
                    }
                    mine.duplicates += log.duplicates;
                    mine.reordered += log.reordered;
                    mine.examples.extend(log.examples);
                }
            }
        }
    }
}

impl StreamLog {
    fn note(&mut self, seq: u64, offset: i64, what: &'static str) {
        if self.examples.len() < EXAMPLES_PER_STREAM {
            self.examples.push((seq, offset, what));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records acknowledged by the broker.
    pub acked: u64,
    /// Records of this run that arrived (first copies only).
    pub delivered: u64,
    /// Acknowledged but never delivered.
    pub lost: u64,
    /// Extra copies of records already delivered.
    pub duplicated: u64,
    /// Records delivered after a higher sequence of the same producer on the same partition.
    pub reordered: u64,
    /// Delivered although their produce failed or timed out (allowed: the broker may have
    /// written them before the error).
    pub delivered_unacked: u64,
    /// Records whose produce failed.
    pub failed_produce: u64,
    pub passed: bool,
    /// Up to a few anomalies per stream, e.g. "p3 partition 1 seq 10..12 lost".
    pub examples: Vec<String>,
}

/// Examples listed in the report over all streams.
const EXAMPLES_MAX: usize = 50;

pub fn check(ledger: &AckLedger, delivered: &DeliveryLog) -> VerifyReport {
    let mut report = VerifyReport {
        acked: 0,
        delivered: 0,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        delivered_unacked: 0,
        failed_produce: ledger.failed_records,
        passed: false,
        examples: Vec::new(),
    };
    let empty = SeqSet::new();
    // Sorted for a stable report.
    let acked: BTreeMap<&Stream, &SeqSet> = ledger.acked.iter().collect();
    for (&&(pid, partition), acked_set) in &acked {
        let seen = delivered.streams.get(&(pid, partition)).map_or(&empty, |l| &l.seen);
        report.acked += acked_set.len();
        for &(s, e) in acked_set.ranges() {
            let present = seen.count_in(s, e);
            report.lost += (e - s) - present;
            if present < e - s {
                for (gs, ge) in seen.gaps_in(s, e) {
                    if report.examples.len() < EXAMPLES_MAX {
                        report.examples.push(format!("producer {pid:#x} partition {partition} seq {gs}..{ge} lost"));
                    }
                }
            }
        }
    }
    let logs: BTreeMap<&Stream, &StreamLog> = delivered.streams.iter().collect();
    for (&(pid, partition), log) in logs {
        report.delivered += log.seen.len();
        report.duplicated += log.duplicates;
        report.reordered += log.reordered;
        let acked_set = ledger.acked.get(&(pid, partition)).unwrap_or(&empty);
        let acked_seen: u64 = acked_set.ranges().iter().map(|&(s, e)| log.seen.count_in(s, e)).sum();
        report.delivered_unacked += log.seen.len() - acked_seen;
        for &(seq, offset, what) in &log.examples {
            if report.examples.len() < EXAMPLES_MAX {
                report
                    .examples
                    .push(format!("producer {pid:#x} partition {partition} seq {seq} at offset {offset} {what}"));
            }
        }
    }
    report.passed = report.lost == 0 && report.duplicated == 0 && report.reordered == 0;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_delivery_passes() {
        let mut ledger = AckLedger::default();
        ledger.acked((1, 0), 0, 100, 0);
        ledger.acked((1, 0), 100, 50, 100);
        ledger.acked((2, 1), 0, 10, 0);
        let mut log = DeliveryLog::default();
        for seq in 0..150 {
            log.observe((1, 0), seq, seq as i64);
        }
        for seq in 0..10 {
            log.observe((2, 1), seq, seq as i64);
        }
        let r = check(&ledger, &log);
        assert!(r.passed, "{r:?}");
        assert_eq!((r.acked, r.delivered, r.lost), (160, 160, 0));
        assert_eq!(ledger.acked_end_offset[&0], 150);
    }

    #[test]
    fn loss_duplicates_and_reordering_are_counted() {
        let mut ledger = AckLedger::default();
        ledger.acked((7, 3), 0, 10, 0);
        let mut log = DeliveryLog::default();
        for (offset, seq) in [0u64, 1, 2, 5, 4, 4, 9].into_iter().enumerate() {
            log.observe((7, 3), seq, offset as i64);
        }
        let r = check(&ledger, &log);
        assert!(!r.passed);
        assert_eq!(r.lost, 4, "3, 6, 7, 8 never arrived");
        assert_eq!(r.duplicated, 1);
        assert_eq!(r.reordered, 1, "4 after 5");
        assert_eq!(r.delivered, 6);
        assert!(r.examples.iter().any(|e| e.contains("seq 3..4 lost")), "{:?}", r.examples);
        assert!(r.examples.iter().any(|e| e.contains("seq 6..9 lost")));
        assert!(r.examples.iter().any(|e| e.contains("duplicate")));
    }

    #[test]
    fn unacknowledged_deliveries_are_not_errors() {
        let mut ledger = AckLedger::default();
        ledger.acked((1, 0), 0, 5, 0);
        ledger.failed(5); // sequences 5..10 failed, yet some were written
        ledger.acked((1, 0), 10, 5, 7);
        let mut log = DeliveryLog::default();
        for seq in [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14] {
            log.observe((1, 0), seq, 0);
        }
        let r = check(&ledger, &log);
        assert!(r.passed, "{r:?}");
        assert_eq!((r.delivered_unacked, r.failed_produce), (2, 5));
    }

    #[test]
    fn absorb_merges_ledgers_and_logs() {
        let mut a = AckLedger::default();
        let mut b = AckLedger::default();
        a.acked((1, 0), 0, 5, 0);
        b.acked((1, 0), 5, 5, 5);
        b.acked((2, 0), 0, 1, 10);
        a.absorb(b);
        assert_eq!(a.acked[&(1, 0)].ranges(), &[(0, 10)]);
        assert_eq!(a.acked_end_offset[&0], 11);
        let mut la = DeliveryLog::default();
        let mut lb = DeliveryLog::default();
        la.observe((1, 0), 0, 0);
        lb.observe((1, 1), 0, 0);
        la.absorb(lb);
        assert_eq!(la.streams.len(), 2);
    }
}

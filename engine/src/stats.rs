//! Latency histograms of the engine's durability points (`durable.rs`):
//! every fdatasync, fsync and directory fsync is timed into one of the
//! statics below, which the broker exports as Prometheus histograms.
//!
//! The histogram type is shared with the broker's own metrics. Buckets are
//! fixed (`BOUNDS_US`) so recording is a bucket search and two adds on
//! atomics, with no allocation and no lock.
//!
//! These statics are written from any thread (shards, and the blocking
//! threads that open and close logs), so they use `fetch_add`. A sync costs
//! tens of microseconds at the very least, against tens of nanoseconds for
//! a contended atomic add: the counting is noise next to what it counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (25 µs to 10 s); one more
/// bucket catches everything above.
pub const BOUNDS_US: [u64; 18] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// A fixed-bucket latency histogram of atomics.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKETS], sum_ns: AtomicU64::new(0) }
    }

    fn bucket(d: Duration) -> usize {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        BOUNDS_US.partition_point(|&b| b < us)
    }

    /// Records from any thread.
    pub fn record(&self, d: Duration) {
        self.buckets[Self::bucket(d)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Records from the one thread that owns this histogram (a shard):
    /// with a single writer a plain load and store is enough, and costs no
    /// locked instruction. Readers on other threads see each value whole
    /// (it is an atomic), at most one update late.
    pub fn record_owned(&self, d: Duration) {
        let b = &self.buckets[Self::bucket(d)];
        b.store(b.load(Relaxed).wrapping_add(1), Relaxed);
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.sum_ns.store(self.sum_ns.load(Relaxed).wrapping_add(ns), Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0; BUCKETS];
        for (c, b) in counts.iter_mut().zip(&self.buckets) {
            *c = b.load(Relaxed);
        }
        HistogramSnapshot { counts, sum_ns: self.sum_ns.load(Relaxed) }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative); the last is above the largest bound.
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot { counts: [0; BUCKETS], sum_ns: 0 }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_ns += other.sum_ns;
    }

    /// (upper bound in seconds, count in that bucket alone) per bucket,
    /// +Inf last: what `prometheus-client` takes (it accumulates them into
    /// Prometheus' cumulative `le` buckets itself).
    pub fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        let bound = |i: usize| BOUNDS_US.get(i).map_or(f64::INFINITY, |&us| us as f64 / 1e6);
        self.counts.iter().enumerate().map(|(i, &c)| (bound(i), c)).collect()
    }
}

/// Every fdatasync of a log's data (appends for acks=all, flushes, rolls).
pub static FDATASYNC: Histogram = Histogram::new();
/// Every full fsync of a file (after truncations, of checkpoints).
pub static FSYNC: Histogram = Histogram::new();
/// Every fsync of a directory (new, renamed and removed files made durable).
pub static DIR_FSYNC: Histogram = Histogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::new();
        h.record(Duration::from_micros(25)); // on a bound: that bucket
        h.record(Duration::from_micros(26));
        h.record_owned(Duration::from_secs(60)); // above all bounds
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[BUCKETS - 1], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, 60_000_051_000);
        let b = s.buckets_seconds();
        assert_eq!(b[0], (0.000025, 1));
        assert_eq!(b[1], (0.00005, 1));
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 1));
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), s.count());
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

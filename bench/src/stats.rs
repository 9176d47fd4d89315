//! Counters and latency histograms of one producer or consumer task.
//!
//! Each task owns a `SideStats` behind a mutex that it locks once per acknowledged batch or
//! fetch response; the progress line takes the `live_*` fields once a second. Latencies are
//! kept in microseconds in HdrHistograms (3 significant digits, up to an hour).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram holds: one hour, in microseconds. Larger values saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

pub type SharedStats = Arc<Mutex<SideStats>>;

pub struct SideStats {
    /// Records and value+key bytes inside the measured window.
    pub records: u64,
    pub bytes: u64,
    /// Latency of the measured records.
    pub latency: Histogram<u64>,
    /// Everything since the last progress tick, warm-up included.
    pub live_records: u64,
    pub live_bytes: u64,
    pub live_latency: Histogram<u64>,
    /// Records in every phase (count limits and the drain use these).
    pub total_records: u64,
    /// Failures by name: Kafka error names for broker codes, `client:<kind>` for the rest.
    pub errors: BTreeMap<String, u64>,
    /// Records whose produce failed (not acknowledged).
    pub failed_records: u64,
    /// Records without the bench header or from another run (consumers only).
    pub foreign_records: u64,
}

impl Default for SideStats {
    fn default() -> Self {
        Self {
            records: 0,
            bytes: 0,
            latency: new_histogram(),
            live_records: 0,
            live_bytes: 0,
            live_latency: new_histogram(),
            total_records: 0,
            errors: BTreeMap::new(),
            failed_records: 0,
            foreign_records: 0,
        }
    }
}

impl SideStats {
    pub fn shared() -> SharedStats {
        Arc::new(Mutex::new(SideStats::default()))
    }

    /// Counts `records` records of `bytes` bytes; `measured` when inside the measured window.
    #[inline]
    pub fn count(&mut self, records: u64, bytes: u64, measured: bool) {
        self.total_records += records;
        self.live_records += records;
        self.live_bytes += bytes;
        if measured {
            self.records += records;
            self.bytes += bytes;
        }
    }

    #[inline]
    pub fn record_latency_ns(&mut self, latency_ns: u64, measured: bool) {
        let us = (latency_ns / 1000).max(1);
        self.live_latency.saturating_record(us);
        if measured {
            self.latency.saturating_record(us);
        }
    }

    /// Books a batch of `count` records (`bytes` in all) whose send times are spread evenly
    /// from `first_ns` to `last_ns`: a batch's records are appended over its linger time but
    /// acknowledged together. Each record is measured when `in_window(its send time)`; latency
    /// runs to `done_ns` when given (acks=0 has none).
    pub fn record_batch(
        &mut self,
        first_ns: u64,
        last_ns: u64,
        count: u64,
        bytes: u64,
        done_ns: Option<u64>,
        in_window: impl Fn(u64) -> bool,
    ) {
        if count == 0 {
            return;
        }
        let span = last_ns.saturating_sub(first_ns);
        let steps = (count - 1).max(1);
        let mut measured_records = 0;
        for i in 0..count {
            let sent = first_ns + (u128::from(span) * u128::from(i) / u128::from(steps)) as u64;
            let measured = in_window(sent);
            measured_records += u64::from(measured);
            if let Some(done) = done_ns {
                self.record_latency_ns(done.saturating_sub(sent), measured);
            }
        }
        self.total_records += count;
        self.live_records += count;
        self.live_bytes += bytes;
        self.records += measured_records;
        // Sizes vary per record but are not tracked per record; apportion the batch's bytes.
        self.bytes += (u128::from(bytes) * u128::from(measured_records) / u128::from(count)) as u64;
    }

    pub fn error(&mut self, name: &str, records: u64) {
        *self.errors.entry(name.to_string()).or_insert(0) += 1;
        self.failed_records += records;
    }

    /// Takes the live counters and histogram, leaving them empty.
    pub fn take_live(&mut self, into: &mut LiveSample) {
        into.records += self.live_records;
        into.bytes += self.live_bytes;
        // Both histograms share bounds, so adding cannot fail.
        let _ = into.latency.add(&self.live_latency);
        self.live_records = 0;
        self.live_bytes = 0;
        self.live_latency.reset();
    }

    /// Adds another task's totals (for the final report).
    pub fn absorb(&mut self, other: &SideStats) {
        self.records += other.records;
        self.bytes += other.bytes;
        let _ = self.latency.add(&other.latency);
        self.total_records += other.total_records;
        for (name, n) in &other.errors {
            *self.errors.entry(name.clone()).or_insert(0) += n;
        }
        self.failed_records += other.failed_records;
        self.foreign_records += other.foreign_records;
    }
}

/// One progress interval, summed over tasks.
pub struct LiveSample {
    pub records: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

impl Default for LiveSample {
    fn default() -> Self {
        Self { records: 0, bytes: 0, latency: new_histogram() }
    }
}

/// Latency percentiles in milliseconds, plus the percentile curve for plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
    /// (percentile, milliseconds) at evenly spaced "nines" from p0 to p99.999, then p100.
    pub curve: Vec<[f64; 2]>,
}

/// Curve points per decade of nines (p90 → p99 → p99.9 …).
const CURVE_POINTS_PER_NINE: u32 = 10;
/// The curve stops at five nines; beyond that only the max is meaningful.
const CURVE_MAX_NINES: u32 = 5;

impl LatencySummary {
    /// `None` for an empty histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |p: f64| ms(h.value_at_percentile(p));
        let mut curve: Vec<[f64; 2]> = (0..=CURVE_MAX_NINES * CURVE_POINTS_PER_NINE)
            .map(|i| {
                let nines = f64::from(i) / f64::from(CURVE_POINTS_PER_NINE);
                let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
                [round(percentile, 6), at(percentile)]
            })
            .collect();
        curve.push([100.0, ms(h.max())]);
        Some(Self {
            count: h.len(),
            mean_ms: round(h.mean() / 1000.0, 3),
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            p999_ms: at(99.9),
            p9999_ms: at(99.99),
            max_ms: ms(h.max()),
            curve,
        })
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Records (or bytes) per second over `secs`, 0 for an empty window.
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_measured_and_live() {
        let mut s = SideStats::default();
        s.count(10, 1000, false);
        s.count(5, 500, true);
        assert_eq!((s.records, s.bytes, s.total_records, s.live_records), (5, 500, 15, 15));
        let mut live = LiveSample::default();
        s.take_live(&mut live);
        assert_eq!((live.records, live.bytes, s.live_records), (15, 1500, 0));
    }

    #[test]
    fn batches_interpolate_send_times_and_split_at_the_window() {
        let mut s = SideStats::default();
        // Sent at 0, 1, 2, 3, 4 ms; all done at 10 ms → 10, 9, 8, 7, 6 ms. The window opens
        // at 2 ms, so the last three records (and 3/5 of the bytes) are measured.
        s.record_batch(0, 4_000_000, 5, 500, Some(10_000_000), |ns| ns >= 2_000_000);
        assert_eq!((s.total_records, s.records, s.bytes, s.live_bytes), (5, 3, 300, 500));
        assert_eq!(s.latency.len(), 3);
        assert_eq!(s.live_latency.len(), 5);
        assert_eq!(s.latency.max(), s.latency.highest_equivalent(8_000));
        assert_eq!(s.live_latency.max(), s.live_latency.highest_equivalent(10_000));
        assert_eq!(s.latency.min(), s.latency.lowest_equivalent(6_000));
        // A single record uses its own time; sub-microsecond latencies count as 1 µs.
        s.record_batch(5, 5, 1, 10, Some(5), |_| false);
        assert_eq!(s.live_latency.min(), 1);
        // Without an acknowledgement time only the counts move.
        s.record_batch(0, 0, 2, 20, None, |_| true);
        assert_eq!((s.records, s.live_latency.len()), (5, 6));
    }

    #[test]
    fn summary_percentiles_and_curve() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let s = LatencySummary::from_histogram(&h).unwrap();
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{}", s.p50_ms);
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{}", s.p99_ms);
        assert!((s.max_ms - 10.0).abs() < 0.01);
        assert_eq!(s.curve.len(), 52);
        assert_eq!(s.curve[10][0], 90.0);
        assert_eq!(s.curve[20][0], 99.0);
        assert!(s.curve.windows(2).all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        assert!(LatencySummary::from_histogram(&new_histogram()).is_none());
    }

    #[test]
    fn absorb_merges_everything() {
        let mut a = SideStats::default();
        let mut b = SideStats::default();
        a.error("NotLeaderOrFollower", 3);
        b.error("NotLeaderOrFollower", 2);
        b.count(4, 40, true);
        b.record_latency_ns(2_000_000, true);
        a.absorb(&b);
        assert_eq!(a.errors["NotLeaderOrFollower"], 2);
        assert_eq!((a.failed_records, a.records, a.latency.len()), (5, 4, 1));
    }
}

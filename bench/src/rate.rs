//! Open-loop pacing for a target rate.
//!
//! Record `i` is scheduled at `start + i / rate`. A producer that falls behind (the broker
//! stalls, the in-flight window is full) sends the backlog as soon as it can and timestamps each
//! record with its *scheduled* time, so a stall shows up as latency instead of silently lowering
//! the offered load (coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Nanoseconds between consecutive records.
    interval_ns: f64,
    issued: u64,
}

impl Pacer {
    /// `rate_per_sec` must be positive and finite.
    pub fn new(rate_per_sec: f64, start: Instant) -> Self {
        assert!(rate_per_sec > 0.0 && rate_per_sec.is_finite(), "rate must be positive");
        Self { start, interval_ns: 1e9 / rate_per_sec, issued: 0 }
    }

    /// When record `index` is due.
    pub fn scheduled(&self, index: u64) -> Instant {
        self.start + Duration::from_nanos((index as f64 * self.interval_ns) as u64)
    }

    /// Records scheduled at or before `now` and not yet issued.
    pub fn due(&self, now: Instant) -> u64 {
        let elapsed_ns = now.saturating_duration_since(self.start).as_nanos() as f64;
        // Record 0 is due at start itself, hence the + 1.
        let allowed = (elapsed_ns / self.interval_ns).floor() as u64 + 1;
        allowed.saturating_sub(self.issued)
    }

    /// When the next record is due.
    pub fn next_due(&self) -> Instant {
        self.scheduled(self.issued)
    }

    /// Takes the next record's slot and returns its scheduled time.
    pub fn issue(&mut self) -> Instant {
        let at = self.scheduled(self.issued);
        self.issued += 1;
        at
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_the_rate() {
        let start = Instant::now();
        let pacer = Pacer::new(1000.0, start);
        assert_eq!(pacer.scheduled(0), start);
        assert_eq!(pacer.scheduled(1000) - start, Duration::from_secs(1));
        assert_eq!(pacer.scheduled(1) - start, Duration::from_millis(1));
    }

    #[test]
    fn due_counts_whole_slots_and_backlog() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100.0, start); // one record per 10 ms
        assert_eq!(pacer.due(start), 1);
        assert_eq!(pacer.due(start + Duration::from_millis(9)), 1);
        assert_eq!(pacer.due(start + Duration::from_millis(10)), 2);
        assert_eq!(pacer.due(start + Duration::from_millis(95)), 10);
        // Issuing consumes slots; a stalled caller sees its whole backlog at once.
        for _ in 0..4 {
            pacer.issue();
        }
        assert_eq!(pacer.due(start + Duration::from_millis(95)), 6);
        assert_eq!(pacer.due(start + Duration::from_secs(10)), 997);
        assert_eq!(pacer.next_due(), start + Duration::from_millis(40));
        // Before start nothing but record 0 is due (saturating, no panic).
        assert_eq!(Pacer::new(1.0, start + Duration::from_secs(5)).due(start), 1);
    }

    #[test]
    fn issued_times_are_the_scheduled_times() {
        let start = Instant::now();
        let mut pacer = Pacer::new(250_000.0, start);
        let times: Vec<Instant> = (0..5).map(|_| pacer.issue()).collect();
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t - start, Duration::from_nanos(4_000 * i as u64));
        }
        assert_eq!(pacer.issued(), 5);
    }
}

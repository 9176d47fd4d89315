//! The measured window of a run: warm-up before it is not counted, and producers stop at its end.

use std::time::Instant;

use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub clock: Clock,
    /// When the run (warm-up included) started.
    pub start: Instant,
    pub measure_from: Instant,
    /// End of the measured phase; `None` when only a record count bounds the run.
    pub stop_at: Option<Instant>,
    measure_from_ns: u64,
    stop_ns: u64,
}

impl Window {
    pub fn new(clock: Clock, start: Instant, measure_from: Instant, stop_at: Option<Instant>) -> Self {
        Self {
            clock,
            start,
            measure_from,
            stop_at,
            measure_from_ns: clock.at(measure_from),
            stop_ns: stop_at.map_or(u64::MAX, |t| clock.at(t)),
        }
    }

    /// Whether something sent at `ns` (Unix nanoseconds) belongs to the measurement.
    #[inline]
    pub fn contains_ns(&self, ns: u64) -> bool {
        ns >= self.measure_from_ns && ns < self.stop_ns
    }

    #[inline]
    pub fn contains(&self, t: Instant) -> bool {
        self.contains_ns(self.clock.at(t))
    }

    pub fn is_over(&self, now: Instant) -> bool {
        self.stop_at.is_some_and(|stop| now >= stop)
    }

    /// Whether Unix time `ns` is at or past the window's end.
    #[inline]
    pub fn is_over_ns(&self, ns: u64) -> bool {
        ns >= self.stop_ns
    }

    /// Seconds measured if the work ended at `ended` (capped at the window's end).
    pub fn measured_secs(&self, ended: Instant) -> f64 {
        let end = self.stop_at.map_or(ended, |stop| stop.min(ended));
        end.saturating_duration_since(self.measure_from).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn membership_and_measured_time() {
        let clock = Clock::new();
        let start = Instant::now();
        let from = start + Duration::from_secs(2);
        let stop = from + Duration::from_secs(10);
        let w = Window::new(clock, start, from, Some(stop));
        assert!(!w.contains(start + Duration::from_secs(1)));
        assert!(w.contains(from));
        assert!(w.contains(stop - Duration::from_millis(1)));
        assert!(!w.contains(stop));
        assert!(w.is_over(stop) && !w.is_over(from));
        assert!(w.is_over_ns(clock.at(stop)) && !w.is_over_ns(clock.at(from)));
        assert_eq!(w.measured_secs(stop + Duration::from_secs(3)), 10.0);
        assert_eq!(w.measured_secs(from + Duration::from_secs(4)), 4.0);
        assert_eq!(w.measured_secs(start), 0.0);
        let open = Window::new(clock, start, start, None);
        assert!(open.contains(start + Duration::from_secs(1_000_000)));
        assert_eq!(open.measured_secs(start + Duration::from_secs(7)), 7.0);
    }
}

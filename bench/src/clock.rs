//! Wall-clock nanoseconds derived from the monotonic clock.
//!
//! Records carry Unix-epoch nanoseconds so that a consumer in another process can compute
//! end-to-end latency. Reading `SystemTime` per record would be affected by clock steps, so
//! the wall clock is read once and advanced with `Instant`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let anchor = Instant::now();
        let anchor_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self { anchor, anchor_unix_ns }
    }

    /// Unix nanoseconds now.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.at(Instant::now())
    }

    /// Unix nanoseconds at `t` (instants before the anchor map to the anchor).
    #[inline]
    pub fn at(&self, t: Instant) -> u64 {
        self.anchor_unix_ns + t.saturating_duration_since(self.anchor).as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn advances_with_instants_and_tracks_the_wall_clock() {
        let clock = Clock::new();
        let t = Instant::now();
        assert_eq!(clock.at(t + Duration::from_millis(5)) - clock.at(t), 5_000_000);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(clock.now_ns().abs_diff(wall) < 1_000_000_000);
    }
}

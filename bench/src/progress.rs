//! The live progress line on stderr, redrawn once a second while the run goes on.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::stats::{LiveSample, SharedStats};
use crate::window::Window;

const TICK: Duration = Duration::from_secs(1);

/// Redraws the line every second until aborted; call `finish_line` afterwards.
pub async fn report_progress(window: Window, producers: Vec<SharedStats>, consumers: Vec<SharedStats>) {
    let mut ticker = tokio::time::interval_at((Instant::now() + TICK).into(), TICK);
    let mut last = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let secs = now.duration_since(last).as_secs_f64();
        last = now;
        let produced = sample(&producers);
        let consumed = sample(&consumers);
        let phase = if now < window.measure_from { " warm-up" } else { "" };
        let mut line = format!("[{:6.1}s{phase}]", now.duration_since(window.start).as_secs_f64());
        if !producers.is_empty() {
            line += &format!(" produce {}", side(&produced, secs, "ack"));
        }
        if !consumers.is_empty() {
            line += &format!(" | consume {}", side(&consumed, secs, "e2e"));
        }
        let errors: u64 = producers
            .iter()
            .chain(&consumers)
            .map(|s| s.lock().expect("stats lock").errors.values().sum::<u64>())
            .sum();
        if errors > 0 {
            line += &format!(" | errors {errors}");
        }
        // \r and erase-line: the next tick overwrites this one.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// Ends the progress line so the summary starts on a fresh line.
pub fn finish_line() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

fn sample(stats: &[SharedStats]) -> LiveSample {
    let mut live = LiveSample::default();
    for s in stats {
        s.lock().expect("stats lock").take_live(&mut live);
    }
    live
}

fn side(s: &LiveSample, secs: f64, latency_name: &str) -> String {
    let rate = s.records as f64 / secs;
    let mb = s.bytes as f64 / secs / 1e6;
    let p99 = if s.latency.is_empty() {
        "-".to_string()
    } else {
        format!("{:.2} ms", s.latency.value_at_percentile(99.0) as f64 / 1000.0)
    };
    format!("{} rec/s {mb:.1} MB/s {latency_name} p99 {p99}", human_count(rate))
}

/// 1234567 → "1.23M".
pub fn human_count(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_abbreviated() {
        assert_eq!(human_count(999.0), "999");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(human_count(1_234_567.0), "1.23M");
        assert_eq!(human_count(3.2e9), "3.20G");
    }
}

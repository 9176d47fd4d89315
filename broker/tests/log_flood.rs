//! Logs stay readable under abuse: thousands of malformed frames give a
//! bounded number of lines, and a summary says how many were left out.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{closed_by_broker, Laminar};

const LINES_PER_WINDOW: usize = 10;

/// The counts of "suppressed N similar messages (cause)" lines.
fn suppressed(log: &str, cause: &str) -> Vec<usize> {
    let tail = format!(" similar messages ({cause})");
    log.lines()
        .filter(|l| l.contains(&tail))
        .map(|l| {
            let at = l.find("suppressed ").expect("summary") + "suppressed ".len();
            l[at..].split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn malformed_frames_on_new_connections_log_a_bounded_number_of_lines() {
    let l = Laminar::start(&["--log-limit-interval-ms", "1000"]);
    const FRAMES: usize = 3000;
    let started = Instant::now();
    for i in 0..FRAMES {
        let mut s = l.connect();
        // A frame of an API that does not exist.
        let mut f = Vec::new();
        f.extend_from_slice(&10i32.to_be_bytes());
        f.extend_from_slice(&12345i16.to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&(i as i32).to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        s.write_all(&f).unwrap();
        assert!(closed_by_broker(&mut s));
    }
    let elapsed = started.elapsed();
    // Every window ends and its summary is written (within half a window).
    std::thread::sleep(Duration::from_millis(2000));
    let log = l.log_text();
    let lines = log.matches("closing connection: unknown API key 12345").count();
    let summaries = suppressed(&log, "malformed frame");
    let windows = elapsed.as_millis() as usize / 1000 + 2;
    eprintln!("{FRAMES} malformed frames in {elapsed:?}: {lines} lines, summaries {summaries:?}");
    assert!(lines <= windows * LINES_PER_WINDOW, "{lines} lines in {windows} windows");
    assert!(lines >= LINES_PER_WINDOW, "the first ones are logged");
    assert!(!summaries.is_empty() && summaries.len() <= windows, "{summaries:?}");
    // Every event is either logged or counted in a summary.
    assert_eq!(lines + summaries.iter().sum::<usize>(), FRAMES);
    assert!(log.lines().count() < 100, "{} lines in all", log.lines().count());
}

//! Log lines that stay readable under abuse. Each cause of a repeated line
//! (a malformed frame, a refused connection, a failing disk) may log at most
//! `LINES_PER_WINDOW` lines per window of `--log-limit-interval-ms`; what
//! goes over is counted, and one summary line per cause and window says how
//! many were suppressed once the window is over (`run_summaries` makes sure
//! that line comes even when the flood stops). The state is one atomic word
//! per cause, shared by all shard threads: no lock, and the count is exact
//! (every event lands in exactly one window, and each window's summary is
//! written by exactly one thread, the one that moves the cause to the next
//! window).
//!
//! Also here: a data write's storage error is logged once per partition and
//! cause, and once more when writes to that partition succeed again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use laminar_engine::EngineError;

/// Lines one cause may log per window before it is summarised.
pub const LINES_PER_WINDOW: u32 = 10;
/// Default window (`--log-limit-interval-ms`): at most 10 lines of a cause
/// per 10 s, 1.1 lines a second with its summary, ~10 MB a day per cause
/// under a flood that never stops.
pub const INTERVAL_MS_DEFAULT: u64 = 10_000;

static INTERVAL_MS: AtomicU64 = AtomicU64::new(INTERVAL_MS_DEFAULT);

/// Why a line is logged. Each cause has its own allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A frame that could not be parsed or decoded (or a connection closed
    /// inside one): the connection is closed.
    MalformedFrame,
    /// A frame larger than the broker accepts: the connection is closed.
    OversizedFrame,
    /// A frame not received, or a response not taken, in `--frame-timeout-ms`.
    Timeout,
    /// A socket error on a connection (reset by the peer, ...).
    ConnectionIo,
    /// accept(2) failed (EMFILE, ENOBUFS, ...).
    AcceptFailed,
    /// A connection refused by `--max-connections` or `--max-connections-per-ip`.
    ConnectionCap,
    /// A data write failed on a storage error (per partition and cause, see
    /// `note_append`), or a partition's writes work again.
    StorageError,
    /// A background flush (`flush.ms`) failed.
    FlushFailed,
    /// SASL authentication failed, or a request came before it (the connection is closed).
    Authentication,
}

const CAUSES: [Cause; 9] = [
    Cause::MalformedFrame,
    Cause::OversizedFrame,
    Cause::Timeout,
    Cause::ConnectionIo,
    Cause::AcceptFailed,
    Cause::ConnectionCap,
    Cause::StorageError,
    Cause::FlushFailed,
    Cause::Authentication,
];

impl Cause {
    fn name(self) -> &'static str {
        match self {
            Cause::MalformedFrame => "malformed frame",
            Cause::OversizedFrame => "oversized frame",
            Cause::Timeout => "connection timeout",
            Cause::ConnectionIo => "connection i/o error",
            Cause::AcceptFailed => "accept failed",
            Cause::ConnectionCap => "connection refused by a cap",
            Cause::StorageError => "storage error",
            Cause::FlushFailed => "flush failed",
            Cause::Authentication => "authentication failed",
        }
    }

    /// Storage trouble is an error; the rest is the clients' doing.
    fn is_error(self) -> bool {
        matches!(self, Cause::StorageError | Cause::FlushFailed)
    }
}

/// Per cause: the window number (high 32 bits, wrapping) and the events seen
/// in it (low 32 bits, saturating).
static STATE: [AtomicU64; CAUSES.len()] = [const { AtomicU64::new(0) }; CAUSES.len()];

fn pack(window: u32, count: u32) -> u64 {
    ((window as u64) << 32) | count as u64
}

fn unpack(s: u64) -> (u32, u32) {
    ((s >> 32) as u32, s as u32)
}

/// Sets the window length (at start, from `--log-limit-interval-ms`).
pub fn set_interval(interval: Duration) {
    INTERVAL_MS.store((interval.as_millis() as u64).max(1), Ordering::Relaxed);
}

fn interval_ms() -> u64 {
    INTERVAL_MS.load(Ordering::Relaxed)
}

fn window_now() -> u32 {
    // Windows of the wall clock; numbers wrap after 2^32 windows, so two
    // windows 2^32 apart (13 years of 100 ms windows) would look the same.
    (laminar_engine::log::now_ms() / interval_ms()) as u32
}

/// Counts one event of `cause`; true when its line should be logged. The
/// summary of the cause's previous window, if lines were suppressed in it,
/// is logged here by the thread that opens the new window.
pub fn admit(cause: Cause) -> bool {
    admit_in(cause, window_now())
}

fn admit_in(cause: Cause, window: u32) -> bool {
    let slot = &STATE[cause as usize];
    let mut s = slot.load(Ordering::Relaxed);
    loop {
        let (w, count) = unpack(s);
        let (next, count_now, previous) = if w == window {
            (pack(w, count.saturating_add(1)), count + 1, None)
        } else {
            (pack(window, 1), 1, Some(count))
        };
        match slot.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                if let Some(count) = previous {
                    summarise(cause, count);
                }
                return count_now <= LINES_PER_WINDOW;
            }
            Err(now) => s = now,
        }
    }
}

/// Logs the summary of every cause whose window is over (and, with `force`,
/// of the current window too: at shutdown, so nothing stays unsaid).
pub fn flush_summaries(force: bool) {
    let window = window_now();
    for cause in CAUSES {
        let slot = &STATE[cause as usize];
        let mut s = slot.load(Ordering::Relaxed);
        loop {
            let (w, count) = unpack(s);
            if (w == window && !force) || count <= LINES_PER_WINDOW {
                break;
            }
            let next = if w == window { pack(w, LINES_PER_WINDOW) } else { pack(window, 0) };
            match slot.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    // Forced: the window goes on with its lines used up, so
                    // what follows in it is suppressed and summarised again.
                    summarise(cause, count);
                    break;
                }
                Err(now) => s = now,
            }
        }
    }
}

fn summarise(cause: Cause, events: u32) {
    let suppressed = suppressed_of(events);
    if suppressed == 0 {
        return;
    }
    let (name, window_ms) = (cause.name(), interval_ms());
    if cause.is_error() {
        tracing::error!(cause = name, suppressed, window_ms, "suppressed {suppressed} similar messages ({name})");
    } else {
        tracing::warn!(cause = name, suppressed, window_ms, "suppressed {suppressed} similar messages ({name})");
    }
}

fn suppressed_of(events: u32) -> u32 {
    events.saturating_sub(LINES_PER_WINDOW)
}

/// Writes the summaries of windows that ended, so the last one of a flood
/// appears within a tick of its end even when no further event comes.
pub async fn run_summaries() {
    loop {
        let tick_ms = (interval_ms() / 2).clamp(50, 1000);
        tokio::time::sleep(Duration::from_millis(tick_ms)).await;
        flush_summaries(false);
    }
}

thread_local! {
    /// Partitions of this shard whose last data write failed on a storage
    /// error, with the kind of error. A partition lives on one shard, so a
    /// per-thread map is per partition. Bounded by the partitions this shard
    /// holds (an entry goes when the partition's writes succeed again; one of
    /// a deleted partition stays, one small entry per name).
    static FAILING: RefCell<HashMap<(Arc<str>, i32), std::io::ErrorKind>> = RefCell::new(HashMap::new());
}

/// Logs a data write's storage error once per partition and cause (not per
/// request), at error level, naming the partition and the OS error; and once
/// when the partition's writes succeed again.
pub fn note_append<T>(topic: &Arc<str>, partition: i32, r: &Result<T, EngineError>) {
    let kind = match r {
        Ok(_) => None,
        Err(EngineError::Storage(e)) => Some((e.kind(), e.to_string())),
        Err(_) => return, // the client's batch, not the disk
    };
    let changed = FAILING.with(|f| {
        let mut f = f.borrow_mut();
        match &kind {
            Some((k, _)) => f.insert((topic.clone(), partition), *k) != Some(*k),
            // The common case, every successful append: one emptiness check.
            None if f.is_empty() => false,
            None => f.remove(&(topic.clone(), partition)).is_some(),
        }
    });
    if !changed || !admit(Cause::StorageError) {
        return;
    }
    let p = format!("{topic}-{partition}");
    match kind {
        Some((_, why)) => {
            tracing::error!(partition = %p, "writes to {p} fail: {why} (answering KAFKA_STORAGE_ERROR until it clears)")
        }
        None => tracing::info!(partition = %p, "writes to {p} succeed again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses its own cause: the state is process-wide and tests run
    // in parallel.

    #[test]
    fn a_window_logs_its_allowance_and_counts_the_rest() {
        let c = Cause::AcceptFailed;
        let logged = (0..1000).filter(|_| admit_in(c, 7)).count();
        assert_eq!(logged, LINES_PER_WINDOW as usize);
        assert_eq!(unpack(STATE[c as usize].load(Ordering::Relaxed)), (7, 1000));
        // The next window starts afresh.
        assert!(admit_in(c, 8));
        assert_eq!(unpack(STATE[c as usize].load(Ordering::Relaxed)), (8, 1));
    }

    #[test]
    fn threads_count_every_event_exactly_once() {
        let c = Cause::FlushFailed;
        let threads: Vec<_> =
            (0..4).map(|_| std::thread::spawn(move || (0..10_000).filter(|_| admit_in(c, 3)).count())).collect();
        let logged: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(logged, LINES_PER_WINDOW as usize);
        assert_eq!(unpack(STATE[c as usize].load(Ordering::Relaxed)), (3, 40_000));
        assert_eq!(suppressed_of(40_000), 40_000 - LINES_PER_WINDOW);
    }
}

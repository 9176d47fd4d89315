//! What Linux tells about the shards without their help: each shard
//! thread's CPU time (`/proc/self/task/TID/schedstat`) and each shard's
//! io_uring submission and completion counts (`/proc/self/fdinfo/FD` of its
//! ring). Read at scrape time by the metrics thread only.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

/// Shard runtimes are created one at a time while this is held, so the one
/// io_uring descriptor a starting shard finds unclaimed is its own
/// (tokio-uring does not expose its ring). Held for the time it takes to
/// create a ring and list the process's descriptors, at start only.
static RING_START: Mutex<()> = Mutex::new(());
static CLAIMED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Taken on a shard's thread before it creates its runtime; released once
/// `claim_ring` has run on it.
pub fn ring_start_lock() -> MutexGuard<'static, ()> {
    RING_START.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_ring(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|l| l.to_string_lossy() == "anon_inode:[io_uring]")
}

/// The io_uring descriptor of the runtime just created on this thread: the
/// one no shard has claimed. `None` if there is not exactly one (then that
/// shard's io_uring counts are not exported).
pub fn claim_ring() -> Option<i32> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    let claimed = claimed.get_or_insert_with(HashSet::new);
    let fresh: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| !claimed.contains(fd) && is_ring(*fd))
        .collect();
    claimed.extend(&fresh);
    match fresh.as_slice() {
        [fd] => Some(*fd),
        _ => None,
    }
}

/// (submissions consumed by the kernel, completions posted) of a ring, as
/// the kernel's 32-bit ring indices (`SqHead`, `CqTail`).
pub fn ring_counts(fd: i32) -> Option<(u32, u32)> {
    if !is_ring(fd) {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let field = |name: &str| -> Option<u32> {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
    };
    Some((field("SqHead")?, field("CqTail")?))
}

/// A 32-bit index that wraps, extended to a 64-bit count: exact while it is
/// sampled at least once per 2^32 steps (the metrics thread samples every
/// few seconds, far more often than any ring can wrap).
#[derive(Debug, Default, Clone, Copy)]
pub struct Wide {
    last: u32,
    pub total: u64,
}

impl Wide {
    pub fn update(&mut self, raw: u32) {
        self.total += u64::from(raw.wrapping_sub(self.last));
        self.last = raw;
    }
}

/// CPU time a thread of this process has used, in nanoseconds.
pub fn thread_cpu_ns(tid: i32) -> Option<u64> {
    if tid <= 0 {
        return None;
    }
    if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
        return s.split_whitespace().next()?.parse().ok();
    }
    // Without schedstat: utime + stime in clock ticks.
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_counters_survive_wrapping() {
        let mut w = Wide::default();
        w.update(10);
        w.update(u32::MAX - 5);
        w.update(4);
        assert_eq!(w.total, u64::from(u32::MAX) + 5);
    }

    #[test]
    fn this_threads_cpu_time_is_read() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let a = thread_cpu_ns(tid).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns(tid).unwrap() > a);
    }

    #[test]
    fn a_new_ring_is_found_and_counted() {
        let _g = ring_start_lock();
        // io_uring_setup(8, params): 120 bytes of parameters, zeroed.
        let mut params = [0u64; 15];
        // SAFETY: a valid pointer to a buffer of the parameters' size.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, params.as_mut_ptr()) } as i32;
        assert!(fd >= 0, "io_uring_setup: {}", std::io::Error::last_os_error());
        // Other tests may create rings at the same time: ours is among the
        // ones claimed, and is claimed once.
        let _ = claim_ring();
        assert!(CLAIMED.lock().unwrap().as_ref().unwrap().contains(&fd));
        assert_eq!(ring_counts(fd), Some((0, 0)));
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        assert_eq!(ring_counts(fd), None);
    }
}

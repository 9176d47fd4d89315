//! Facts about the machine a run happened on (no hostname: results get shared) and the bench's
//! own CPU use, so a reader can tell whether the load generator was the bottleneck.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub os: String,
    pub kernel: Option<String>,
    pub arch: String,
    pub memory_bytes: Option<u64>,
}

impl Machine {
    pub fn detect() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            os: std::env::consts::OS.to_string(),
            kernel: kernel_release(),
            arch: std::env::consts::ARCH.to_string(),
            memory_bytes: memory_bytes(),
        }
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn kernel_release() -> Option<String> {
    // SAFETY: uname fills a caller-provided struct; a zeroed utsname is a valid argument.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: on success `release` is a NUL-terminated string inside the struct.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

/// User and system CPU seconds used by this process so far (all threads).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user_secs: f64,
    pub system_secs: f64,
}

impl CpuTimes {
    pub fn now() -> Self {
        // SAFETY: getrusage writes into the zeroed struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return Self::default();
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Self { user_secs: secs(usage.ru_utime), system_secs: secs(usage.ru_stime) }
    }

    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes { user_secs: self.user_secs - earlier.user_secs, system_secs: self.system_secs - earlier.system_secs }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub user_secs: f64,
    pub system_secs: f64,
    /// CPU time over wall time: 1.0 is one core fully busy.
    pub cores_busy: f64,
    /// cores_busy over the cores available, in percent.
    pub percent_of_machine: f64,
    /// CPU microseconds per record produced or consumed (0 when none were).
    pub us_per_record: f64,
}

impl CpuUsage {
    pub fn new(used: CpuTimes, wall_secs: f64, cores: usize, records: u64) -> Self {
        let cpu = used.user_secs + used.system_secs;
        let cores_busy = if wall_secs > 0.0 { cpu / wall_secs } else { 0.0 };
        Self {
            user_secs: used.user_secs,
            system_secs: used.system_secs,
            cores_busy,
            percent_of_machine: 100.0 * cores_busy / cores.max(1) as f64,
            us_per_record: if records > 0 { cpu * 1e6 / records as f64 } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_something_sensible() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!m.arch.is_empty());
        if cfg!(target_os = "linux") {
            assert!(m.kernel.is_some());
            assert!(m.memory_bytes.unwrap() > 0);
        }
    }

    #[test]
    fn cpu_time_is_measured_and_derived() {
        let start = CpuTimes::now();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = CpuTimes::now().since(start);
        assert!(used.user_secs + used.system_secs > 0.0);
        let u = CpuUsage::new(CpuTimes { user_secs: 1.5, system_secs: 0.5 }, 4.0, 2, 1_000_000);
        assert!((u.cores_busy - 0.5).abs() < 1e-9);
        assert!((u.percent_of_machine - 25.0).abs() < 1e-9);
        assert!((u.us_per_record - 2.0).abs() < 1e-9);
    }
}

//! A simulated disk of fixed size, shared by the logs attached to it: a
//! failure probe, so the full-disk path (a write failing with ENOSPC) can be
//! tested where no small filesystem can be mounted. A log charges the segment
//! bytes it writes and refunds those it deletes, truncates or closes; a write
//! that does not fit fails with ENOSPC before it reaches the file, as a full
//! filesystem fails it. Index and snapshot files are not counted. Logs of
//! several shards may share one budget (atomics, no lock).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct DiskBudget {
    capacity_bytes: u64,
    used_bytes: AtomicU64,
}

impl DiskBudget {
    pub fn new(capacity_bytes: u64) -> Self {
        DiskBudget { capacity_bytes, used_bytes: AtomicU64::new(0) }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit; false (and nothing taken) if not.
    pub fn try_charge(&self, bytes: u64) -> bool {
        self.used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&u| u <= self.capacity_bytes)
            })
            .is_ok()
    }

    /// Counts bytes already on disk (a log attached with data in it), even
    /// past the capacity: then every write fails until enough is freed.
    pub fn charge_existing(&self, bytes: u64) {
        let _ = self.used_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_add(bytes)));
    }

    pub fn refund(&self, bytes: u64) {
        let _ = self.used_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_capacity_and_refunds() {
        let d = DiskBudget::new(100);
        assert!(d.try_charge(60));
        assert!(!d.try_charge(41), "does not fit: nothing taken");
        assert_eq!(d.used_bytes(), 60);
        assert!(d.try_charge(40));
        assert!(!d.try_charge(1));
        d.refund(30);
        assert!(d.try_charge(30));
        assert!(!d.try_charge(u64::MAX), "no overflow");
        d.charge_existing(500);
        assert!(!d.try_charge(1));
        d.refund(10_000);
        assert_eq!(d.used_bytes(), 0);
    }
}

//! The part of a partition log other threads may look at: offsets published
//! with atomics, and a notifier that wakes long-polling fetches when the high
//! watermark (consumers) or the log end (followers) moves. Owned by the log's
//! shard; read anywhere.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct LogWatch {
    high_watermark: AtomicU64,
    log_start_offset: AtomicU64,
    log_end_offset: AtomicU64,
    notify: Notify,
}

impl LogWatch {
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    /// Offset after the last batch written here (a follower's fetch reads to it).
    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    /// Completes when the high watermark or the log end may have moved;
    /// re-check after waking.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
    pub(crate) fn publish(&self, high_watermark: u64, log_start_offset: u64, log_end_offset: u64) {
        self.high_watermark.store(high_watermark, Ordering::Release);
        self.log_start_offset.store(log_start_offset, Ordering::Release);
        self.log_end_offset.store(log_end_offset, Ordering::Release);
        self.notify.notify_waiters();
    }
}

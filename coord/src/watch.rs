//! Prefix watches: the stream a consumer reads ([`WatchStream`]) and the side
//! a store feeds ([`WatchSink`]). Both store implementations use this one
//! queue, so their watches behave the same way, including under load.
//!
//! The queue between them is bounded by bytes, not by items: a consumer that
//! falls more than [`WATCH_QUEUE_BYTES_MAX`] behind loses its queued changes
//! and is sent one [`WatchItem::Reset`] (the whole prefix) instead. A store's
//! writer therefore never waits for a slow watcher, and a watcher's memory
//! never grows without bound; the consumer converges on the current state
//! either way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::Versioned;

/// Most bytes of changes queued for one watcher before it is reset.
pub const WATCH_QUEUE_BYTES_MAX: usize = 16 << 20;

/// One key's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put { key: String, value: Versioned },
    Delete { key: String },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key } => key,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            WatchEvent::Put { key, value } => 64 + key.len() + value.value.len(),
            WatchEvent::Delete { key } => 32 + key.len(),
        }
    }
}

/// What a watch delivers; see [`crate::MetaStore::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Every key of the prefix as of `revision`: replace what you had.
    Reset { revision: u64, entries: Vec<(String, Versioned)> },
    /// The changes one txn made to the prefix, at `revision`.
    Changes { revision: u64, events: Vec<WatchEvent> },
}

impl WatchItem {
    pub fn revision(&self) -> u64 {
        match self {
            WatchItem::Reset { revision, .. } | WatchItem::Changes { revision, .. } => *revision,
        }
    }
}

struct Queue {
    items: VecDeque<WatchItem>,
    bytes: usize,
    /// The consumer fell behind: the store must send a `Reset` next.
    needs_reset: bool,
    /// The consumer dropped its stream: the store should stop feeding it.
    closed: bool,
    /// The store ended the watch (it was dropped or failed for good).
    ended: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
}

/// Creates a connected sink and stream for a watch on `prefix`.
pub fn channel(prefix: &str) -> (WatchSink, WatchStream) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue { items: VecDeque::new(), bytes: 0, needs_reset: true, closed: false, ended: false }),
        notify: Notify::new(),
    });
    (
        WatchSink { shared: shared.clone(), prefix: prefix.to_string() },
        WatchStream { shared, prefix: prefix.to_string() },
    )
}

/// The consumer's end of a watch.
pub struct WatchStream {
    shared: Arc<Shared>,
    prefix: String,
}

impl WatchStream {
    /// The next item, waiting for one; `None` once the store ended the watch
    /// (the store was closed). Cancel-safe.
    pub async fn next(&mut self) -> Option<WatchItem> {
        loop {
            let notified = self.shared.notify.notified();
            {
                let mut q = self.shared.queue.lock().expect("watch queue lock");
                if let Some(item) = q.items.pop_front() {
                    q.bytes -= item_bytes(&item);
                    return Some(item);
                }
                if q.ended {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// An item if one is queued now.
    pub fn try_next(&mut self) -> Option<WatchItem> {
        let mut q = self.shared.queue.lock().expect("watch queue lock");
        let item = q.items.pop_front()?;
        q.bytes -= item_bytes(&item);
        Some(item)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
            q.items.clear();
            q.bytes = 0;
        }
    }
}

/// The store's end of a watch.
pub struct WatchSink {
    shared: Arc<Shared>,
    prefix: String,
}

impl WatchSink {
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The consumer is gone; stop feeding this sink.
    pub fn is_closed(&self) -> bool {
        self.shared.queue.lock().map_or(true, |q| q.closed)
    }

    /// The consumer needs a `Reset` before any more changes (it is new, or it
    /// fell behind and its queue was dropped).
    pub fn needs_reset(&self) -> bool {
        self.shared.queue.lock().is_ok_and(|q| q.needs_reset)
    }

    /// Queues the full state of the prefix.
    pub fn reset(&self, revision: u64, entries: Vec<(String, Versioned)>) {
        let item = WatchItem::Reset { revision, entries };
        let mut q = self.shared.queue.lock().expect("watch queue lock");
        if q.closed {
            return;
        }
        q.items.clear();
        q.bytes = item_bytes(&item);
        q.items.push_back(item);
        q.needs_reset = false;
        drop(q);
        self.shared.notify.notify_one();
    }

    /// Queues one txn's changes (already filtered to the prefix; empty ones
    /// are skipped). Returns false if the consumer fell behind and needs a
    /// `Reset` instead: the queue is dropped and the store must call
    /// [`WatchSink::reset`] with the current state.
    pub fn changes(&self, revision: u64, events: Vec<WatchEvent>) -> bool {
        if events.is_empty() {
            return !self.needs_reset();
        }
        let item = WatchItem::Changes { revision, events };
        let bytes = item_bytes(&item);
        let mut q = self.shared.queue.lock().expect("watch queue lock");
        if q.closed {
            return true;
        }
        if q.needs_reset {
            return false;
        }
        if q.bytes + bytes > WATCH_QUEUE_BYTES_MAX {
            q.items.clear();
            q.bytes = 0;
            q.needs_reset = true;
            return false;
        }
        q.bytes += bytes;
        q.items.push_back(item);
        drop(q);
        self.shared.notify.notify_one();
        true
    }

    /// Ends the watch: the consumer's `next` returns `None` after what is queued.
    pub fn end(&self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.ended = true;
        }
        self.shared.notify.notify_one();
    }
}

impl Drop for WatchSink {
    fn drop(&mut self) {
        self.end();
    }
}

fn item_bytes(item: &WatchItem) -> usize {
    match item {
        WatchItem::Reset { entries, .. } => {
            32 + entries.iter().map(|(k, v)| 64 + k.len() + v.value.len()).sum::<usize>()
        }
        WatchItem::Changes { events, .. } => 32 + events.iter().map(WatchEvent::bytes).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, rev: u64) -> WatchEvent {
        WatchEvent::Put { key: key.into(), value: Versioned::new(b"v".to_vec(), rev) }
    }

    #[tokio::test]
    async fn first_item_is_a_reset_and_changes_follow_in_order() {
        let (sink, mut stream) = channel("p/");
        assert!(sink.needs_reset());
        assert!(!sink.changes(1, vec![put("p/a", 1)]), "changes before the first reset are refused");
        sink.reset(1, vec![("p/a".into(), Versioned::new(b"v".to_vec(), 1))]);
        assert!(sink.changes(2, vec![put("p/b", 2)]));
        assert!(matches!(stream.next().await, Some(WatchItem::Reset { revision: 1, .. })));
        assert_eq!(stream.next().await.unwrap().revision(), 2);
        assert!(stream.try_next().is_none());
        drop(sink);
        assert!(stream.next().await.is_none(), "a dropped sink ends the stream");
    }

    #[tokio::test]
    async fn a_lagging_consumer_is_reset_instead_of_growing() {
        let (sink, mut stream) = channel("");
        sink.reset(0, Vec::new());
        let big = WatchEvent::Put { key: "k".into(), value: Versioned::new(vec![0; 1 << 20], 1) };
        let mut rev = 1;
        while sink.changes(rev, vec![big.clone()]) {
            rev += 1;
            assert!(rev < 100, "the queue must overflow at {WATCH_QUEUE_BYTES_MAX} bytes");
        }
        assert!(sink.needs_reset());
        assert!(stream.try_next().is_none(), "overflow drops the queue");
        sink.reset(rev, Vec::new());
        assert!(matches!(stream.next().await, Some(WatchItem::Reset { .. })));
    }

    #[test]
    fn a_dropped_stream_closes_the_sink() {
        let (sink, stream) = channel("");
        assert!(!sink.is_closed());
        drop(stream);
        assert!(sink.is_closed());
    }
}

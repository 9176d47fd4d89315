//! Byte budgets for request frames: what clients can make the broker hold.
//!
//! A request's frame bytes are held against three budgets from the moment
//! its size prefix is read (before its body is) until its response is
//! written, or, for acks=0 Produce, until its appends are done:
//! - its connection's (`--queued-max-request-bytes-per-connection`), kept by
//!   the connection itself (`connection.rs`);
//! - its shard's (`--queued-max-request-bytes-per-shard`): the connections a
//!   shard thread reads;
//! - the broker's (`--queued-max-request-bytes`, Kafka's
//!   `queued.max.request.bytes`), shared by every shard thread.
//!
//! A connection that cannot reserve its next frame stops reading its socket
//! (TCP pushes back on the client) until requests finish; no request is ever
//! dropped or failed for it. A frame larger than a budget could ever grant is
//! refused like any oversized frame (`frame_max_bytes`).
//!
//! The shard and broker budgets are atomics: reserving is a compare-exchange,
//! releasing a subtraction, no lock. Only a connection that has to wait
//! touches the `Notify` (and a release only when someone waits).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Broker-wide default (`queued.max.request.bytes`; Kafka's is unbounded):
/// five requests of the largest default size (`socket.request.max.bytes`,
/// 100 MiB) in memory at once, and never more than half a gigabyte of
/// request data, which a small machine holds. Decoding adds at most
/// 8 MiB + 4x a request's frame while it runs (`api::decode_budget_bytes`).
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: u64 = 512 << 20;

/// Byte limits of request frames, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    pub broker_bytes: u64,
    pub shard_bytes: u64,
    pub connection_bytes: u64,
}

impl BudgetConfig {
    /// The budgets given (or not) on the command line, completed:
    /// - per connection, one largest frame (`socket.request.max.bytes`): the
    ///   least that admits every frame the broker accepts. Real clients hold
    ///   far less in flight (a Java producer: 5 requests of 1 MiB), so only a
    ///   connection pipelining a second maximum-size request behind a first
    ///   one ever waits, and one connection holds at most a fifth of the
    ///   default broker budget.
    /// - per shard, half the broker's (at least one largest frame, at most the
    ///   broker's): the connections one core reads cannot take all of it, the
    ///   other cores' connections keep at least half, and a shard that the
    ///   kernel's SO_REUSEPORT hash gave the busy connections may still use
    ///   more than an even share.
    pub fn new(
        broker_bytes: u64,
        shard_bytes: Option<u64>,
        connection_bytes: Option<u64>,
        socket_request_max_bytes: u64,
    ) -> BudgetConfig {
        let frame = socket_request_max_bytes.min(broker_bytes);
        BudgetConfig {
            broker_bytes,
            shard_bytes: shard_bytes.unwrap_or((broker_bytes / 2).max(frame)).min(broker_bytes),
            connection_bytes: connection_bytes.unwrap_or(socket_request_max_bytes),
        }
    }

    /// The largest frame every budget can grant; larger ones are refused with
    /// the name of the limit that refuses them.
    pub fn frame_max_bytes(&self, socket_request_max_bytes: u64) -> (u64, &'static str) {
        [
            (socket_request_max_bytes, "socket.request.max.bytes"),
            (self.broker_bytes, "queued.max.request.bytes"),
            (self.shard_bytes, "queued.max.request.bytes.per.shard"),
            (self.connection_bytes, "queued.max.request.bytes.per.connection"),
        ]
        .into_iter()
        // The first of equal ones: the broker-wide name, when it is that.
        .min_by_key(|(bytes, _)| *bytes)
        .expect("four limits")
    }
}

/// A number of bytes that may be held at once, shared between threads.
pub struct Budget {
    limit_bytes: u64,
    used_bytes: AtomicU64,
    /// Tasks waiting in `take`; a release notifies only when there are some.
    waiters: AtomicUsize,
    freed: Notify,
}

impl Budget {
    pub fn new(limit_bytes: u64) -> Budget {
        Budget { limit_bytes, used_bytes: AtomicU64::new(0), waiters: AtomicUsize::new(0), freed: Notify::new() }
    }

    #[cfg(test)]
    fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: u64) -> bool {
        // SeqCst pairs with `give_back`: a taker that registered as a waiter
        // either sees the bytes given back or is notified.
        let mut used = self.used_bytes.load(Ordering::SeqCst);
        loop {
            if used + bytes > self.limit_bytes {
                return false;
            }
            match self.used_bytes.compare_exchange_weak(used, used + bytes, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Takes `bytes` (at most the limit), waiting until they are free.
    /// Cancel-safe: dropped before it returns, it has taken nothing. Waiters
    /// are woken together and race; no order among them is kept (a large
    /// frame can wait behind a stream of small ones while the budget stays
    /// full, as in Kafka's memory pool).
    async fn take(&self, bytes: u64) {
        assert!(bytes <= self.limit_bytes, "a frame over the budget must be refused before reserving");
        if self.try_take(bytes) {
            return;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and
            // the await still wakes this task.
            notified.as_mut().enable();
            if self.try_take(bytes) {
                return;
            }
            notified.await;
        }
    }

    fn give_back(&self, bytes: u64) {
        let before = self.used_bytes.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(before >= bytes, "budget released more than it held");
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shared budgets as one shard's connections see them.
#[derive(Clone)]
pub struct RequestBudgets {
    pub shard: Arc<Budget>,
    pub broker: Arc<Budget>,
}

impl RequestBudgets {
    /// Reserves `bytes` of the shard's and the broker's budgets (in that
    /// order, always, so waiters never hold each other up in a cycle).
    /// Cancel-safe.
    pub async fn reserve(&self, bytes: u64) -> Held {
        self.shard.take(bytes).await;
        // Built before the second wait: if the wait is cancelled, dropping it
        // gives the shard's share back.
        let mut held = Held { bytes, shard: Some(self.shard.clone()), broker: None };
        self.broker.take(bytes).await;
        held.broker = Some(self.broker.clone());
        held
    }
}

/// A frame's share of the shard's and broker's budgets; given back on drop.
pub struct Held {
    bytes: u64,
    shard: Option<Arc<Budget>>,
    broker: Option<Arc<Budget>>,
}

impl Held {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for b in [self.shard.take(), self.broker.take()].into_iter().flatten() {
            b.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn defaults_admit_the_largest_frame() {
        let max = 100 << 20;
        let c = BudgetConfig::new(QUEUED_MAX_REQUEST_BYTES_DEFAULT, None, None, max);
        assert_eq!((c.connection_bytes, c.shard_bytes, c.broker_bytes), (max, 256 << 20, 512 << 20));
        assert_eq!(c.frame_max_bytes(max), (max, "socket.request.max.bytes"));
        // A broker budget below the largest frame refuses the frames over it.
        let c = BudgetConfig::new(8 << 20, None, None, max);
        assert_eq!(c.shard_bytes, 8 << 20);
        assert_eq!(c.frame_max_bytes(max), (8 << 20, "queued.max.request.bytes"));
    }

    #[test]
    fn a_waiter_gets_the_bytes_another_thread_gives_back() {
        let shard = Arc::new(Budget::new(100));
        let broker = Arc::new(Budget::new(100));
        let budgets = RequestBudgets { shard, broker };
        let first = block_on(budgets.reserve(70));
        assert_eq!(budgets.broker.used_bytes(), 70);
        let b = budgets.clone();
        let waiter = std::thread::spawn(move || block_on(b.reserve(60)).bytes());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "60 more bytes do not fit");
        drop(first);
        assert_eq!(waiter.join().unwrap(), 60);
        // The waiter's Held was dropped at the end of its thread.
        assert_eq!((budgets.shard.used_bytes(), budgets.broker.used_bytes()), (0, 0));
    }

    #[test]
    fn a_cancelled_reservation_holds_nothing() {
        let budgets = RequestBudgets { shard: Arc::new(Budget::new(100)), broker: Arc::new(Budget::new(50)) };
        block_on(async {
            let held = budgets.reserve(50).await;
            // The shard has room, the broker not: cancelled while waiting for it.
            let r = tokio::time::timeout(std::time::Duration::from_millis(20), budgets.reserve(40)).await;
            assert!(r.is_err());
            assert_eq!((budgets.shard.used_bytes(), budgets.broker.used_bytes()), (50, 50));
            assert_eq!(budgets.broker.waiters.load(Ordering::SeqCst), 0);
            drop(held);
        });
        assert_eq!((budgets.shard.used_bytes(), budgets.broker.used_bytes()), (0, 0));
    }
}

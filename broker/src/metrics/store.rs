//! Metadata store requests, timed: a `MetaStore` that forwards to the real
//! one (etcd, or the embedded store) and records each request's latency by
//! operation, and the outcome of every lease renewal. Requests to the store
//! take from a fraction of a millisecond to seconds; the shared atomics they
//! are counted in cost nothing next to that.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use laminar_coord::{Compare, CoordError, Lease, LeaseId, MetaStore, Op, TxnResult, Versioned, WatchStream};
use laminar_engine::stats::Histogram;

/// The operations timed, in the order of `STATS.ops`.
pub const OPS: [&str; 9] =
    ["get", "list", "put", "delete", "delete_prefix", "txn", "lease_grant", "lease_keep_alive", "lease_revoke"];

pub struct StoreStats {
    pub ops: [Histogram; OPS.len()],
    /// Requests that failed (the store unreachable, a timeout, ...), by op.
    pub errors: [AtomicU64; OPS.len()],
    pub renewals_ok: AtomicU64,
    /// The lease had expired: the broker must register again.
    pub renewals_expired: AtomicU64,
    pub renewals_failed: AtomicU64,
}

pub static STATS: StoreStats = StoreStats {
    ops: [const { Histogram::new() }; OPS.len()],
    errors: [const { AtomicU64::new(0) }; OPS.len()],
    renewals_ok: AtomicU64::new(0),
    renewals_expired: AtomicU64::new(0),
    renewals_failed: AtomicU64::new(0),
};

/// "etcd" or "embedded", once the store is opened.
pub static KIND: OnceLock<&'static str> = OnceLock::new();

pub struct Timed {
    inner: Arc<dyn MetaStore>,
}

/// Wraps `inner` so its requests are counted.
pub fn timed(inner: Arc<dyn MetaStore>, kind: &'static str) -> Arc<dyn MetaStore> {
    let _ = KIND.set(kind);
    Arc::new(Timed { inner })
}

fn op_index(op: &str) -> usize {
    OPS.iter().position(|o| *o == op).expect("a known op")
}

async fn time<T>(op: &str, f: impl std::future::Future<Output = Result<T, CoordError>>) -> Result<T, CoordError> {
    let i = op_index(op);
    let started = Instant::now();
    let r = f.await;
    STATS.ops[i].record(started.elapsed());
    if r.is_err() {
        STATS.errors[i].fetch_add(1, Relaxed);
    }
    r
}

#[async_trait::async_trait]
impl MetaStore for Timed {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError> {
        time("get", self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, CoordError> {
        time("list", self.inner.list(prefix)).await
    }
    async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
        time("list", self.inner.list_with_revision(prefix)).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CoordError> {
        time("put", self.inner.put(key, value)).await
    }
    async fn delete(&self, key: &str) -> Result<bool, CoordError> {
        time("delete", self.inner.delete(key)).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError> {
        time("delete_prefix", self.inner.delete_prefix(prefix)).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError> {
        time("txn", self.inner.txn(compares, ops)).await
    }
    fn watch(&self, prefix: &str) -> WatchStream {
        self.inner.watch(prefix)
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, CoordError> {
        time("lease_grant", self.inner.lease_grant(ttl)).await
    }
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<Duration>, CoordError> {
        let r = time("lease_keep_alive", self.inner.lease_keep_alive(id)).await;
        let counter = match &r {
            Ok(Some(_)) => &STATS.renewals_ok,
            Ok(None) => &STATS.renewals_expired,
            Err(_) => &STATS.renewals_failed,
        };
        counter.fetch_add(1, Relaxed);
        r
    }
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError> {
        time("lease_revoke", self.inner.lease_revoke(id)).await
    }
}

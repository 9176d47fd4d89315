//! Holding a lease, and knowing for sure when we might no longer hold it.
//!
//! etcd expires a lease TTL after the last keep-alive *it received*. We only
//! know when we *sent* ours, which is earlier, so `sent + TTL` is a moment by
//! which etcd cannot yet have expired the lease (etcd extends leases across
//! its own leader changes; it never shortens them). A holder that acts only
//! before that moment never acts after the store could have handed its role
//! (partition leadership, the controller's seat) to someone else. A paused
//! process (SIGSTOP, a long GC-like stall) wakes past its deadline and stops,
//! whatever it believed before the pause: every check reads the clock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::{CoordError, LeaseId, MetaStore};

/// One process-wide origin, so deadlines fit in an atomic and compare across threads.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos_since_origin(t: Instant) -> u64 {
    t.saturating_duration_since(origin()).as_nanos() as u64
}

/// The lease a process holds and until when it may act on it. Shared by
/// every thread that must stop acting when the lease may be gone.
#[derive(Debug)]
pub struct LeaseClock {
    id: AtomicI64,
    /// Nanoseconds since `origin()` until which the lease is certainly alive.
    valid_until_ns: AtomicU64,
}

impl Default for LeaseClock {
    fn default() -> Self {
        LeaseClock { id: AtomicI64::new(0), valid_until_ns: AtomicU64::new(0) }
    }
}

impl LeaseClock {
    pub fn new() -> Arc<LeaseClock> {
        origin();
        Arc::new(LeaseClock::default())
    }

    /// The lease currently held (0: none).
    pub fn id(&self) -> LeaseId {
        self.id.load(Ordering::Acquire)
    }

    /// True while the lease is certainly alive in the store. Reads the clock
    /// each time: never cache the answer across an await or a pause.
    pub fn is_valid(&self) -> bool {
        self.id() != 0 && nanos_since_origin(Instant::now()) < self.valid_until_ns.load(Ordering::Acquire)
    }

    /// How long the lease is still certainly alive.
    pub fn remaining(&self) -> Duration {
        let until = self.valid_until_ns.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(nanos_since_origin(Instant::now())))
    }

    /// A lease was granted (or renewed) by a request sent at `sent`, for `ttl`.
    pub fn renewed(&self, id: LeaseId, sent: Instant, ttl: Duration) {
        if self.id() != id {
            self.id.store(id, Ordering::Release);
        }
        let until = nanos_since_origin(sent + ttl);
        self.valid_until_ns.fetch_max(until, Ordering::AcqRel);
    }

    /// The lease is gone (expired, revoked, or we are shutting down).
    pub fn invalidate(&self) {
        self.valid_until_ns.store(0, Ordering::Release);
    }

    /// A new lease replaces the old one: validity restarts from scratch.
    pub fn replace(&self, id: LeaseId, sent: Instant, ttl: Duration) {
        self.invalidate();
        self.id.store(id, Ordering::Release);
        self.valid_until_ns.store(nanos_since_origin(sent + ttl), Ordering::Release);
    }
}

/// Grants a lease and starts the clock on it.
pub async fn grant(store: &dyn MetaStore, clock: &LeaseClock, ttl: Duration) -> Result<LeaseId, CoordError> {
    let sent = Instant::now();
    let lease = store.lease_grant(ttl).await?;
    // etcd expires the lease after the TTL it granted (it may raise ours).
    clock.replace(lease.id, sent, lease.ttl);
    Ok(lease.id)
}

/// Why a keep-alive loop returned.
#[derive(Debug, PartialEq, Eq)]
pub enum KeepAliveEnd {
    /// The store says the lease is gone: keys bound to it are deleted.
    Lost,
    /// `stop` was set.
    Stopped,
}

/// Keeps `clock`'s lease alive every `ttl / 4` until the store reports it
/// gone or `stop` resolves. Failed keep-alives (store down or slow) are
/// retried; the clock simply runs out if they keep failing.
pub async fn keep_alive(
    store: &dyn MetaStore,
    clock: &LeaseClock,
    ttl: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> KeepAliveEnd {
    let every = (ttl / 4).max(Duration::from_millis(50));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return KeepAliveEnd::Stopped,
            _ = tokio::time::sleep(every) => {}
        }
        let id = clock.id();
        let sent = Instant::now();
        let answer = tokio::time::timeout(ttl / 2, store.lease_keep_alive(id)).await;
        match answer {
            Ok(Ok(Some(granted))) => clock.renewed(id, sent, granted),
            Ok(Ok(None)) => {
                clock.invalidate();
                return KeepAliveEnd::Lost;
            }
            Ok(Err(e)) => tracing::warn!(
                lease = id,
                remaining_ms = clock.remaining().as_millis() as u64,
                "lease keep-alive failed: {e}"
            ),
            Err(_) => tracing::warn!(
                lease = id,
                remaining_ms = clock.remaining().as_millis() as u64,
                "lease keep-alive timed out"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_runs_out_from_the_send_time() {
        let c = LeaseClock::new();
        assert!(!c.is_valid(), "no lease yet");
        let sent = Instant::now();
        c.replace(7, sent, Duration::from_millis(200));
        assert!(c.is_valid() && c.id() == 7);
        // A late answer to an old request never extends past what that request allows.
        c.renewed(7, sent - Duration::from_secs(1), Duration::from_millis(200));
        assert!(c.is_valid());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!c.is_valid(), "expired without renewal");
        c.renewed(7, Instant::now(), Duration::from_millis(200));
        assert!(c.is_valid());
        c.invalidate();
        assert!(!c.is_valid());
    }
}

//! This broker's membership: a registration under a lease, kept alive. The
//! lease id is the broker's incarnation; when the lease is lost (the store
//! expired it while we were cut off or paused) the broker has already stopped
//! acting — the lease clock ran out first — and registers again as a new
//! incarnation, which the controller treats as a restart.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use laminar_coord::cluster::{records::to_json, BrokerRecord};
use laminar_coord::lease::{self, KeepAliveEnd};
use laminar_coord::{Compare, CoordError, Op};
use tokio::sync::watch;

use super::Cluster;

/// Registers this broker under a fresh lease. A registration left by this
/// data directory's previous process (it is dead: we hold the directory's
/// lock) is replaced at once; one from another directory is another live
/// broker with our node id, and we refuse to start. An unreachable store is
/// retried, with a log line, until `give_up` passes.
pub async fn register(cluster: &Cluster, record: &BrokerRecord, give_up: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + give_up;
    let key = cluster.keys.broker(record.node_id);
    let value = to_json(record);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match try_register(cluster, &key, &value, record).await {
            Ok(()) => return Ok(()),
            Err(Failure::Refused(why)) => bail!(why),
            Err(Failure::Store(e)) if tokio::time::Instant::now() < deadline => {
                let wait = Duration::from_millis(200 * u64::from(attempt.min(10)));
                tracing::warn!(attempt, "registering with the metadata store failed ({e}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(Failure::Store(e)) => bail!("could not register with the metadata store within {give_up:?}: {e}"),
        }
    }
}

enum Failure {
    Refused(String),
    Store(CoordError),
}

impl From<CoordError> for Failure {
    fn from(e: CoordError) -> Self {
        Failure::Store(e)
    }
}

async fn try_register(cluster: &Cluster, key: &str, value: &[u8], record: &BrokerRecord) -> Result<(), Failure> {
    let store = &*cluster.store;
    let lease = lease::grant(store, &cluster.lease, cluster.config.lease_ttl).await?;
    for _ in 0..3 {
        let put = Op::put_leased(key, value.to_vec(), lease);
        if store.txn(vec![Compare::absent(key)], vec![put]).await?.applied {
            tracing::info!(node_id = record.node_id, incarnation = lease, "registered with the cluster");
            return Ok(());
        }
        let Some(existing) = store.get(key).await? else { continue };
        let theirs: Option<BrokerRecord> = serde_json::from_slice(&existing.value).ok();
        match theirs {
            Some(old) if old.data_dir_id == record.data_dir_id => {
                // Our own previous process: it holds nothing any more.
                tracing::info!(old_incarnation = existing.lease, "replacing this directory's previous registration");
                store.lease_revoke(existing.lease).await?;
                if existing.lease == 0 {
                    store.txn(vec![Compare::version(key, existing.version)], vec![Op::delete(key)]).await?;
                }
            }
            other => {
                let _ = store.lease_revoke(lease).await;
                let who = other.map_or("an unreadable registration".to_string(), |o| {
                    format!("the broker at {}:{} (started at {} ms since the epoch)", o.host, o.port, o.started_ms)
                });
                return Err(Failure::Refused(format!(
                    "node id {} is already registered by {who}, which is alive (its lease is kept); \
                     give this broker another --node-id",
                    record.node_id
                )));
            }
        }
    }
    let _ = store.lease_revoke(lease).await;
    Err(Failure::Store(CoordError::Unavailable("registration kept changing under us".into())))
}

/// Keeps the registration alive until `shutdown` turns true; re-registers as
/// a new incarnation whenever the store reports the lease lost.
pub async fn maintain(cluster: Arc<Cluster>, record: BrokerRecord, mut shutdown: watch::Receiver<bool>) {
    loop {
        let mut stop = shutdown.clone();
        let end = lease::keep_alive(&*cluster.store, &cluster.lease, cluster.config.lease_ttl, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        if end == KeepAliveEnd::Stopped {
            return;
        }
        tracing::warn!(
            old_incarnation = cluster.lease.id(),
            "lease lost: this broker stopped acting for the cluster; registering as a new incarnation"
        );
        loop {
            if *shutdown.borrow() {
                return;
            }
            match register(&cluster, &record, Duration::from_secs(3600)).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!("re-registering failed: {e:#}");
                    tokio::select! {
                        _ = tokio::time::sleep(cluster.config.lease_ttl) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }
}

/// Controlled shutdown, before `leave`: marks this broker's registration
/// `shutting_down` (same lease), so the controller hands its leaderships to
/// in-sync replicas that stay, takes it out of ISRs and moves its group
/// coordinator slots; then waits, at most `wait`, until the view shows it
/// leads nothing that another in-sync replica could take and coordinates no
/// slot. Writes parked on it meanwhile fail as "possibly written" and are
/// retried by clients on the new leaders, so a rolling restart fails no
/// idempotent write.
pub async fn hand_over(cluster: &Cluster, wait: Duration) {
    let me = cluster.node_id();
    let key = cluster.keys.broker(me);
    let marked = async {
        let current = cluster.store.get(&key).await?.ok_or_else(|| CoordError::Unavailable("not registered".into()))?;
        let mut record: BrokerRecord =
            serde_json::from_slice(&current.value).map_err(|e| CoordError::Unavailable(e.to_string()))?;
        if current.lease != cluster.lease.id() {
            return Err(CoordError::Unavailable("registered under another lease".into()));
        }
        record.shutting_down = true;
        let put = Op::put_leased(key.clone(), to_json(&record), current.lease);
        let applied = cluster.store.txn(vec![Compare::version(key.clone(), current.version)], vec![put]).await?.applied;
        Ok::<bool, CoordError>(applied)
    };
    match tokio::time::timeout(Duration::from_secs(5), marked).await {
        Ok(Ok(true)) => tracing::info!("controlled shutdown: handing leaderships to in-sync replicas"),
        Ok(Ok(false)) => {
            tracing::warn!("controlled shutdown: the registration changed under us; stopping without handing over");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!("controlled shutdown: could not mark this broker leaving ({e}); stopping without it");
            return;
        }
        Err(_) => {
            tracing::warn!("controlled shutdown: the metadata store did not answer; stopping without it");
            return;
        }
    }
    let inc = cluster.incarnation();
    let done = cluster
        .wait_for(wait, |v| {
            let movable = v.topics.values().flat_map(|t| t.partitions.iter().flatten()).any(|p| {
                let r = &p.record;
                r.leader == me
                    && r.isr.iter().any(|m| {
                        m.node != me
                            && v.incarnation(m.node) == Some(m.incarnation)
                            && v.broker(m.node).is_some_and(|b| !b.record.shutting_down)
                    })
            });
            let others = v.brokers.values().any(|b| b.record.node_id != me && !b.record.shutting_down);
            let slots = others
                && (0..laminar_coord::cluster::GROUP_SLOTS)
                    .any(|s| v.coordinator(s).is_some_and(|c| c.record.node_id == me && c.record.incarnation == inc));
            (!movable && !slots).then_some(())
        })
        .await;
    match done {
        Some(()) => tracing::info!("controlled shutdown: nothing left to hand over"),
        None => tracing::warn!(?wait, "controlled shutdown: not everything was handed over in time; stopping anyway"),
    }
}

/// Leaves the cluster on a clean shutdown: stop acting, then revoke the lease
/// so the controller moves our leaderships away at once instead of after the TTL.
pub async fn leave(cluster: &Cluster) {
    let id = cluster.lease.id();
    cluster.lease.invalidate();
    if id != 0 {
        match tokio::time::timeout(Duration::from_secs(5), cluster.store.lease_revoke(id)).await {
            Ok(Ok(())) => tracing::info!(incarnation = id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!("revoking the lease at shutdown failed: {e} (it expires on its own)"),
            Err(_) => tracing::warn!("revoking the lease at shutdown timed out (it expires on its own)"),
        }
    }
}

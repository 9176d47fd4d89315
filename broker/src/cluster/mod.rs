//! The broker's part in the cluster. One design for one node and many: a
//! single node is a cluster of one whose store is the embedded one, so the
//! same code registers, elects, places and follows in both.
//!
//! Rooms, each named for what it holds:
//! - `membership`: this broker's registration under a lease, kept alive;
//! - `metadata`: the watch that keeps [`Cluster::view`] current;
//! - `controller`: the elected controller's duties (placing partitions,
//!   electing leaders, cleaning ISRs, assigning group coordinators);
//! - `reconciler`: turns the view into what this broker's shards hold;
//! - `admin`: topic changes asked of any broker, written to the store;
//! - `reassignment`: moving a partition's replicas (KIP-455) as record changes;
//! - `format`: the store's format version and the one-time migration of a
//!   single node's older layout.
//!
//! Everything here is control plane, run on the broker's control thread;
//! shards only read the published view (`Arc<ClusterView>`, lock-free) and
//! the lease clock.

pub mod admin;
pub mod controller;
pub mod format;
pub mod membership;
pub mod metadata;
pub mod reassignment;
pub mod reconciler;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use laminar_coord::cluster::{ClusterView, Keys};
use laminar_coord::lease::LeaseClock;
use laminar_coord::{LeaseId, MetaStore};
use tokio::sync::watch;

/// Cluster settings from the command line.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: i32,
    pub rack: Option<String>,
    /// How long the broker's lease lives without a keep-alive: the time to
    /// notice a dead broker, and how long a cut-off broker keeps acting at most.
    pub lease_ttl: Duration,
    /// `unclean.leader.election.enable`: elect an out-of-sync replica when no
    /// in-sync one is alive (losing what only the others had).
    pub unclean_leader_election: bool,
    /// How long a broker waits, at start, for the controller to make it
    /// leader of what it led before (bounded; it serves what it can after).
    pub startup_wait: Duration,
    /// Controlled shutdown's bound (`membership::hand_over`); zero skips it.
    pub controlled_shutdown: Duration,
}

/// Shared by every thread of the broker (`Send + Sync`).
pub struct Cluster {
    pub store: Arc<dyn MetaStore>,
    pub keys: Keys,
    pub config: ClusterConfig,
    /// The lease this broker is registered under; its id is our incarnation.
    pub lease: Arc<LeaseClock>,
    /// Shard threads on this broker.
    pub shards: usize,
    view: ArcSwap<ClusterView>,
    /// The revision of the latest published view.
    published: watch::Sender<u64>,
    /// The revision whose local effects (partitions opened, roles set) are done.
    applied: watch::Sender<u64>,
}

impl Cluster {
    pub fn new(store: Arc<dyn MetaStore>, keys: Keys, config: ClusterConfig, shards: usize) -> Arc<Cluster> {
        Arc::new(Cluster {
            store,
            keys,
            config,
            lease: LeaseClock::new(),
            shards,
            view: ArcSwap::from_pointee(ClusterView::empty()),
            published: watch::channel(0).0,
            applied: watch::channel(0).0,
        })
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// This broker's incarnation (its lease id), 0 before registering.
    pub fn incarnation(&self) -> LeaseId {
        self.lease.id()
    }

    /// The latest view. Hold it for one request; load again for the next.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    pub fn publish(&self, view: ClusterView) {
        let revision = view.revision;
        self.view.store(Arc::new(view));
        self.published.send_replace(revision);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    pub fn set_applied(&self, revision: u64) {
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            *r = (*r).max(revision);
            newer
        });
    }

    /// Waits until `f` finds what it wants in a published view, or the timeout.
    pub async fn wait_for<T>(&self, timeout: Duration, mut f: impl FnMut(&ClusterView) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(x) = f(&self.view()) {
                return Some(x);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.map_or(true, |r| r.is_err()) {
                return f(&self.view());
            }
        }
    }

    /// Waits until this broker has applied revision `revision` locally.
    pub async fn wait_applied(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(timeout, async { rx.wait_for(|r| *r >= revision).await.is_ok() }).await;
        matches!(reached, Ok(true))
    }

    /// True while this broker may act for the cluster (lead partitions,
    /// coordinate groups, control): its lease is certainly alive.
    pub fn is_acting(&self) -> bool {
        self.lease.is_valid()
    }
}

/// A registered broker as the cluster tests' views hold it: 2 shards on
/// 127.0.0.1:9000, `capacity` partitions, incarnation `lease`.
#[cfg(test)]
pub(crate) fn test_broker(
    node: i32,
    capacity: u32,
    lease: i64,
) -> Arc<laminar_coord::cluster::Stored<laminar_coord::cluster::BrokerRecord>> {
    let record = laminar_coord::cluster::BrokerRecord {
        node_id: node,
        host: "127.0.0.1".into(),
        port: 9000,
        rack: None,
        shards: 2,
        started_ms: 0,
        data_dir_id: String::new(),
        partition_capacity: capacity,
        build: String::new(),
        shutting_down: false,
        listeners: Vec::new(),
    };
    Arc::new(laminar_coord::cluster::Stored { record, version: 1, create_revision: 1, lease })
}

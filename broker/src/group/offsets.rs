//! Committed offsets: kept in memory by the group's shard, made durable in the
//! metadata store (`coord`) under `<P>/offsets/<group>/<topic>/<partition>` —
//! in a cluster that store is etcd. Commits that arrive while a store write is
//! in flight are coalesced into the next single transaction (group commit), so
//! a busy group does not turn into one store write per commit. Every write is
//! fenced on the group's coordinator-slot record: a broker that lost the slot
//! (it was cut off, another took over) cannot overwrite the new
//! coordinator's offsets with late commits.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use laminar_coord::cluster::{group_slot, Keys};
use laminar_coord::{Compare, MetaStore, Op, TXN_OPS_MAX};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use crate::cluster::Cluster;

/// Most ops in one store transaction: etcd's default limit (which the
/// embedded store enforces too), less the coordinator fence.
const OPS_PER_TXN_MAX: usize = TXN_OPS_MAX - 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: u64,
}

pub type GroupOffsets = HashMap<(String, i32), Committed>;

/// The committed offsets of every group whose coordinator slot is in
/// `slots`, by group (read when this broker takes those slots over).
pub async fn load_slots(cluster: &Cluster, slots: &HashSet<u32>) -> anyhow::Result<HashMap<String, GroupOffsets>> {
    let keys = &cluster.keys;
    let mut out: HashMap<String, GroupOffsets> = HashMap::new();
    for (key, v) in cluster.store.list(&keys.offsets()).await? {
        let Some((group, topic, partition)) = keys.parse_offset(&key) else {
            tracing::warn!(key, "ignoring malformed committed-offset key");
            continue;
        };
        if !slots.contains(&group_slot(&group)) {
            continue;
        }
        let committed: Committed = serde_json::from_slice(&v.value)?;
        out.entry(group).or_default().insert((topic, partition), committed);
    }
    Ok(out)
}

/// The persisted membership of every group whose coordinator slot is in
/// `slots` (`state::snapshot`), by group. A damaged record is skipped: that
/// group's members rejoin, as they would without one.
pub async fn load_snapshots(
    cluster: &Cluster,
    slots: &HashSet<u32>,
) -> anyhow::Result<HashMap<String, super::state::snapshot::GroupSnapshot>> {
    let keys = &cluster.keys;
    let mut out = HashMap::new();
    for (key, v) in cluster.store.list(&keys.groups()).await? {
        let Some(group) = keys.parse_group(&key) else {
            tracing::warn!(key, "ignoring malformed group key");
            continue;
        };
        if !slots.contains(&group_slot(&group)) {
            continue;
        }
        match serde_json::from_slice(&v.value) {
            Ok(snapshot) => {
                out.insert(group, snapshot);
            }
            Err(e) => tracing::warn!(%group, "ignoring a damaged group record: {e}"),
        }
    }
    Ok(out)
}

/// Why a batch of offset writes failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The coordinator slot changed hands: this broker may not write it.
    NotCoordinator,
    Store(String),
}

struct Pending {
    ops: Vec<Op>,
    /// The coordinator slot's record must still be at this version.
    fence: Compare,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// One per shard: batches the shard's commits into store transactions.
#[derive(Clone)]
pub struct OffsetWriter {
    store: Arc<dyn MetaStore>,
    keys: Keys,
    queue: Rc<RefCell<Vec<Pending>>>,
    wake: Rc<Notify>,
}

impl OffsetWriter {
    pub fn new(store: Arc<dyn MetaStore>, keys: Keys) -> Self {
        OffsetWriter { store, keys, queue: Rc::default(), wake: Rc::default() }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The guard of writes for `group`'s slot, owned at `version`.
    pub fn fence(&self, group: &str, version: u64) -> Compare {
        Compare::version(self.keys.coordinator(group_slot(group)), version)
    }

    pub fn put_ops(&self, group: &str, offsets: &[(String, i32, Committed)]) -> Vec<Op> {
        offsets
            .iter()
            .map(|(t, p, c)| {
                Op::put(self.keys.offset(group, t, *p), serde_json::to_vec(c).expect("committed offset serializes"))
            })
            .collect()
    }

    /// Queues ops; the receiver resolves once they are durable.
    pub fn submit(&self, ops: Vec<Op>, fence: Compare) -> oneshot::Receiver<Result<(), WriteError>> {
        let (tx, rx) = oneshot::channel();
        self.queue.borrow_mut().push(Pending { ops, fence, done: tx });
        self.wake.notify_one();
        rx
    }

    /// The writer loop: everything queued during one store write goes in the
    /// next, one txn per coordinator slot (each fenced on its slot record).
    pub async fn run(self) {
        loop {
            self.wake.notified().await;
            loop {
                let batch: Vec<Pending> = std::mem::take(&mut *self.queue.borrow_mut());
                if batch.is_empty() {
                    break;
                }
                let mut by_fence: BTreeMap<String, (Compare, Vec<Pending>)> = BTreeMap::new();
                for p in batch {
                    let key = format!("{:?}", p.fence);
                    by_fence.entry(key).or_insert_with(|| (p.fence.clone(), Vec::new())).1.push(p);
                }
                for (_, (fence, pending)) in by_fence {
                    // Later commits of the same key win; BTreeMap keeps it to one op each.
                    let mut latest: BTreeMap<String, Op> = BTreeMap::new();
                    for p in &pending {
                        for op in &p.ops {
                            latest.insert(op.key().to_string(), op.clone());
                        }
                    }
                    let ops: Vec<Op> = latest.into_values().collect();
                    let mut result = Ok(());
                    for chunk in ops.chunks(OPS_PER_TXN_MAX) {
                        match self.store.txn(vec![fence.clone()], chunk.to_vec()).await {
                            Ok(r) if r.applied => {}
                            Ok(_) => {
                                result = Err(WriteError::NotCoordinator);
                                break;
                            }
                            Err(e) => {
                                result = Err(WriteError::Store(format!("storing committed offsets: {e}")));
                                break;
                            }
                        }
                    }
                    for p in pending {
                        let _ = p.done.send(result.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_coord::{Compare, CoordError, EmbeddedStore, Lease, LeaseId, TxnResult, Versioned, WatchStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts transactions on top of the real embedded store.
    struct Counting {
        inner: EmbeddedStore,
        txns: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl MetaStore for Counting {
        async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError> {
            self.inner.get(key).await
        }
        async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
            self.inner.list_with_revision(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<bool, CoordError> {
            self.inner.delete(key).await
        }
        async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError> {
            self.inner.delete_prefix(prefix).await
        }
        async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError> {
            self.txns.fetch_add(1, Ordering::SeqCst);
            self.inner.txn(compares, ops).await
        }
        fn watch(&self, prefix: &str) -> WatchStream {
            self.inner.watch(prefix)
        }
        async fn lease_grant(&self, ttl: std::time::Duration) -> Result<Lease, CoordError> {
            self.inner.lease_grant(ttl).await
        }
        async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<std::time::Duration>, CoordError> {
            self.inner.lease_keep_alive(id).await
        }
        async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError> {
            self.inner.lease_revoke(id).await
        }
    }

    fn committed(i: i64) -> Committed {
        Committed { offset: i, leader_epoch: 0, metadata: Some(format!("m{i}")), commit_ms: 1 }
    }

    #[test]
    fn commits_queued_together_are_one_store_write_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let counting =
            Arc::new(Counting { inner: EmbeddedStore::open(dir.path()).unwrap(), txns: AtomicUsize::new(0) });
        let store: Arc<dyn MetaStore> = counting.clone();
        let keys = Keys::new("/laminar");
        tokio_uring::start(async {
            let writer = OffsetWriter::new(store.clone(), keys.clone());
            let mut waits = Vec::new();
            // 200 commits of 4 partitions by one busy group, all queued before the writer runs.
            for i in 0..200 {
                let offsets: Vec<(String, i32, Committed)> =
                    (0..4).map(|p| ("orders".to_string(), p, committed(i))).collect();
                waits.push(writer.submit(writer.put_ops("busy/group", &offsets), writer.fence("busy/group", 0)));
            }
            tokio_uring::spawn(writer.clone().run());
            for w in waits {
                w.await.unwrap().unwrap();
            }
            assert_eq!(counting.txns.load(Ordering::SeqCst), 1, "one transaction for 200 commits");
            let stored = store.list(&keys.offsets()).await.unwrap();
            assert_eq!(stored.len(), 4);
            let (k, v) = &stored[3];
            assert_eq!(keys.parse_offset(k), Some(("busy/group".to_string(), "orders".to_string(), 3)));
            let c: Committed = serde_json::from_slice(&v.value).unwrap();
            assert_eq!((c.offset, c.metadata.as_deref()), (199, Some("m199")), "the latest commit wins");
        });
    }

    /// A coordinator that lost its slot (the record changed) cannot write.
    #[test]
    fn commits_of_a_deposed_coordinator_fail() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let keys = Keys::new("");
        tokio_uring::start(async {
            let slot_key = keys.coordinator(group_slot("g"));
            let owned_at = store.put(&slot_key, b"{}".to_vec()).await.unwrap();
            let writer = OffsetWriter::new(store.clone(), keys.clone());
            tokio_uring::spawn(writer.clone().run());
            let ops = writer.put_ops("g", &[("t".to_string(), 0, committed(5))]);
            assert_eq!(writer.submit(ops.clone(), writer.fence("g", owned_at)).await.unwrap(), Ok(()));
            store.put(&slot_key, b"{}".to_vec()).await.unwrap(); // another broker took the slot
            assert_eq!(writer.submit(ops, writer.fence("g", owned_at)).await.unwrap(), Err(WriteError::NotCoordinator));
        });
    }
}

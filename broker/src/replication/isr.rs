//! ISR changes, made by the leader in the metadata store: the partition
//! record rewritten (partition epoch + 1) by compare-and-swap on the version
//! this leadership last saw. A leader that was deposed (the controller
//! elected another, or dropped it from the ISR) finds the record changed and
//! its write refused; one whose lease ran out does not write at all. One
//! change per partition at a time.

use std::sync::Arc;

use laminar_coord::cluster::records::to_json;
use laminar_coord::cluster::{IsrMember, Stored};
use laminar_coord::{Compare, Op};

use super::leader::SharedLeader;
use crate::shard::{ReplicaKey, SharedShard};

/// Adds `node` (caught up) to the ISR. It counts for the high watermark at
/// once (the maximal ISR), before the write commits.
pub fn expand(shard: &SharedShard, key: ReplicaKey, leader: SharedLeader, node: i32) {
    let view = shard.borrow().cluster.view();
    let Some(broker) = view.broker(node) else { return };
    if broker.record.shutting_down {
        // It is leaving (controlled shutdown): the controller just took it out.
        return;
    }
    let incarnation = broker.lease;
    let member = IsrMember { node, incarnation };
    let isr = {
        let l = leader.borrow();
        let mut isr = l.record.record.isr.clone();
        isr.push(member);
        isr
    };
    leader.borrow_mut().adding.push(member);
    write(shard, key, leader, isr, format!("{node} caught up"));
}

/// Removes lagging followers from the ISR (they still count until it commits).
pub fn shrink(shard: &SharedShard, key: ReplicaKey, leader: SharedLeader, gone: Vec<i32>) {
    let isr: Vec<IsrMember> =
        leader.borrow().record.record.isr.iter().copied().filter(|m| !gone.contains(&m.node)).collect();
    write(shard, key, leader, isr, format!("{gone:?} fell behind"));
}

fn write(shard: &SharedShard, key: ReplicaKey, leader: SharedLeader, isr: Vec<IsrMember>, why: String) {
    let (expected, epoch) = {
        let mut l = leader.borrow_mut();
        if l.isr_write_in_flight {
            l.adding.clear();
            return;
        }
        l.isr_write_in_flight = true;
        (l.record.clone(), l.epoch)
    };
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        let cluster = shard.borrow().cluster.clone();
        let storage_key = cluster.keys.partition(&key.0, key.1);
        let mut next = expected.record.clone();
        next.isr = isr;
        next.partition_epoch += 1;
        let result = if !cluster.is_acting() {
            Err("the lease may have expired".to_string())
        } else {
            let guard = Compare::version(storage_key.clone(), expected.version);
            match cluster.store.txn(vec![guard], vec![Op::put(storage_key, to_json(&next))]).await {
                Ok(r) if r.applied => Ok(Arc::new(Stored {
                    record: next,
                    version: r.revision,
                    create_revision: expected.create_revision,
                    lease: 0,
                })),
                Ok(_) => Err("the partition record changed (a new leader or ISR)".to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let mut l = leader.borrow_mut();
        l.isr_write_in_flight = false;
        l.adding.clear();
        match result {
            Ok(stored) => {
                crate::metrics::isr_changed(stored.record.isr.len() < expected.record.isr.len());
                tracing::info!(
                    partition = %format!("{}-{}", key.0, key.1),
                    epoch,
                    isr = ?stored.record.isr_nodes(),
                    "ISR changed: {why}"
                );
                l.adopt(stored.clone());
                drop(l);
                let mut s = shard.borrow_mut();
                if let Some(r) = s.replicas.get_mut(&key) {
                    if stored.version > r.record.version {
                        r.record = stored;
                    }
                    if let Some(log) = r.log().cloned() {
                        if let crate::shard::Role::Leader(l) = &r.role {
                            l.borrow_mut().advance(&log);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(partition = %format!("{}-{}", key.0, key.1), "ISR change not written: {e}"),
        }
    });
}

//! Partition reassignment (KIP-455), as state changes of a partition record:
//!
//! - `start`: the replica set becomes the target followed by the replicas
//!   leaving (`replicas = target + removing`), with `adding` and `removing`
//!   saying which is which. Added replicas open on their brokers as
//!   followers and catch up; nothing else changes yet, so writes go on.
//! - `complete` (the controller, on every pass): once every target replica
//!   is in sync, the replica set becomes the target, the leaving replicas
//!   leave the ISR and their brokers delete their copies; a leader that is
//!   leaving hands over to the first in-sync target replica, in a new epoch.
//! - `cancel`: back to the original replicas (those not being added), the
//!   added ones dropped from the ISR.
//!
//! A reassignment never shrinks the ISR below what acks=all relied on
//! before it completes: the target's members are all in sync first.

use std::collections::BTreeMap;

use laminar_coord::cluster::{ClusterView, PartitionRecord};

use crate::errors::{self, KafkaError};
use crate::placement::BrokerLoad;

/// The replicas before any reassignment in progress.
pub fn original(rec: &PartitionRecord) -> Vec<i32> {
    rec.replicas.iter().copied().filter(|r| !rec.adding.contains(r)).collect()
}

pub fn in_progress(rec: &PartitionRecord) -> bool {
    !rec.adding.is_empty() || !rec.removing.is_empty()
}

/// The record that starts moving `rec` to `target` (replacing any
/// reassignment in progress). `loads` picks shards for new replicas.
pub fn start(
    rec: &PartitionRecord,
    target: &[i32],
    view: &ClusterView,
    loads: &mut BTreeMap<i32, BrokerLoad>,
) -> Result<PartitionRecord, KafkaError> {
    let invalid = |why: String| KafkaError::new(errors::INVALID_REPLICA_ASSIGNMENT, why);
    if target.is_empty() {
        return Err(invalid("the target replica list is empty".into()));
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return Err(invalid(format!("broker {r} is listed twice")));
        }
        if !view.brokers.contains_key(r) {
            return Err(invalid(format!("broker {r} is not a live broker of this cluster")));
        }
    }
    let from = original(rec);
    let adding: Vec<i32> = target.iter().copied().filter(|r| !from.contains(r)).collect();
    let removing: Vec<i32> = from.iter().copied().filter(|r| !target.contains(r)).collect();
    let mut next = rec.clone();
    next.replicas = target.iter().chain(removing.iter()).copied().collect();
    next.shards = next
        .replicas
        .iter()
        .map(|&r| {
            rec.shard_of(r).unwrap_or_else(|| {
                let load = loads.get_mut(&r).expect("checked live");
                let shard = load.best_shard(false);
                load.add(shard, false);
                shard
            })
        })
        .collect();
    // Replicas a replaced reassignment was adding, and this one is not, go.
    next.isr.retain(|m| next.replicas.contains(&m.node));
    next.adding = adding;
    next.removing = removing;
    next.partition_epoch += 1;
    Ok(next)
}

/// The record that cancels the reassignment in progress.
pub fn cancel(rec: &PartitionRecord) -> Result<PartitionRecord, KafkaError> {
    if !in_progress(rec) {
        return Err(KafkaError::new(errors::NO_REASSIGNMENT_IN_PROGRESS, "no reassignment in progress"));
    }
    let keep = original(rec);
    if !rec.isr.iter().any(|m| keep.contains(&m.node)) {
        // Only replicas being added are in sync: going back would delete the
        // only copies of the acknowledged writes.
        return Err(KafkaError::new(
            errors::INVALID_REPLICA_ASSIGNMENT,
            "cannot cancel: none of the original replicas is in sync any more; complete the move instead",
        ));
    }
    let mut next = rec.clone();
    next.shards = keep.iter().map(|&r| rec.shard_of(r).unwrap_or(0)).collect();
    next.replicas = keep;
    next.isr.retain(|m| next.replicas.contains(&m.node));
    next.adding.clear();
    next.removing.clear();
    if !next.replicas.contains(&next.leader) {
        // The leader was one being added: the controller elects among the rest.
        next.leader = -1;
        next.leader_incarnation = 0;
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    Ok(next)
}

/// The record that finishes a reassignment whose target replicas are all
/// in sync (alive in the incarnation they are in the ISR with), if so.
pub fn complete(rec: &PartitionRecord, view: &ClusterView) -> Option<PartitionRecord> {
    if !in_progress(rec) || rec.leader < 0 {
        return None;
    }
    let target: Vec<i32> = rec.replicas.iter().copied().filter(|r| !rec.removing.contains(r)).collect();
    let in_sync = |n: i32| rec.isr.iter().any(|m| m.node == n && view.incarnation(n) == Some(m.incarnation));
    if !target.iter().all(|&n| in_sync(n)) {
        return None;
    }
    let mut next = rec.clone();
    next.shards = target.iter().map(|&r| rec.shard_of(r).unwrap_or(0)).collect();
    next.replicas = target;
    next.isr.retain(|m| next.replicas.contains(&m.node));
    next.adding.clear();
    next.removing.clear();
    if !next.replicas.contains(&rec.leader) {
        let to = *next.replicas.iter().find(|&&n| in_sync(n)).expect("every target replica is in sync");
        next.leader = to;
        next.leader_incarnation = view.incarnation(to).expect("in sync means alive");
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement;
    use laminar_coord::cluster::IsrMember;

    fn members(view: &ClusterView, nodes: &[i32]) -> Vec<IsrMember> {
        nodes.iter().map(|&n| IsrMember { node: n, incarnation: view.incarnation(n).unwrap_or(0) }).collect()
    }

    fn view(nodes: &[i32]) -> ClusterView {
        let mut v = ClusterView::empty();
        for &node in nodes {
            v.brokers.insert(node, crate::cluster::test_broker(node, 1000, node as i64 * 10));
        }
        v
    }

    fn record(v: &ClusterView, replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            replicas: replicas.to_vec(),
            shards: replicas.iter().map(|&r| r as u16 % 2).collect(),
            leader,
            leader_epoch: 3,
            leader_incarnation: v.incarnation(leader).unwrap_or(0),
            isr: members(v, isr),
            partition_epoch: 7,
            adding: vec![],
            removing: vec![],
        }
    }

    #[test]
    fn a_move_adds_first_and_removes_once_the_target_is_in_sync() {
        let v = view(&[1, 2, 3, 4]);
        let rec = record(&v, &[1, 2, 3], &[1, 2, 3], 1);
        let mut loads = placement::loads(&v);
        let started = start(&rec, &[4, 2, 3], &v, &mut loads).unwrap();
        assert_eq!(started.replicas, vec![4, 2, 3, 1]);
        assert_eq!((started.adding.clone(), started.removing.clone()), (vec![4], vec![1]));
        assert_eq!(started.shards.len(), 4);
        assert_eq!((started.leader, started.leader_epoch), (1, 3), "writes go on with the same leader");
        assert_eq!(complete(&started, &v), None, "4 is not in sync yet");
        let mut caught_up = started.clone();
        caught_up.isr.push(IsrMember { node: 4, incarnation: v.incarnation(4).unwrap() });
        let done = complete(&caught_up, &v).unwrap();
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!(done.isr.iter().map(|m| m.node).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!((done.leader, done.leader_epoch), (4, 4), "the leaving leader hands over");
        assert!(done.adding.is_empty() && done.removing.is_empty());
        assert_eq!(done.shards[0], started.shards[0], "the new replica keeps the shard it caught up on");
    }

    #[test]
    fn cancel_goes_back_and_bad_targets_are_refused() {
        let v = view(&[1, 2, 3, 4]);
        let rec = record(&v, &[1, 2, 3], &[1, 2, 3], 2);
        let mut loads = placement::loads(&v);
        assert!(cancel(&rec).is_err_and(|e| e.code == errors::NO_REASSIGNMENT_IN_PROGRESS));
        for bad in [&[][..], &[1, 1][..], &[1, 9][..]] {
            assert!(start(&rec, bad, &v, &mut loads).is_err_and(|e| e.code == errors::INVALID_REPLICA_ASSIGNMENT));
        }
        let started = start(&rec, &[4, 2, 3], &v, &mut loads).unwrap();
        let back = cancel(&started).unwrap();
        // Kafka's rule: the original replicas in the order of the moving set.
        assert_eq!(back.replicas, vec![2, 3, 1]);
        assert_eq!(back.shards, vec![rec.shards[1], rec.shards[2], rec.shards[0]]);
        assert_eq!(back.leader, 2);
        // Not when only added replicas are in sync: they hold the only copies.
        let mut only_new = started.clone();
        only_new.isr = members(&v, &[4]);
        assert!(cancel(&only_new).is_err_and(|e| e.code == errors::INVALID_REPLICA_ASSIGNMENT));
        // A new target replaces the one in progress, from the original set.
        let other = start(&started, &[1, 2, 4], &v, &mut loads).unwrap();
        assert_eq!((other.adding.clone(), other.removing.clone()), (vec![4], vec![3]));
        assert_eq!(other.replicas, vec![1, 2, 4, 3]);
    }
}

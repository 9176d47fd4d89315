//! The controller: one broker at a time, elected through the store, does the
//! cluster's bookkeeping from the view every broker shares:
//!
//! - places the partitions of new topics (and new partitions of old ones)
//!   on live brokers and their shards (`placement`);
//! - elects a leader for every partition whose leader died or restarted,
//!   from the in-sync replicas that are still the incarnation that was in
//!   sync, and drops dead or restarted brokers from ISRs (never the last
//!   member: it is the one that holds every acknowledged write);
//! - moves leadership back to the preferred replica once it is in sync;
//! - assigns the group-coordinator slots to live brokers.
//!
//! Election: `<P>/meta/controller` is created absent-only, bound to this
//! broker's lease, in the same txn that bumps `<P>/meta/controller-epoch`.
//! Every controller write carries a compare on that key's version, so a
//! deposed controller's late writes fail: when its lease expired, the key was
//! deleted, and whoever recreated it has another version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use laminar_coord::cluster::records::to_json;
use laminar_coord::cluster::{
    ClusterView, ControllerRecord, CoordinatorRecord, IsrMember, PartitionRecord, Stored, GROUP_SLOTS,
};
use laminar_coord::{Compare, CoordError, LeaseId, Op};
use tokio::sync::watch;

use super::reassignment;
use super::Cluster;
use crate::placement;

/// Most partition changes in one txn: each carries up to two compares, plus
/// the controller's own, within etcd's 128.
const CHANGES_PER_TXN: usize = 50;
/// How often the controller looks for leaders to move back to their
/// preferred replica, besides reacting to every change.
const PREFERRED_LEADER_CHECK: Duration = Duration::from_secs(10);

/// Runs elections and, while this broker is the controller, its duties,
/// until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = cluster.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if cluster.is_acting() {
            match campaign(&cluster).await {
                Ok(Some(elected)) => {
                    tracing::info!(epoch = elected.epoch, "this broker is the controller");
                    lead(&cluster, &elected, &mut changes, &mut shutdown).await;
                    tracing::info!(epoch = elected.epoch, "this broker is no longer the controller");
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("controller election failed: {e}"),
            }
        }
        // Another broker controls (or we are not registered yet): wait for a change.
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

pub struct Elected {
    pub epoch: u64,
    /// The controller key's version: the fence on every write.
    pub version: u64,
}

/// Claims the controller seat if it is free, or takes up again a seat that
/// is still ours: `lead` returns as soon as the lease may have run out, but a
/// keep-alive that answers late renews the same lease, and the seat's key,
/// bound to it, stays. Nobody else campaigns while it exists, so without
/// this the cluster would have no controller until our lease ended (seen
/// after etcd was paused: leaders never re-elected).
async fn campaign(cluster: &Cluster) -> Result<Option<Elected>, CoordError> {
    let keys = &cluster.keys;
    if let Some(seat) = &cluster.view().controller {
        return Ok(still_ours(seat, cluster.node_id(), cluster.incarnation())
            .then_some(Elected { epoch: seat.record.epoch, version: seat.version }));
    }
    let epoch_key = keys.controller_epoch();
    let (epoch, epoch_version) = match cluster.store.get(&epoch_key).await? {
        Some(v) => (String::from_utf8_lossy(&v.value).trim().parse::<u64>().unwrap_or(0), v.version),
        None => (0, 0),
    };
    let next = epoch + 1;
    let record = to_json(&ControllerRecord { node_id: cluster.node_id(), epoch: next });
    let lease = cluster.lease.id();
    let r = cluster
        .store
        .txn(
            vec![Compare::absent(keys.controller()), Compare::version(epoch_key.clone(), epoch_version)],
            vec![Op::put_leased(keys.controller(), record, lease), Op::put(epoch_key, next.to_string())],
        )
        .await?;
    Ok(r.applied.then_some(Elected { epoch: next, version: r.revision }))
}

/// The seat is held under our current lease (not an earlier incarnation's,
/// which etcd will expire): its writes, fenced on its version, are ours.
fn still_ours(seat: &Stored<ControllerRecord>, me: i32, incarnation: LeaseId) -> bool {
    incarnation != 0 && seat.record.node_id == me && seat.lease == incarnation
}

async fn lead(
    cluster: &Cluster,
    elected: &Elected,
    changes: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let fence = Compare::version(cluster.keys.controller(), elected.version);
    let mut last_preferred_check = Instant::now();
    loop {
        if *shutdown.borrow() || !cluster.is_acting() {
            return;
        }
        changes.borrow_and_update();
        let view = cluster.view();
        if view.revision >= elected.version {
            // The view has caught up with our election: is the seat still ours?
            match &view.controller {
                Some(c) if c.version == elected.version => {}
                _ => return,
            }
            let preferred = last_preferred_check.elapsed() >= PREFERRED_LEADER_CHECK;
            if preferred {
                last_preferred_check = Instant::now();
            }
            let duties = Duties { cluster, fence: &fence, view: &view };
            if let Err(e) = duties.run(preferred).await {
                tracing::warn!("controller duties failed (retrying on the next change): {e}");
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One pass over the view.
struct Duties<'a> {
    cluster: &'a Cluster,
    fence: &'a Compare,
    view: &'a ClusterView,
}

/// A partition record to write, guarded by what it replaces.
struct Change {
    key: String,
    guards: Vec<Compare>,
    record: Vec<u8>,
    what: String,
}

impl Duties<'_> {
    async fn run(&self, preferred_leaders: bool) -> Result<(), CoordError> {
        let mut changes = self.place_new_partitions();
        changes.extend(self.elect_leaders(preferred_leaders));
        self.write(changes).await?;
        self.assign_coordinators().await
    }

    fn place_new_partitions(&self) -> Vec<Change> {
        let keys = &self.cluster.keys;
        let mut loads = placement::loads(self.view);
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.view.topics.keys().collect();
        names.sort();
        for name in names {
            let t = &self.view.topics[name];
            for p in 0..t.partition_count() {
                if t.partition(p).is_some() {
                    continue;
                }
                let rf = t.topic.record.replication_factor.max(1) as usize;
                let placed = match t.topic.record.assignments.get(&p) {
                    // Asked for by hand: there, on the brokers' least-loaded shards.
                    Some(replicas) => {
                        placement::place_on(&mut loads, replicas).map(|shards| (replicas.clone(), shards))
                    }
                    None => placement::place(&mut loads, rf),
                };
                let Some((replicas, shards)) = placed else {
                    tracing::warn!(topic = %name, partition = p, replication_factor = rf, "cannot place: too few live brokers with room (or a manually assigned one is not live)");
                    break;
                };
                let isr = replicas
                    .iter()
                    .map(|&n| IsrMember { node: n, incarnation: self.view.incarnation(n).unwrap_or(0) })
                    .collect();
                let leader = replicas[0];
                let record = PartitionRecord {
                    topic_id: t.id(),
                    leader,
                    leader_epoch: 0,
                    leader_incarnation: self.view.incarnation(leader).unwrap_or(0),
                    replicas,
                    shards,
                    isr,
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                };
                out.push(Change {
                    key: keys.partition(name, p),
                    guards: vec![
                        Compare::created(keys.topic(name), t.topic.create_revision),
                        Compare::absent(keys.partition(name, p)),
                    ],
                    record: to_json(&record),
                    what: format!("placed {name}-{p} on {:?}", record.replicas),
                });
            }
        }
        out
    }

    fn elect_leaders(&self, preferred: bool) -> Vec<Change> {
        let keys = &self.cluster.keys;
        let broker_unclean = self.cluster.config.unclean_leader_election;
        let mut out = Vec::new();
        for (name, t) in &self.view.topics {
            // Validated when written; a store edited by hand falls back to the broker's setting.
            let unclean = crate::topic_config::unclean_leader_election(&t.topic.record.configs, broker_unclean)
                .unwrap_or(broker_unclean);
            for (p, stored) in t.partitions.iter().enumerate() {
                let Some(stored) = stored else { continue };
                // A reassignment whose target is in sync completes first;
                // leadership is then settled on the completed record.
                let completed = reassignment::complete(&stored.record, self.view);
                let base = completed.as_ref().unwrap_or(&stored.record);
                let next = match (next_state(base, self.view, unclean, preferred), completed.clone()) {
                    (Some(next), _) => next,
                    (None, Some(done)) => done,
                    (None, None) => continue,
                };
                let mut what = describe_change(name, p, &stored.record, &next);
                if completed.is_some() {
                    what = format!("{what}; reassignment done, replicas {:?}", next.replicas);
                }
                out.push(Change {
                    key: keys.partition(name, p as i32),
                    guards: vec![Compare::version(keys.partition(name, p as i32), stored.version)],
                    record: to_json(&next),
                    what,
                });
            }
        }
        out
    }

    /// Writes changes in txns fenced by the controller key; a txn that loses
    /// a race (a leader changed its ISR meanwhile) is retried change by change
    /// so one busy partition cannot hold up the rest.
    async fn write(&self, changes: Vec<Change>) -> Result<(), CoordError> {
        for chunk in changes.chunks(CHANGES_PER_TXN) {
            if self.txn(chunk).await? {
                continue;
            }
            for one in chunk {
                if !self.txn(std::slice::from_ref(one)).await? {
                    tracing::debug!(key = %one.key, "controller change lost a race; the next pass retries");
                }
            }
        }
        Ok(())
    }

    async fn txn(&self, changes: &[Change]) -> Result<bool, CoordError> {
        let mut guards = vec![self.fence.clone()];
        let mut ops = Vec::with_capacity(changes.len());
        for c in changes {
            guards.extend(c.guards.iter().cloned());
            ops.push(Op::put(c.key.clone(), c.record.clone()));
        }
        let applied = self.cluster.store.txn(guards, ops).await?.applied;
        if applied {
            for c in changes {
                tracing::info!("controller: {}", c.what);
            }
        }
        Ok(applied)
    }

    async fn assign_coordinators(&self) -> Result<(), CoordError> {
        let keys = &self.cluster.keys;
        // Brokers shutting down coordinate nothing, unless all are.
        let mut live: Vec<i32> =
            self.view.brokers.iter().filter(|(_, b)| !b.record.shutting_down).map(|(n, _)| *n).collect();
        if live.is_empty() {
            live = self.view.brokers.keys().copied().collect();
        }
        if live.is_empty() {
            return Ok(());
        }
        let valid = |c: &CoordinatorRecord| {
            self.view.incarnation(c.node_id) == Some(c.incarnation) && live.contains(&c.node_id)
        };
        let mut owned: BTreeMap<i32, u32> = live.iter().map(|&n| (n, 0)).collect();
        for c in self.view.coordinators.iter().flatten() {
            if valid(&c.record) {
                *owned.entry(c.record.node_id).or_default() += 1;
            }
        }
        let mut guards = vec![self.fence.clone()];
        let mut ops = Vec::new();
        for slot in 0..GROUP_SLOTS {
            let current = self.view.coordinator(slot);
            let keep = current.is_some_and(|c| valid(&c.record));
            let least = *owned.iter().min_by_key(|(n, count)| (**count, **n)).map(|(n, _)| n).expect("live brokers");
            // Move a valid slot only to even out a gap of two or more.
            let rebalance = current.is_some_and(|c| keep && owned[&c.record.node_id] >= owned[&least] + 2);
            if keep && !rebalance {
                continue;
            }
            if let Some(c) = current.filter(|c| valid(&c.record)) {
                *owned.get_mut(&c.record.node_id).expect("live") -= 1;
            }
            *owned.get_mut(&least).expect("live") += 1;
            let epoch = current.map_or(1, |c| c.record.epoch + 1);
            let record =
                CoordinatorRecord { node_id: least, incarnation: self.view.incarnation(least).unwrap_or(0), epoch };
            guards.push(Compare::version(keys.coordinator(slot), current.map_or(0, |c| c.version)));
            ops.push(Op::put(keys.coordinator(slot), to_json(&record)));
        }
        if ops.is_empty() {
            return Ok(());
        }
        let n = ops.len();
        if self.cluster.store.txn(guards, ops).await?.applied {
            tracing::info!(slots = n, "controller: assigned group coordinator slots");
        }
        Ok(())
    }
}

/// The partition's next state, or `None` if it needs no change. Rules:
///
/// - An ISR member counts as in sync only in the incarnation it was in sync
///   in: a dead broker (no registration) or a restarted one (another lease)
///   leaves the ISR — unless it is the last member, which stays so the
///   partition remembers who holds its acknowledged writes.
/// - A leader must be alive in the incarnation it was elected in. If not, the
///   first replica (in preference order) among the ISR members still in sync
///   is elected, with a new leader epoch.
/// - With no such member, a restarted ISR member (the last holders of the
///   data) is elected in its new incarnation; with none alive the partition
///   has no leader (-1) until one returns, unless unclean election is on,
///   which takes any live replica (and loses what only the others had).
/// - `preferred`: a leader that is not the first replica hands over to it
///   once the first replica is in sync.
pub fn next_state(
    rec: &PartitionRecord,
    view: &ClusterView,
    unclean: bool,
    preferred: bool,
) -> Option<PartitionRecord> {
    let live = |n: i32| view.incarnation(n);
    let leaving = |n: i32| view.broker(n).is_some_and(|b| b.record.shutting_down);
    let in_sync: Vec<IsrMember> = rec.isr.iter().copied().filter(|m| live(m.node) == Some(m.incarnation)).collect();
    let leader_ok = rec.leader >= 0 && live(rec.leader) == Some(rec.leader_incarnation);
    let mut next = rec.clone();
    if leader_ok {
        // Controlled shutdown: a leaving leader hands over to an in-sync
        // replica that stays, and leaves the ISR (so the high watermark does
        // not wait for it when it stops); a leaving follower leaves the ISR.
        // Only while someone else stays in sync: never an empty ISR.
        let staying: Vec<IsrMember> = in_sync.iter().copied().filter(|m| !leaving(m.node)).collect();
        if !staying.is_empty() && in_sync.iter().any(|m| leaving(m.node)) {
            if leaving(rec.leader) {
                let to = *rec.replicas.iter().find(|r| staying.iter().any(|m| m.node == **r)).expect("staying");
                next.leader = to;
                next.leader_incarnation = live(to).expect("in sync means alive");
                next.leader_epoch += 1;
            }
            next.isr = staying;
            next.partition_epoch += 1;
            return Some(next);
        }
        let first = rec.replicas.first().copied();
        let hand_over =
            preferred && first.is_some_and(|f| f != rec.leader && !leaving(f) && in_sync.iter().any(|m| m.node == f));
        if hand_over {
            let f = first.expect("checked");
            next.leader = f;
            next.leader_incarnation = live(f).expect("in sync means alive");
            next.leader_epoch += 1;
        } else if in_sync.len() == rec.isr.len() {
            return None;
        }
        // Dead or restarted followers leave the ISR (the leader is in it).
        next.isr = if in_sync.is_empty() { rec.isr.clone() } else { in_sync };
        next.partition_epoch += 1;
        return Some(next);
    }
    let elect = |node: i32, isr: Vec<IsrMember>| {
        let mut n = rec.clone();
        n.leader = node;
        n.leader_incarnation = live(node).expect("electing a live broker");
        n.leader_epoch += 1;
        n.isr = isr;
        n.partition_epoch += 1;
        n
    };
    // In-sync replicas that are not leaving first, then leaving ones (a
    // leader that stops soon beats no leader).
    let candidate = rec
        .replicas
        .iter()
        .find(|r| !leaving(**r) && in_sync.iter().any(|m| m.node == **r))
        .or_else(|| rec.replicas.iter().find(|r| in_sync.iter().any(|m| m.node == **r)));
    if let Some(&leader) = candidate {
        return Some(elect(leader, in_sync));
    }
    // Nobody is in sync in the incarnation that was: the last holders of the
    // data, if one came back, lead in their new incarnation.
    let restarted: Vec<i32> = rec.isr.iter().map(|m| m.node).filter(|n| live(*n).is_some()).collect();
    if let Some(&leader) = rec.replicas.iter().find(|r| restarted.contains(r)) {
        let isr = vec![IsrMember { node: leader, incarnation: live(leader).expect("live") }];
        return Some(elect(leader, isr));
    }
    if unclean {
        if let Some(&leader) = rec.replicas.iter().find(|r| live(**r).is_some()) {
            tracing::warn!(leader, "unclean leader election: writes only the old ISR had are lost");
            let isr = vec![IsrMember { node: leader, incarnation: live(leader).expect("live") }];
            return Some(elect(leader, isr));
        }
    }
    if rec.leader == -1 {
        return None;
    }
    next.leader = -1;
    next.leader_incarnation = 0;
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Some(next)
}

/// ElectLeaders (preferred): the record that hands leadership to the first
/// replica now, rather than at the controller's next periodic check
/// (`PREFERRED_LEADER_CHECK`), or why not. The same rule as the controller's
/// handover in [`next_state`]: the preferred replica must be in sync in its
/// live incarnation and not shutting down. Any broker may write it (one
/// compare-and-swap on the record, as reassignments are): the new epoch
/// fences the old leader as a controller's election does.
pub fn preferred_election(
    rec: &PartitionRecord,
    view: &ClusterView,
) -> Result<PartitionRecord, crate::errors::KafkaError> {
    use crate::errors::{KafkaError, ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE};
    let Some(&first) = rec.replicas.first() else {
        return Err(KafkaError::new(PREFERRED_LEADER_NOT_AVAILABLE, "the partition has no replicas"));
    };
    let live = view.incarnation(first);
    if rec.leader == first && live == Some(rec.leader_incarnation) {
        return Err(KafkaError::new(ELECTION_NOT_NEEDED, format!("broker {first} leads already")));
    }
    let in_sync = rec.isr.iter().any(|m| m.node == first && live == Some(m.incarnation));
    if !in_sync {
        return Err(KafkaError::new(
            PREFERRED_LEADER_NOT_AVAILABLE,
            format!("the preferred replica {first} is not in sync (or not alive)"),
        ));
    }
    if view.broker(first).is_some_and(|b| b.record.shutting_down) {
        return Err(KafkaError::new(PREFERRED_LEADER_NOT_AVAILABLE, format!("broker {first} is shutting down")));
    }
    let mut next = rec.clone();
    next.leader = first;
    next.leader_incarnation = live.expect("in sync means alive");
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Ok(next)
}

fn describe_change(topic: &str, p: usize, old: &PartitionRecord, new: &PartitionRecord) -> String {
    if old.leader != new.leader || old.leader_epoch != new.leader_epoch {
        format!(
            "{topic}-{p}: leader {} → {} (epoch {}), isr {:?}",
            old.leader,
            new.leader,
            new.leader_epoch,
            new.isr_nodes()
        )
    } else {
        format!("{topic}-{p}: isr {:?} → {:?}", old.isr_nodes(), new.isr_nodes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_coord::cluster::Stored;

    fn view(live: &[(i32, i64)]) -> ClusterView {
        let mut v = ClusterView::empty();
        for &(node, lease) in live {
            v.brokers.insert(node, crate::cluster::test_broker(node, 100, lease));
        }
        v
    }

    fn rec(leader: i32, leader_inc: i64, isr: &[(i32, i64)]) -> PartitionRecord {
        PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            replicas: vec![1, 2, 3],
            shards: vec![0, 0, 0],
            leader,
            leader_epoch: 5,
            leader_incarnation: leader_inc,
            isr: isr.iter().map(|&(node, incarnation)| IsrMember { node, incarnation }).collect(),
            partition_epoch: 9,
            adding: vec![],
            removing: vec![],
        }
    }

    fn leaving(mut v: ClusterView, node: i32) -> ClusterView {
        let b = v.brokers.get(&node).expect("registered");
        let mut record = b.record.clone();
        record.shutting_down = true;
        v.brokers.insert(node, Arc::new(Stored { record, version: 2, create_revision: 1, lease: b.lease }));
        v
    }

    #[test]
    fn a_broker_shutting_down_hands_over_its_leaderships_and_leaves_isrs() {
        let v = leaving(view(&[(1, 10), (2, 20), (3, 30)]), 1);
        let n = next_state(&rec(1, 10, &[(1, 10), (2, 20), (3, 30)]), &v, false, false).unwrap();
        assert_eq!((n.leader, n.leader_incarnation, n.leader_epoch), (2, 20, 6));
        assert_eq!(n.isr_nodes(), vec![2, 3]);
        // As a follower, it leaves the ISR; the leader stays.
        let f = next_state(&rec(2, 20, &[(1, 10), (2, 20), (3, 30)]), &v, false, false).unwrap();
        assert_eq!((f.leader, f.leader_epoch, f.isr_nodes()), (2, 5, vec![2, 3]));
        // Alone in sync: it keeps leading (no one to hand over to).
        assert_eq!(next_state(&rec(1, 10, &[(1, 10)]), &v, false, false), None);
        // Never the target of a preferred-leader handover.
        let p = rec(2, 20, &[(2, 20), (3, 30)]);
        assert_eq!(next_state(&p, &v, false, true), None);
        // Elected only when no other in-sync replica is left.
        let dead_leader = view(&[(1, 10), (3, 30)]);
        let e = next_state(&rec(2, 20, &[(1, 10), (2, 20), (3, 30)]), &leaving(dead_leader, 1), false, false);
        assert_eq!(e.unwrap().leader, 3);
    }

    #[test]
    fn preferred_election_moves_to_an_in_sync_first_replica_only() {
        use crate::errors::{ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE};
        let v = view(&[(1, 10), (2, 20), (3, 30)]);
        let n = preferred_election(&rec(2, 20, &[(1, 10), (2, 20), (3, 30)]), &v).unwrap();
        assert_eq!((n.leader, n.leader_incarnation, n.leader_epoch, n.partition_epoch), (1, 10, 6, 10));
        assert_eq!(n.isr_nodes(), vec![1, 2, 3]);
        let already = preferred_election(&rec(1, 10, &[(1, 10), (2, 20)]), &v);
        assert_eq!(already.unwrap_err().code, ELECTION_NOT_NEEDED);
        // Not in sync, or in sync in an older incarnation: refused.
        let out = preferred_election(&rec(2, 20, &[(2, 20), (3, 30)]), &v);
        assert_eq!(out.unwrap_err().code, PREFERRED_LEADER_NOT_AVAILABLE);
        let restarted = preferred_election(&rec(2, 20, &[(1, 9), (2, 20)]), &v);
        assert_eq!(restarted.unwrap_err().code, PREFERRED_LEADER_NOT_AVAILABLE);
        let leaving_first = preferred_election(&rec(2, 20, &[(1, 10), (2, 20)]), &leaving(v, 1));
        assert_eq!(leaving_first.unwrap_err().code, PREFERRED_LEADER_NOT_AVAILABLE);
    }

    #[test]
    fn the_seat_is_taken_up_again_only_under_the_lease_that_holds_it() {
        let seat = |node_id, lease| Stored {
            record: ControllerRecord { node_id, epoch: 4 },
            version: 100,
            create_revision: 100,
            lease,
        };
        assert!(still_ours(&seat(1, 77), 1, 77));
        assert!(!still_ours(&seat(1, 77), 1, 78), "an earlier incarnation's seat expires; wait for it");
        assert!(!still_ours(&seat(2, 77), 1, 77));
        assert!(!still_ours(&seat(1, 0), 1, 0), "unregistered");
    }

    #[test]
    fn a_healthy_partition_is_left_alone() {
        let v = view(&[(1, 10), (2, 20), (3, 30)]);
        assert_eq!(next_state(&rec(1, 10, &[(1, 10), (2, 20), (3, 30)]), &v, false, true), None);
    }

    #[test]
    fn a_dead_leader_is_replaced_from_the_isr_with_a_new_epoch() {
        let v = view(&[(2, 20), (3, 30)]);
        let n = next_state(&rec(1, 10, &[(1, 10), (2, 20), (3, 30)]), &v, false, false).unwrap();
        assert_eq!((n.leader, n.leader_incarnation, n.leader_epoch, n.partition_epoch), (2, 20, 6, 10));
        assert_eq!(n.isr_nodes(), vec![2, 3]);
    }

    #[test]
    fn a_restarted_leader_is_not_trusted_while_another_member_is_in_sync() {
        // Broker 1 came back with a new incarnation: it may have lost unflushed writes.
        let v = view(&[(1, 11), (2, 20), (3, 30)]);
        let n = next_state(&rec(1, 10, &[(1, 10), (2, 20)]), &v, false, false).unwrap();
        assert_eq!(n.leader, 2);
        assert_eq!(n.isr_nodes(), vec![2], "the restarted broker must catch up before it is in sync again");
    }

    #[test]
    fn the_last_isr_member_is_kept_and_elected_when_it_returns() {
        let v = view(&[(2, 20)]);
        let n = next_state(&rec(1, 10, &[(1, 10)]), &v, false, false).unwrap();
        assert_eq!((n.leader, n.isr_nodes()), (-1, vec![1]), "no in-sync replica: no leader, the ISR remembers 1");
        assert_eq!(next_state(&n, &v, false, false), None, "nothing changes until 1 returns");
        let back = view(&[(1, 12), (2, 20)]);
        let m = next_state(&n, &back, false, false).unwrap();
        assert_eq!((m.leader, m.leader_incarnation, m.isr_nodes()), (1, 12, vec![1]));
        // Unclean election takes the out-of-sync replica instead.
        let u = next_state(&n, &v, true, false).unwrap();
        assert_eq!(u.leader, 2);
    }

    #[test]
    fn dead_followers_leave_the_isr_and_the_preferred_leader_returns() {
        let v = view(&[(1, 10), (2, 20)]);
        let n = next_state(&rec(2, 20, &[(1, 10), (2, 20), (3, 30)]), &v, false, false).unwrap();
        assert_eq!((n.leader, n.isr_nodes()), (2, vec![1, 2]));
        let p = next_state(&n, &v, false, true).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (1, n.leader_epoch + 1), "1 is the preferred replica and in sync");
    }
}

//! Which role each replica on a shard plays, from its partition record and
//! this broker's incarnation:
//!
//! - leader: the record names this broker *and this incarnation* as leader.
//!   Before leading, the new epoch is made durable in the log's epoch cache;
//!   meanwhile the replica waits (requests get NOT_LEADER_OR_FOLLOWER and
//!   retry).
//! - follower: the record names another broker as leader; a fetcher task
//!   for that leader copies its log.
//! - waiting: no leader, or this broker is named but in an earlier
//!   incarnation (it restarted; the controller elects anew).
//!
//! Leadership that ends fails its parked acks=all produces at once.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use super::leader::LeaderState;
use super::{follower, isr};
use crate::shard::{Replica, ReplicaKey, Role, SharedShard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Lead { epoch: i32 },
    Follow { leader: i32, epoch: i32 },
    Wait,
}

fn wanted(r: &Replica, me: i32, incarnation: i64) -> Wanted {
    let rec = &r.record.record;
    if rec.leader == me && rec.leader_incarnation == incarnation {
        Wanted::Lead { epoch: rec.leader_epoch }
    } else if rec.leader >= 0 && rec.leader != me && rec.replicas.contains(&me) {
        Wanted::Follow { leader: rec.leader, epoch: rec.leader_epoch }
    } else {
        Wanted::Wait
    }
}

/// Ends a replica's leadership, if it has one: its waiters fail.
pub fn retire(r: &Replica, why: &str) {
    if let Role::Leader(l) = &r.role {
        l.borrow_mut().fail_all(why);
    }
}

/// Fires when dropped: the role an assignment asked for is in place (a new
/// leader's epoch is durable), so whoever waits on the assignment — topic
/// creation, a reassignment — answers only once the replica serves.
pub struct Settled(Option<tokio::sync::oneshot::Sender<()>>);

impl Settled {
    pub fn new(reply: tokio::sync::oneshot::Sender<()>) -> Self {
        Settled(Some(reply))
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            let _ = reply.send(());
        }
    }
}

/// Brings a replica's role in line with its record (after an assignment or
/// an open). `settled` is dropped once the role is in place.
pub fn apply(shard: &SharedShard, key: &ReplicaKey, settled: Settled) {
    let mut s = shard.borrow_mut();
    let (me, incarnation) = (s.cluster.node_id(), s.cluster.incarnation());
    let Some(r) = s.replicas.get_mut(key) else { return };
    let Some(log) = r.log().cloned() else { return };
    let want = wanted(r, me, incarnation);
    match (&r.role, want) {
        (Role::Leader(l), Wanted::Lead { epoch }) if l.borrow().epoch == epoch => {
            let mut l = l.borrow_mut();
            l.adopt(r.record.clone());
            l.min_insync_replicas = r.min_insync_replicas;
            l.advance(&log);
        }
        (_, Wanted::Lead { epoch }) => {
            retire(r, "leadership moved to a new epoch");
            r.role = Role::Waiting;
            log.set_replicated(r.record.record.replicas.len() > 1);
            let generation = r.generation;
            let (shard, key) = (shard.clone(), key.clone());
            drop(s);
            tokio_uring::spawn(async move {
                let _settled = settled;
                // The epoch is durable before the first batch of it is appended.
                if let Err(e) = log.become_leader(epoch).await {
                    tracing::error!(partition = %format!("{}-{}", key.0, key.1), "could not take leadership: {e}");
                    return;
                }
                let mut s = shard.borrow_mut();
                let (me, incarnation) = (s.cluster.node_id(), s.cluster.incarnation());
                let Some(r) = s.replicas.get_mut(&key).filter(|r| r.generation == generation) else { return };
                if wanted(r, me, incarnation) != (Wanted::Lead { epoch }) || !matches!(r.role, Role::Waiting) {
                    return; // superseded while the epoch was written
                }
                let mut state = LeaderState::new(me, r.record.clone(), r.min_insync_replicas, log.log_end_offset());
                state.advance(&log);
                tracing::debug!(partition = %format!("{}-{}", key.0, key.1), epoch, "leading");
                r.role = Role::Leader(Rc::new(RefCell::new(state)));
            });
        }
        (Role::Follower { leader, epoch }, Wanted::Follow { leader: l2, epoch: e2 })
            if *leader == l2 && *epoch == e2 => {}
        (_, Wanted::Follow { leader, epoch }) => {
            retire(r, "this broker follows now");
            r.role = Role::Follower { leader, epoch };
            log.set_replicated(true);
            ensure_fetcher(&mut s, shard, leader);
        }
        (_, Wanted::Wait) => {
            retire(r, "this broker no longer leads");
            r.role = Role::Waiting;
        }
    }
}

/// Starts (or wakes) the fetcher of `leader` on this shard.
fn ensure_fetcher(s: &mut crate::shard::Shard, shard: &SharedShard, leader: i32) {
    match s.fetchers.get(&leader) {
        Some(wake) => wake.notify_one(),
        None => {
            let wake = Rc::new(Notify::new());
            s.fetchers.insert(leader, wake.clone());
            tokio_uring::spawn(follower::run(shard.clone(), leader, wake));
        }
    }
}

/// Every 100 ms: followers that stopped catching up leave the ISR; and a
/// broker whose lease may have run out fails its parked acks=all produces
/// at once ("possibly written": another leader may be elected meanwhile)
/// rather than at their timeouts.
pub fn upkeep(shard: &SharedShard) {
    let s = shard.borrow();
    if !s.cluster.is_acting() {
        for r in s.replicas.values() {
            if let Role::Leader(l) = &r.role {
                l.borrow_mut().fail_all("this broker's lease may have run out");
            }
        }
        return;
    }
    let lag: Duration = s.replication.replica_lag_time_max;
    let incarnation = s.cluster.incarnation();
    let mut shrink = Vec::new();
    let mut stale = Vec::new();
    for (key, r) in &s.replicas {
        if let Role::Leader(l) = &r.role {
            if r.record.record.leader_incarnation != incarnation {
                // This broker registered again (its lease lapsed and a late
                // keep-alive failed): the leadership belonged to the earlier
                // incarnation, and the controller elects anew.
                stale.push(key.clone());
                continue;
            }
            let state = l.borrow();
            if state.isr_write_in_flight {
                continue;
            }
            let gone = state.lagging(lag);
            if !gone.is_empty() {
                shrink.push((key.clone(), l.clone(), gone));
            }
        }
    }
    drop(s);
    if !stale.is_empty() {
        let mut s = shard.borrow_mut();
        for key in stale {
            if let Some(r) = s.replicas.get_mut(&key) {
                retire(r, "this broker registered again; the leadership was its earlier incarnation's");
                r.role = Role::Waiting;
            }
        }
    }
    for (key, l, gone) in shrink {
        isr::shrink(shard, key, l, gone);
    }
}

/// The shard still wants this fetcher (some replica follows `leader`).
pub fn follows(s: &crate::shard::Shard, leader: i32) -> bool {
    s.replicas.values().any(|r| matches!(r.role, Role::Follower { leader: l, .. } if l == leader))
}

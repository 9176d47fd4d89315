//! Where partitions and groups live: which brokers hold a partition's
//! replicas and on which of their shards (cores), who leads it, which broker
//! coordinates a group and on which shard. The router, the group coordinator
//! and the controller all ask here, so there is one answer.
//!
//! New replicas go where the load is lowest, counted per broker *and* per
//! shard: a broker's cores each own their partitions outright (no locks), so a
//! broker whose leaders all sit on one core uses one core. Leaders are spread
//! first (they take the produce and fetch traffic), then replicas.

use std::collections::BTreeMap;

use laminar_coord::cluster::{group_slot, keys::fnv1a, ClusterView, PartitionRecord};

/// One live broker's load, as placement counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLoad {
    pub node: i32,
    pub rack: Option<String>,
    /// Replicas it may still take (its file budget).
    pub capacity_left: u32,
    pub leaders: u32,
    pub replicas: u32,
    /// Per shard: (leaders, replicas).
    pub per_shard: Vec<(u32, u32)>,
}

impl BrokerLoad {
    /// The shard a new replica should go to: fewest leaders (for a leader) or
    /// fewest replicas (for a follower) first.
    pub fn best_shard(&self, leader: bool) -> u16 {
        let key = |(i, (l, r)): (usize, &(u32, u32))| if leader { (*l, *r, i) } else { (*r, *l, i) };
        self.per_shard.iter().enumerate().min_by_key(|x| key(*x)).map_or(0, |(i, _)| i as u16)
    }

    pub fn add(&mut self, shard: u16, leader: bool) {
        self.replicas += 1;
        self.capacity_left = self.capacity_left.saturating_sub(1);
        let s = &mut self.per_shard[shard as usize];
        s.1 += 1;
        if leader {
            self.leaders += 1;
            s.0 += 1;
        }
    }
}

/// Every live broker's load in `view`.
pub fn loads(view: &ClusterView) -> BTreeMap<i32, BrokerLoad> {
    let mut out: BTreeMap<i32, BrokerLoad> = view
        .brokers
        .iter()
        .map(|(&node, b)| {
            let r = &b.record;
            let load = BrokerLoad {
                node,
                rack: r.rack.clone(),
                // A broker shutting down takes no new replicas.
                capacity_left: if r.shutting_down { 0 } else { r.partition_capacity },
                leaders: 0,
                replicas: 0,
                per_shard: vec![(0, 0); r.shards.max(1) as usize],
            };
            (node, load)
        })
        .collect();
    for t in view.topics.values() {
        for p in t.partitions.iter().flatten() {
            let rec = &p.record;
            for (i, node) in rec.replicas.iter().enumerate() {
                if let Some(l) = out.get_mut(node) {
                    let shard = rec.shards.get(i).copied().unwrap_or(0) as usize % l.per_shard.len();
                    l.add(shard as u16, rec.leader == *node);
                }
            }
        }
    }
    out
}

/// Replicas (preferred leader first) and their shards for one new partition,
/// or `None` if fewer than `replication_factor` brokers have room. Updates
/// `loads` so the next call sees this placement.
pub fn place(loads: &mut BTreeMap<i32, BrokerLoad>, replication_factor: usize) -> Option<(Vec<i32>, Vec<u16>)> {
    let candidates: Vec<i32> = loads.values().filter(|l| l.capacity_left > 0).map(|l| l.node).collect();
    if candidates.len() < replication_factor || replication_factor == 0 {
        return None;
    }
    let leader = *candidates.iter().min_by_key(|n| {
        let l = &loads[n];
        (l.leaders, l.replicas, **n)
    })?;
    let mut replicas = vec![leader];
    let mut racks: Vec<Option<String>> = vec![loads[&leader].rack.clone()];
    while replicas.len() < replication_factor {
        let next = *candidates.iter().filter(|n| !replicas.contains(n)).min_by_key(|n| {
            let l = &loads[n];
            // Prefer a rack not used yet (when racks are given), then the emptiest broker.
            let rack_used = l.rack.is_some() && racks.contains(&l.rack);
            (rack_used, l.replicas, l.leaders, **n)
        })?;
        racks.push(loads[&next].rack.clone());
        replicas.push(next);
    }
    let mut shards = Vec::with_capacity(replicas.len());
    for (i, node) in replicas.iter().enumerate() {
        let l = loads.get_mut(node).expect("candidate");
        let shard = l.best_shard(i == 0);
        l.add(shard, i == 0);
        shards.push(shard);
    }
    Some((replicas, shards))
}

/// Shards for a partition whose brokers were chosen by hand (a manual
/// assignment): on each broker the shard `place` would pick, fewest leaders
/// for the preferred leader (the first), fewest replicas for the others.
/// `None` if one of the brokers is not live. Updates `loads`.
pub fn place_on(loads: &mut BTreeMap<i32, BrokerLoad>, replicas: &[i32]) -> Option<Vec<u16>> {
    if replicas.is_empty() || replicas.iter().any(|n| !loads.contains_key(n)) {
        return None;
    }
    let shards = replicas
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let l = loads.get_mut(node).expect("checked");
            let shard = l.best_shard(i == 0);
            l.add(shard, i == 0);
            shard
        })
        .collect();
    Some(shards)
}

/// The shard of this broker (`me`, with `shards` shards) holding its replica
/// of a partition, if it holds one. A broker restarted with fewer shards maps
/// the stored shard onto the ones it has.
pub fn local_shard(rec: &PartitionRecord, me: i32, shards: usize) -> Option<usize> {
    rec.shard_of(me).map(|s| s as usize % shards.max(1))
}

/// The broker that coordinates `group` (its slot's owner), if any.
pub fn coordinator(view: &ClusterView, group: &str) -> Option<i32> {
    view.coordinator(group_slot(group)).map(|c| c.record.node_id)
}

/// The shard of the coordinating broker that holds `group`.
pub fn group_shard(group: &str, shards: usize) -> usize {
    (fnv1a(format!("group:{group}").as_bytes()) % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node: i32, rack: Option<&str>, shards: usize) -> BrokerLoad {
        BrokerLoad {
            node,
            rack: rack.map(String::from),
            capacity_left: 1000,
            leaders: 0,
            replicas: 0,
            per_shard: vec![(0, 0); shards],
        }
    }

    #[test]
    fn leaders_and_replicas_spread_over_brokers_and_shards() {
        let mut loads: BTreeMap<i32, BrokerLoad> = [1, 2, 3].into_iter().map(|n| (n, broker(n, None, 2))).collect();
        for _ in 0..60 {
            let (replicas, shards) = place(&mut loads, 3).unwrap();
            assert_eq!(replicas.len(), 3);
            assert!(replicas.iter().all(|r| [1, 2, 3].contains(r)));
            assert!(shards.iter().all(|s| *s < 2));
        }
        for l in loads.values() {
            assert_eq!(l.leaders, 20, "{l:?}");
            assert_eq!(l.replicas, 60);
            assert_eq!(l.per_shard.iter().map(|s| s.0).collect::<Vec<_>>(), vec![10, 10], "leaders per core: {l:?}");
        }
    }

    #[test]
    fn racks_are_spread_and_capacity_is_respected() {
        let mut loads: BTreeMap<i32, BrokerLoad> =
            [(1, "a"), (2, "a"), (3, "b")].into_iter().map(|(n, r)| (n, broker(n, Some(r), 1))).collect();
        for _ in 0..10 {
            let (replicas, _) = place(&mut loads, 2).unwrap();
            let racks: Vec<_> = replicas.iter().map(|n| loads[n].rack.clone()).collect();
            assert_ne!(racks[0], racks[1], "two replicas never share a rack while another rack exists");
        }
        loads.get_mut(&3).unwrap().capacity_left = 0;
        loads.get_mut(&2).unwrap().capacity_left = 0;
        assert!(place(&mut loads, 2).is_none(), "only one broker has room");
        assert!(place(&mut loads, 1).is_some());
    }

    #[test]
    fn manual_assignments_get_the_least_loaded_shard_of_each_broker() {
        let mut loads: BTreeMap<i32, BrokerLoad> = [1, 2].into_iter().map(|n| (n, broker(n, None, 2))).collect();
        loads.get_mut(&1).unwrap().add(0, true);
        loads.get_mut(&2).unwrap().add(1, false);
        // Broker 1 leads: its shard with fewer leaders (1); broker 2 follows:
        // its shard with fewer replicas (0).
        assert_eq!(place_on(&mut loads, &[1, 2]), Some(vec![1, 0]));
        assert_eq!(loads[&1].per_shard, vec![(1, 1), (1, 1)]);
        assert_eq!(place_on(&mut loads, &[2, 3]), None, "broker 3 is not live");
        assert_eq!(place_on(&mut loads, &[]), None);
    }

    #[test]
    fn local_shards_fold_onto_fewer_cores() {
        let rec = PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            replicas: vec![1, 2],
            shards: vec![3, 1],
            leader: 1,
            leader_epoch: 0,
            leader_incarnation: 0,
            isr: vec![],
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        };
        assert_eq!(local_shard(&rec, 1, 4), Some(3));
        assert_eq!(local_shard(&rec, 1, 2), Some(1));
        assert_eq!(local_shard(&rec, 9, 2), None);
    }
}

//! Who holds and leads what, in one shape whichever way it was read: from
//! the cluster's records (etcd: shards, incarnations, brokers leaving) or
//! from a broker's Metadata (no shards). `leader rebalance`, `partition
//! reassign plan` and `broker decommission` plan on it, and wait on fresh
//! ones.

use std::collections::BTreeMap;

use laminar_client::ClusterMetadata;
use laminar_coord::cluster::ClusterView;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::status::{in_sync_live, leader_live};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Shard (core) count; `None` when read from Metadata.
    pub shards: Option<u16>,
    /// Shutting down (controlled shutdown): takes no leadership or replicas.
    pub leaving: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub topic: String,
    pub partition: i32,
    /// Preferred leader first; during a reassignment, target then leaving.
    pub replicas: Vec<i32>,
    /// Parallel to `replicas`; `None` when read from Metadata.
    pub shards: Option<Vec<u16>>,
    /// -1 when none, or when the recorded leader is not alive.
    pub leader: i32,
    /// ISR members alive (in the incarnation they are in sync in, with etcd).
    pub in_sync: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Part {
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas once a reassignment in progress completes (all of them
    /// when none is).
    pub fn target(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }

    pub fn shard_of(&self, node: i32) -> Option<u16> {
        let i = self.replicas.iter().position(|&r| r == node)?;
        self.shards.as_ref().map(|s| s.get(i).copied().unwrap_or(0))
    }

    pub fn under_replicated(&self) -> bool {
        self.replicas.iter().any(|r| !self.in_sync.contains(r))
    }

    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// Reassignments in progress: (topic, partition) → (adding, removing).
pub type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>)>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Live (registered) brokers.
    pub brokers: BTreeMap<i32, Broker>,
    /// Sorted by topic, then partition. Partitions not placed yet are left out.
    pub parts: Vec<Part>,
    /// Read from the cluster's records (shards known).
    pub from_records: bool,
}

impl Snapshot {
    pub fn from_view(view: &ClusterView) -> Snapshot {
        let brokers = view
            .brokers
            .iter()
            .map(|(&n, b)| (n, Broker { shards: Some(b.record.shards.max(1)), leaving: b.record.shutting_down }))
            .collect();
        let mut parts = Vec::new();
        for name in view.topic_names() {
            let t = &view.topics[&name];
            for p in 0..t.partition_count() {
                let Some(stored) = t.partition(p) else { continue };
                let r = &stored.record;
                parts.push(Part {
                    topic: name.clone(),
                    partition: p,
                    replicas: r.replicas.clone(),
                    shards: Some(r.replicas.iter().map(|&n| r.shard_of(n).unwrap_or(0)).collect()),
                    leader: if leader_live(r, view) { r.leader } else { -1 },
                    in_sync: in_sync_live(r, view),
                    adding: r.adding.clone(),
                    removing: r.removing.clone(),
                });
            }
        }
        Snapshot { brokers, parts, from_records: true }
    }

    /// From Metadata: reassignments in progress come from
    /// ListPartitionReassignments (`ongoing`: topic, partition → adding, removing).
    pub fn from_metadata(md: &ClusterMetadata, ongoing: &Ongoing) -> Snapshot {
        let brokers: BTreeMap<i32, Broker> =
            md.brokers.iter().map(|b| (b.node_id, Broker { shards: None, leaving: false })).collect();
        let mut parts = Vec::new();
        let mut topics: Vec<_> = md.topics.iter().filter(|t| t.error_code == 0).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for t in topics {
            let mut ps: Vec<_> = t.partitions.iter().collect();
            ps.sort_by_key(|p| p.partition);
            for p in ps {
                let (adding, removing) = ongoing.get(&(t.name.clone(), p.partition)).cloned().unwrap_or_default();
                parts.push(Part {
                    topic: t.name.clone(),
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                    shards: None,
                    leader: if brokers.contains_key(&p.leader) { p.leader } else { -1 },
                    in_sync: p.isr.iter().copied().filter(|n| brokers.contains_key(n)).collect(),
                    adding,
                    removing,
                });
            }
        }
        Snapshot { brokers, parts, from_records: false }
    }

    /// The broker can take leadership and new replicas.
    pub fn usable(&self, node: i32) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.leaving)
    }

    /// Replicas that could lead `p` now: in sync, alive, not leaving.
    pub fn eligible_leaders(&self, p: &Part) -> Vec<i32> {
        p.replicas.iter().copied().filter(|r| p.in_sync.contains(r) && self.usable(*r)).collect()
    }

    /// Leaders per broker and, with shards known, per (broker, shard).
    pub fn leader_loads(&self, leaders: impl Iterator<Item = (usize, i32)>) -> Loads {
        let mut loads = Loads::default();
        for (&n, b) in &self.brokers {
            loads.per_broker.insert(n, 0);
            for s in 0..b.shards.unwrap_or(1) {
                loads.per_shard.insert((n, s), 0);
            }
        }
        for (i, leader) in leaders {
            if leader < 0 {
                continue;
            }
            *loads.per_broker.entry(leader).or_default() += 1;
            let shard = self.parts[i].shard_of(leader).unwrap_or(0);
            *loads.per_shard.entry((leader, shard)).or_default() += 1;
        }
        loads
    }
}

/// Leader counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loads {
    pub per_broker: BTreeMap<i32, i64>,
    pub per_shard: BTreeMap<(i32, u16), i64>,
}

/// The current picture: from the store when `--etcd` or `--data-dir` was
/// given, else from a broker's Metadata and ListPartitionReassignments.
pub async fn take(ctx: &Ctx, command: &str) -> Result<Snapshot> {
    if let Some(store) = ctx.store_if_given(command).await? {
        return Ok(Snapshot::from_view(&store.view().await?));
    }
    let kafka = ctx.kafka().await?;
    let md = kafka.metadata(None).await?;
    let ongoing = kafka.ongoing_reassignments().await?;
    Ok(Snapshot::from_metadata(&md, &ongoing))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A snapshot of live brokers `(node, shards)` and partitions
    /// `(replicas, shards, leader)`, every replica in sync.
    pub fn snap(brokers: &[(i32, u16)], parts: &[(&[i32], &[u16], i32)]) -> Snapshot {
        Snapshot {
            brokers: brokers.iter().map(|&(n, s)| (n, Broker { shards: Some(s), leaving: false })).collect(),
            parts: parts
                .iter()
                .enumerate()
                .map(|(i, (r, s, l))| Part {
                    topic: "t".into(),
                    partition: i as i32,
                    replicas: r.to_vec(),
                    shards: Some(s.to_vec()),
                    leader: *l,
                    in_sync: r.to_vec(),
                    adding: vec![],
                    removing: vec![],
                })
                .collect(),
            from_records: true,
        }
    }

    #[test]
    fn loads_count_leaders_per_broker_and_shard() {
        let s = snap(&[(1, 2), (2, 2)], &[(&[1, 2], &[0, 1], 1), (&[2, 1], &[1, 1], 2), (&[1, 2], &[1, 0], 1)]);
        let l = s.leader_loads(s.parts.iter().enumerate().map(|(i, p)| (i, p.leader)));
        assert_eq!(l.per_broker, [(1, 2), (2, 1)].into());
        assert_eq!(l.per_shard, [((1, 0), 1), ((1, 1), 1), ((2, 0), 0), ((2, 1), 1)].into());
        assert_eq!(s.eligible_leaders(&s.parts[0]), vec![1, 2]);
    }
}

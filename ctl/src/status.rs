//! `cluster status`: the cluster as its records say (brokers and their
//! leases, the controller, every partition's leader, replicas and ISR),
//! summed up per broker and per shard, with the partitions that need an
//! operator's eye. Reads etcd (or a stopped single node's store) only, so
//! it works with every broker down. Without either it shows what the
//! brokers' Metadata says instead.

use std::collections::{BTreeMap, BTreeSet};

use laminar_client::ClusterMetadata;
use laminar_coord::cluster::{ClusterView, PartitionRecord};
use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::output::{ids, opt, Report, Table};
use crate::store::listener;
use crate::time;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    /// `etcd`, `embedded` (a stopped single node's store) or `kafka`
    /// (Metadata): what the rest was read from.
    pub source: &'static str,
    /// The etcd revision read at.
    pub revision: Option<u64>,
    pub controller: Option<i32>,
    pub controller_epoch: Option<u64>,
    pub brokers: Vec<BrokerStatus>,
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: Vec<PartitionProblem>,
    pub offline: Vec<PartitionProblem>,
    pub reassigning: Vec<PartitionProblem>,
    /// Records that did not parse: key and reason.
    pub unreadable: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerStatus {
    pub node: i32,
    /// `alive` (registered: its lease lives), `leaving` (registered and
    /// shutting down: handing over its leaderships) or `down` (named by
    /// partition records, not registered).
    pub state: &'static str,
    /// The lease id, which is the broker's incarnation.
    pub incarnation: Option<i64>,
    pub listener: Option<String>,
    pub rack: Option<String>,
    pub shards: Option<u16>,
    pub started_ms: Option<u64>,
    pub build: Option<String>,
    pub leaders: u32,
    pub replicas: u32,
    /// Per shard; empty when shards are unknown (no etcd, or down).
    pub per_shard: Vec<ShardLoad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardLoad {
    pub shard: u16,
    pub leaders: u32,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionProblem {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    /// ISR members in sync in their live incarnation (etcd), or the ISR (Metadata).
    pub in_sync: Vec<i32>,
    pub reason: String,
}

/// ISR members still in sync: registered, in the incarnation they were in
/// sync in (a restarted broker is not, whatever its id).
pub fn in_sync_live(rec: &PartitionRecord, view: &ClusterView) -> Vec<i32> {
    rec.isr.iter().filter(|m| view.incarnation(m.node) == Some(m.incarnation)).map(|m| m.node).collect()
}

/// Whether the leader can serve: registered in the incarnation it was elected in.
pub fn leader_live(rec: &PartitionRecord, view: &ClusterView) -> bool {
    rec.leader >= 0 && view.incarnation(rec.leader) == Some(rec.leader_incarnation)
}

pub fn from_view(view: &ClusterView, source: &'static str) -> ClusterStatus {
    let mut brokers: BTreeMap<i32, BrokerStatus> = BTreeMap::new();
    for (&node, b) in &view.brokers {
        let r = &b.record;
        brokers.insert(
            node,
            BrokerStatus {
                node,
                state: if r.shutting_down { "leaving" } else { "alive" },
                incarnation: Some(b.lease),
                listener: Some(listener(&r.host, r.port)),
                rack: r.rack.clone(),
                shards: Some(r.shards),
                started_ms: Some(r.started_ms),
                build: Some(r.build.clone()).filter(|b| !b.is_empty()),
                leaders: 0,
                replicas: 0,
                per_shard: (0..r.shards.max(1)).map(|shard| ShardLoad { shard, leaders: 0, replicas: 0 }).collect(),
            },
        );
    }
    let mut st = ClusterStatus {
        source,
        revision: Some(view.revision),
        controller: view.controller_id(),
        controller_epoch: Some(view.controller_epoch),
        brokers: Vec::new(),
        topics: view.topics.len(),
        partitions: 0,
        under_replicated: Vec::new(),
        offline: Vec::new(),
        reassigning: Vec::new(),
        unreadable: view.unreadable.clone(),
    };
    for name in view.topic_names() {
        let t = &view.topics[&name];
        for p in 0..t.partition_count() {
            st.partitions += 1;
            let Some(stored) = t.partition(p) else {
                st.offline.push(PartitionProblem {
                    topic: name.clone(),
                    partition: p,
                    leader: -1,
                    replicas: vec![],
                    in_sync: vec![],
                    reason: "not placed yet (the controller places it on live brokers)".into(),
                });
                continue;
            };
            let rec = &stored.record;
            for (i, &node) in rec.replicas.iter().enumerate() {
                let b = brokers.entry(node).or_insert_with(|| down(node));
                b.replicas += 1;
                let leads = rec.leader == node;
                if leads {
                    b.leaders += 1;
                }
                let shard = rec.shards.get(i).copied().unwrap_or(0);
                if let Some(s) = b.per_shard.iter_mut().find(|s| s.shard == shard) {
                    s.replicas += 1;
                    if leads {
                        s.leaders += 1;
                    }
                }
            }
            let in_sync = in_sync_live(rec, view);
            let problem = |reason: String| PartitionProblem {
                topic: name.clone(),
                partition: p,
                leader: rec.leader,
                replicas: rec.replicas.clone(),
                in_sync: in_sync.clone(),
                reason,
            };
            if !leader_live(rec, view) {
                let reason = if rec.leader < 0 {
                    "no leader: no in-sync replica is alive".to_string()
                } else {
                    format!("leader {} is not alive in the incarnation it was elected in", rec.leader)
                };
                st.offline.push(problem(reason));
            }
            if in_sync.len() < rec.replicas.len() {
                let missing: Vec<i32> = rec.replicas.iter().copied().filter(|r| !in_sync.contains(r)).collect();
                st.under_replicated.push(problem(format!("not in sync: {}", ids(&missing))));
            }
            if !rec.adding.is_empty() || !rec.removing.is_empty() {
                st.reassigning.push(problem(format!("adding {}, removing {}", ids(&rec.adding), ids(&rec.removing))));
            }
        }
    }
    st.brokers = brokers.into_values().collect();
    st
}

fn down(node: i32) -> BrokerStatus {
    BrokerStatus {
        node,
        state: "down",
        incarnation: None,
        listener: None,
        rack: None,
        shards: None,
        started_ms: None,
        build: None,
        leaders: 0,
        replicas: 0,
        per_shard: Vec::new(),
    }
}

/// The same picture from a broker's Metadata: no leases, shards or
/// controller epoch, and the ISR as the broker reports it.
pub fn from_metadata(md: &ClusterMetadata) -> ClusterStatus {
    let mut brokers: BTreeMap<i32, BrokerStatus> = md
        .brokers
        .iter()
        .map(|b| {
            let mut s = down(b.node_id);
            s.state = "alive";
            s.listener = Some(b.address());
            s.rack = b.rack.clone();
            (b.node_id, s)
        })
        .collect();
    let mut st = ClusterStatus {
        source: "kafka",
        revision: None,
        controller: (md.controller_id >= 0).then_some(md.controller_id),
        controller_epoch: None,
        brokers: Vec::new(),
        topics: md.topics.len(),
        partitions: 0,
        under_replicated: Vec::new(),
        offline: Vec::new(),
        reassigning: Vec::new(),
        unreadable: Vec::new(),
    };
    let live: BTreeSet<i32> = brokers.keys().copied().collect();
    let mut topics: Vec<_> = md.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        for p in &t.partitions {
            st.partitions += 1;
            for &node in &p.replicas {
                let b = brokers.entry(node).or_insert_with(|| down(node));
                b.replicas += 1;
                if p.leader == node {
                    b.leaders += 1;
                }
            }
            let problem = |reason: String| PartitionProblem {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas.clone(),
                in_sync: p.isr.clone(),
                reason,
            };
            if p.leader < 0 || !live.contains(&p.leader) {
                st.offline.push(problem("no live leader".into()));
            }
            if p.isr.len() < p.replicas.len() {
                let missing: Vec<i32> = p.replicas.iter().copied().filter(|r| !p.isr.contains(r)).collect();
                st.under_replicated.push(problem(format!("not in sync: {}", ids(&missing))));
            }
        }
    }
    st.brokers = brokers.into_values().collect();
    st
}

pub fn render(st: &ClusterStatus) -> Report {
    let mut r = Report::new(st);
    let alive = st.brokers.iter().filter(|b| b.state != "down").count();
    let source = match st.source {
        "etcd" => format!("etcd, revision {}", opt(st.revision)),
        "embedded" => format!("the stopped broker's embedded store, revision {}", opt(st.revision)),
        _ => "broker Metadata (no --etcd: no leases, shards or controller epoch)".to_string(),
    };
    r.line(format!("source: {source}"));
    let controller = match (st.controller, st.controller_epoch) {
        (Some(c), Some(e)) => format!("node {c}, epoch {e}"),
        (Some(c), None) => format!("node {c}"),
        (None, Some(e)) => format!("none (an election is due; last epoch {e})"),
        (None, None) => "unknown".into(),
    };
    r.line(format!("controller: {controller}"));
    if st.source == "embedded" {
        r.line("(the broker is stopped: it and its partitions show as down and offline until it starts)");
    }
    r.line(format!(
        "brokers: {alive} alive, {} down; topics: {}; partitions: {}; under-replicated: {}; offline: {}; reassigning: {}",
        st.brokers.len() - alive,
        st.topics,
        st.partitions,
        st.under_replicated.len(),
        st.offline.len(),
        st.reassigning.len()
    ));
    r.line("");
    let mut t =
        Table::new(&["NODE", "STATE", "INCARNATION", "LISTENER", "RACK", "SHARDS", "LEADERS", "REPLICAS", "STARTED"]);
    for b in &st.brokers {
        t.row(vec![
            b.node.to_string(),
            b.state.to_string(),
            opt(b.incarnation),
            opt(b.listener.clone()),
            opt(b.rack.clone()),
            opt(b.shards),
            b.leaders.to_string(),
            b.replicas.to_string(),
            opt(b.started_ms.filter(|&ms| ms > 0).map(|ms| time::format_utc(ms as i64))),
        ]);
    }
    r.table(t);
    if st.brokers.iter().any(|b| !b.per_shard.is_empty()) {
        r.line("");
        r.table(shard_table(st.brokers.iter().map(|b| (b.node, b.per_shard.as_slice()))));
    }
    problems(&mut r, "under-replicated partitions", &st.under_replicated);
    problems(&mut r, "offline partitions", &st.offline);
    problems(&mut r, "reassignments in progress", &st.reassigning);
    if !st.unreadable.is_empty() {
        r.line("");
        r.line(format!("unreadable records: {}", st.unreadable.len()));
        let mut t = Table::new(&["KEY", "REASON"]);
        for (k, why) in &st.unreadable {
            t.row(vec![k.clone(), why.clone()]);
        }
        r.table(t);
    }
    r
}

/// NODE SHARD LEADERS REPLICAS, one row per shard.
pub fn shard_table<'a>(brokers: impl Iterator<Item = (i32, &'a [ShardLoad])>) -> Table {
    let mut t = Table::new(&["NODE", "SHARD", "LEADERS", "REPLICAS"]);
    for (node, shards) in brokers {
        for s in shards {
            t.row(vec![node.to_string(), s.shard.to_string(), s.leaders.to_string(), s.replicas.to_string()]);
        }
    }
    t
}

fn problems(r: &mut Report, title: &str, list: &[PartitionProblem]) {
    r.line("");
    if list.is_empty() {
        r.line(format!("{title}: none"));
        return;
    }
    r.line(format!("{title}: {}", list.len()));
    let mut t = Table::new(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "IN-SYNC", "WHY"]);
    for p in list {
        t.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.leader.to_string(),
            ids(&p.replicas),
            ids(&p.in_sync),
            p.reason.clone(),
        ]);
    }
    r.table(t);
}

pub async fn run(ctx: &Ctx) -> Result<Report> {
    if let Some(store) = ctx.store_if_given("cluster status").await? {
        let view = store.view().await?;
        return Ok(render(&from_view(&view, if store.is_etcd() { "etcd" } else { "embedded" })));
    }
    let md = ctx.kafka().await?.metadata(None).await?;
    Ok(render(&from_metadata(&md)))
}

#[cfg(test)]
pub mod tests {
    use std::sync::Arc;

    use laminar_coord::cluster::records::{to_json, BrokerRecord, TopicRecord};
    use laminar_coord::cluster::{IsrMember, Keys, Stored};
    use laminar_coord::{Versioned, WatchItem};

    use super::*;

    /// A view with live brokers `(node, lease, shards)` and topics of
    /// partition records.
    pub fn view(live: &[(i32, i64, u16)], topics: &[(&str, Vec<PartitionRecord>)]) -> ClusterView {
        let k = Keys::new("/laminar");
        let mut entries = Vec::new();
        let mut rev = 1;
        for (name, parts) in topics {
            let id = parts.first().map_or(uuid::Uuid::nil(), |p| p.topic_id);
            let t = TopicRecord {
                id,
                partitions: parts.len() as i32,
                replication_factor: parts.first().map_or(1, |p| p.replicas.len() as i16),
                configs: Default::default(),
                assignments: Default::default(),
            };
            entries.push((k.topic(name), Versioned::new(to_json(&t), rev)));
            rev += 1;
            for (i, p) in parts.iter().enumerate() {
                entries.push((k.partition(name, i as i32), Versioned::new(to_json(p), rev)));
                rev += 1;
            }
        }
        let mut v = ClusterView::empty().apply(&k, &WatchItem::Reset { revision: rev, entries });
        for &(node, lease, shards) in live {
            let record = BrokerRecord {
                node_id: node,
                host: "127.0.0.1".into(),
                port: 9000 + node as u16,
                rack: None,
                shards,
                started_ms: 0,
                data_dir_id: String::new(),
                partition_capacity: 1000,
                build: String::new(),
                shutting_down: false,
                listeners: Vec::new(),
            };
            v.brokers.insert(node, Arc::new(Stored { record, version: 1, create_revision: 1, lease }));
        }
        v
    }

    pub fn part(
        topic_id: uuid::Uuid,
        replicas: &[i32],
        shards: &[u16],
        leader: i32,
        isr: &[(i32, i64)],
    ) -> PartitionRecord {
        let leader_incarnation = isr.iter().find(|m| m.0 == leader).map_or(0, |m| m.1);
        PartitionRecord {
            topic_id,
            replicas: replicas.to_vec(),
            shards: shards.to_vec(),
            leader,
            leader_epoch: 3,
            leader_incarnation,
            isr: isr.iter().map(|&(node, incarnation)| IsrMember { node, incarnation }).collect(),
            partition_epoch: 5,
            adding: vec![],
            removing: vec![],
        }
    }

    #[test]
    fn counts_per_broker_and_shard_and_finds_problems() {
        let id = uuid::Uuid::new_v4();
        let v = view(
            &[(1, 10, 2), (2, 20, 2)],
            &[(
                "t",
                vec![
                    part(id, &[1, 2], &[0, 1], 1, &[(1, 10), (2, 20)]),
                    // Broker 3 is down: the partition is under-replicated.
                    part(id, &[2, 3], &[1, 0], 2, &[(2, 20), (3, 30)]),
                    // Its only in-sync replica restarted (lease 11, not 10): offline.
                    part(id, &[1], &[1], 1, &[(1, 11)]),
                ],
            )],
        );
        let st = from_view(&v, "etcd");
        assert_eq!(st.partitions, 3);
        let b: Vec<(i32, &str, u32, u32)> =
            st.brokers.iter().map(|b| (b.node, b.state, b.leaders, b.replicas)).collect();
        assert_eq!(b, vec![(1, "alive", 2, 2), (2, "alive", 1, 2), (3, "down", 0, 1)]);
        assert_eq!(
            st.brokers[0].per_shard,
            vec![ShardLoad { shard: 0, leaders: 1, replicas: 1 }, ShardLoad { shard: 1, leaders: 1, replicas: 1 }]
        );
        assert_eq!(st.under_replicated.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(st.offline.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![2]);
        assert_eq!(st.under_replicated[0].in_sync, vec![2]);
        let text = render(&st).render(crate::output::Format::Table);
        assert!(text.contains("under-replicated partitions: 2"), "{text}");
        assert!(text.contains("offline partitions: 1"), "{text}");
        assert!(text.contains("reassignments in progress: none"), "{text}");
    }
}

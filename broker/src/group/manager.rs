//! The groups one shard coordinates: membership state machines, committed
//! offsets, and the timer that expires sessions and ends rebalances.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::offsets::{self, GroupOffsets, OffsetWriter};
use super::state::{Group, GroupState, GroupTiming};
use super::{CommitArgs, GroupDescription, GroupMsg};
use crate::errors;

/// How often session timeouts and rebalance deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);

pub struct GroupManager {
    groups: HashMap<String, Group>,
    offsets: HashMap<String, GroupOffsets>,
    timing: GroupTiming,
    writer: OffsetWriter,
}

pub type SharedGroups = Rc<RefCell<GroupManager>>;

impl GroupManager {
    pub fn new(timing: GroupTiming, writer: OffsetWriter, offsets: HashMap<String, GroupOffsets>) -> Self {
        GroupManager { groups: HashMap::new(), offsets, timing, writer }
    }

    fn group_mut(&mut self, id: &str) -> &mut Group {
        let timing = self.timing;
        self.groups.entry(id.to_string()).or_insert_with(|| Group::new(id.to_string(), timing))
    }

    pub fn tick(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            g.tick(now);
        }
        // Forget groups with no members and no offsets (Kafka's Dead).
        let offsets = &self.offsets;
        self.groups.retain(|id, g| !(g.is_empty() && g.state() == GroupState::Empty && !offsets.contains_key(id)));
    }
}

/// Handles one message on the owning shard.
pub fn handle(mgr: &SharedGroups, msg: GroupMsg) {
    let now = Instant::now();
    match msg {
        GroupMsg::Join { args, reply } => {
            let group = args.group.clone();
            mgr.borrow_mut().group_mut(&group).join(args, now, reply);
        }
        GroupMsg::Sync { args, reply } => {
            let mut m = mgr.borrow_mut();
            match m.groups.get_mut(&args.group) {
                Some(g) => g.sync(args, now, reply),
                None => {
                    let _ = reply.send(super::SyncResult { error: errors::UNKNOWN_MEMBER_ID, ..Default::default() });
                }
            }
        }
        GroupMsg::Heartbeat { group, generation, member_id, instance_id, reply } => {
            let code = match mgr.borrow_mut().groups.get_mut(&group) {
                Some(g) => g.heartbeat(&member_id, instance_id.as_deref(), generation, now),
                None => errors::UNKNOWN_MEMBER_ID,
            };
            let _ = reply.send(code);
        }
        GroupMsg::Leave { group, members, reply } => {
            let r = match mgr.borrow_mut().groups.get_mut(&group) {
                Some(g) => Ok(members.iter().map(|(id, inst)| g.leave(id, inst.as_deref(), now)).collect()),
                None => Err(errors::UNKNOWN_MEMBER_ID),
            };
            let _ = reply.send(r);
        }
        GroupMsg::Commit { args, reply } => commit(mgr, args, now, reply),
        GroupMsg::Fetch { group, topics, reply } => {
            let m = mgr.borrow();
            let committed = m.offsets.get(&group);
            let out = match topics {
                Some(topics) => topics
                    .into_iter()
                    .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)).collect::<Vec<_>>())
                    .map(|(t, p)| {
                        let c = committed.and_then(|c| c.get(&(t.clone(), p)).cloned());
                        (t, p, c)
                    })
                    .collect(),
                None => {
                    let mut all: Vec<_> = committed
                        .map(|c| c.iter().map(|((t, p), c)| (t.clone(), *p, Some(c.clone()))).collect())
                        .unwrap_or_default();
                    all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                    all
                }
            };
            let _ = reply.send(out);
        }
        GroupMsg::Describe { group, reply } => {
            let m = mgr.borrow();
            let d = match m.groups.get(&group) {
                Some(g) => g.describe(),
                None if m.offsets.contains_key(&group) => {
                    GroupDescription { state: GroupState::Empty.name(), ..Default::default() }
                }
                None => GroupDescription { state: "Dead", ..Default::default() },
            };
            let _ = reply.send(d);
        }
        GroupMsg::List { reply } => {
            let m = mgr.borrow();
            let mut ids: HashSet<&String> = m.groups.keys().collect();
            ids.extend(m.offsets.keys());
            let out = ids
                .into_iter()
                .map(|id| match m.groups.get(id) {
                    Some(g) => (id.clone(), g.protocol_type().to_string(), g.state().name()),
                    None => (id.clone(), String::new(), GroupState::Empty.name()),
                })
                .collect();
            let _ = reply.send(out);
        }
        GroupMsg::Delete { group, reply } => delete_group(mgr, group, reply),
        GroupMsg::DeleteOffsets { group, topics, reply } => delete_offsets(mgr, group, topics, reply),
    }
}

fn commit(
    mgr: &SharedGroups,
    args: CommitArgs,
    now: Instant,
    reply: tokio::sync::oneshot::Sender<Result<super::PartitionErrors, i16>>,
) {
    let writer = {
        let mut m = mgr.borrow_mut();
        let check = match m.groups.get_mut(&args.group) {
            // A "simple" commit (no generation, no member) from a client that
            // assigns partitions itself: allowed while no members are active.
            Some(g) if args.generation < 0 && args.member_id.is_empty() => {
                if g.is_empty() {
                    Ok(())
                } else {
                    Err(errors::UNKNOWN_MEMBER_ID)
                }
            }
            None if args.generation < 0 && args.member_id.is_empty() => Ok(()),
            None => Err(errors::UNKNOWN_MEMBER_ID),
            Some(g) => g.check_member(&args.member_id, args.instance_id.as_deref(), args.generation).and_then(|()| {
                g.touch(&args.member_id, now);
                if g.state() == GroupState::CompletingRebalance {
                    Err(errors::REBALANCE_IN_PROGRESS)
                } else {
                    Ok(())
                }
            }),
        };
        if let Err(code) = check {
            let _ = reply.send(Err(code));
            return;
        }
        m.writer.clone()
    };
    let ops = OffsetWriter::put_ops(&args.group, &args.offsets);
    let done = writer.submit(ops);
    let mgr = mgr.clone();
    tokio_uring::spawn(async move {
        let result = done.await.unwrap_or_else(|_| Err("offset writer stopped".into()));
        let code = match result {
            Ok(()) => {
                let mut m = mgr.borrow_mut();
                let entry = m.offsets.entry(args.group.clone()).or_default();
                for (t, p, c) in &args.offsets {
                    entry.insert((t.clone(), *p), c.clone());
                }
                errors::NONE
            }
            Err(e) => {
                tracing::error!(group = %args.group, "offset commit failed: {e}");
                errors::KAFKA_STORAGE_ERROR
            }
        };
        let _ = reply.send(Ok(args.offsets.iter().map(|(t, p, _)| (t.clone(), *p, code)).collect()));
    });
}

fn delete_group(mgr: &SharedGroups, group: String, reply: tokio::sync::oneshot::Sender<i16>) {
    let writer = {
        let mut m = mgr.borrow_mut();
        let has_offsets = m.offsets.contains_key(&group);
        match m.groups.get(&group) {
            Some(g) if !g.is_empty() => {
                let _ = reply.send(errors::NON_EMPTY_GROUP);
                return;
            }
            None if !has_offsets => {
                let _ = reply.send(errors::GROUP_ID_NOT_FOUND);
                return;
            }
            _ => {}
        }
        m.groups.remove(&group);
        m.offsets.remove(&group);
        m.writer.clone()
    };
    tokio_uring::spawn(async move {
        let code = match writer.delete_prefix(&offsets::group_prefix(&group)).await {
            Ok(_) => errors::NONE,
            Err(e) => {
                tracing::error!(%group, "deleting group offsets failed: {e}");
                errors::KAFKA_STORAGE_ERROR
            }
        };
        let _ = reply.send(code);
    });
}

/// OffsetDelete: refused for topics the group's active consumers subscribe to.
fn delete_offsets(
    mgr: &SharedGroups,
    group: String,
    topics: Vec<(String, Vec<i32>)>,
    reply: tokio::sync::oneshot::Sender<Result<super::PartitionErrors, i16>>,
) {
    let (writer, ops, results) = {
        let mut m = mgr.borrow_mut();
        if !m.offsets.contains_key(&group) {
            // A live group with nothing committed has nothing to delete.
            let _ = reply.send(if m.groups.contains_key(&group) {
                Ok(Vec::new())
            } else {
                Err(errors::GROUP_ID_NOT_FOUND)
            });
            return;
        }
        let subscribed = m.groups.get(&group).map(subscribed_topics).unwrap_or_default();
        let mut ops = Vec::new();
        let mut results = Vec::new();
        let entry = m.offsets.get_mut(&group).expect("checked");
        for (t, parts) in topics {
            for p in parts {
                if subscribed.contains(&t) {
                    results.push((t.clone(), p, errors::GROUP_SUBSCRIBED_TO_TOPIC));
                    continue;
                }
                if entry.remove(&(t.clone(), p)).is_some() {
                    ops.push(laminar_coord::Op::Delete { key: offsets::offset_key(&group, &t, p) });
                }
                results.push((t.clone(), p, errors::NONE));
            }
        }
        (m.writer.clone(), ops, results)
    };
    tokio_uring::spawn(async move {
        let ok = ops.is_empty() || matches!(writer.submit(ops).await, Ok(Ok(())));
        let _ = reply.send(if ok { Ok(results) } else { Err(errors::KAFKA_STORAGE_ERROR) });
    });
}

/// Topics in the members' "consumer" protocol subscriptions.
fn subscribed_topics(g: &Group) -> HashSet<String> {
    let mut out = HashSet::new();
    if g.protocol_type() != "consumer" {
        return out;
    }
    for meta in g.member_metadata() {
        if let Some(sub) = parse_subscription(meta) {
            out.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}

pub(crate) fn parse_subscription(mut meta: Bytes) -> Option<ConsumerProtocolSubscription> {
    if meta.len() < 2 {
        return None;
    }
    // The embedded struct carries its own version in its first two bytes.
    let version = i16::from_be_bytes([meta[0], meta[1]]).clamp(0, 3);
    let _ = bytes::Buf::get_i16(&mut meta);
    // Within a decode budget like a request's: the bytes came from a JoinGroup.
    let budget_bytes = crate::api::decode_budget_bytes(meta.len());
    kafka_protocol::protocol::budget::with_decode_budget(budget_bytes, || {
        ConsumerProtocolSubscription::decode(&mut meta, version)
    })
    .ok()
}

/// The shard's group timer.
pub async fn run_ticker(mgr: SharedGroups) {
    loop {
        tokio::time::sleep(TICK).await;
        mgr.borrow_mut().tick(Instant::now());
    }
}

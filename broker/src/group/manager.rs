//! The groups one shard coordinates: membership state machines, committed
//! offsets, and the timer that expires sessions and ends rebalances. Only
//! groups of the coordinator slots this broker owns are held; a request for
//! any other group is NOT_COORDINATOR, and the client finds the right broker.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use laminar_coord::cluster::group_slot;

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

use super::offsets::{GroupOffsets, OffsetWriter, WriteError};
use super::state::snapshot::{GroupSnapshot, SNAPSHOT_BYTES_MAX};
use super::state::{Group, GroupState, GroupTiming};
use super::{CommitArgs, GroupDescription, GroupMsg};
use crate::errors;
use tokio::sync::oneshot;

/// Longest the group timer sleeps: it wakes at the earliest deadline of its
/// groups (`Group::next_deadline`), and at least this often, so a deadline
/// that appears while it sleeps (a short rebalance timeout) is at most this late.
pub const TICK: Duration = Duration::from_millis(100);
/// Shortest the group timer sleeps.
const TIMER_FLOOR: Duration = Duration::from_millis(5);

/// How often committed offsets are checked against `offsets.retention.minutes`
/// (Kafka's `offsets.retention.check.interval.ms` is ten minutes; retention is
/// counted in minutes, so a minute is as precise as it needs to be).
pub const OFFSETS_RETENTION_CHECK: Duration = Duration::from_secs(60);

pub struct GroupManager {
    groups: HashMap<String, Group>,
    offsets: HashMap<String, GroupOffsets>,
    timing: GroupTiming,
    writer: OffsetWriter,
    /// Coordinator slots owned, with the version of their record (the fence).
    slots: BTreeMap<u32, u64>,
    /// Wall-clock ms since which each held group has had no members (KIP-211:
    /// its offsets' retention counts from then). Groups only in `offsets`
    /// (no state since this broker took the slot) count from their commits.
    empty_since_ms: HashMap<String, u64>,
    /// Groups with offset commits not yet stored: their offsets are not
    /// expired meanwhile (the store would lose the commit to the delete).
    commits_in_flight: HashMap<String, u32>,
    /// Groups whose membership record this coordinator wrote or loaded,
    /// with a hash of it: rewritten when it changes, removed when the group
    /// is no longer Stable-with-members (`state_snapshot.rs`).
    persisted: HashMap<String, u64>,
}

/// A group record write: ops fenced on the group's slot.
type PersistWrite = (String, OffsetWriter, Vec<laminar_coord::Op>, laminar_coord::Compare);

pub type SharedGroups = Rc<RefCell<GroupManager>>;

/// A store deletion of expired offsets: (group, how many, completion).
pub type ExpiryWrite = (String, usize, oneshot::Receiver<Result<(), WriteError>>);

impl GroupManager {
    pub fn new(timing: GroupTiming, writer: OffsetWriter) -> Self {
        GroupManager {
            groups: HashMap::new(),
            offsets: HashMap::new(),
            timing,
            writer,
            slots: BTreeMap::new(),
            empty_since_ms: HashMap::new(),
            commits_in_flight: HashMap::new(),
            persisted: HashMap::new(),
        }
    }

    /// The fence of `group`'s writes if this broker coordinates it.
    fn fence(&self, group: &str) -> Option<laminar_coord::Compare> {
        self.slots.get(&group_slot(group)).map(|v| self.writer.fence(group, *v))
    }

    /// Takes on the slots owned now: groups of lost slots are dropped (their
    /// members get NOT_COORDINATOR and find the new coordinator), the
    /// committed offsets of gained ones installed.
    fn set_slots(
        &mut self,
        owned: BTreeMap<u32, u64>,
        gained: HashSet<u32>,
        offsets: HashMap<String, GroupOffsets>,
        snapshots: HashMap<String, GroupSnapshot>,
        now: Instant,
    ) {
        let keep = |g: &String| owned.contains_key(&group_slot(g)) && !gained.contains(&group_slot(g));
        self.groups.retain(|g, _| keep(g));
        self.offsets.retain(|g, _| keep(g));
        self.persisted.retain(|g, _| keep(g));
        self.offsets.extend(offsets);
        self.slots = owned;
        // Groups of gained slots come back Stable, members and all.
        for (id, snapshot) in snapshots {
            match Group::restore(id.clone(), &snapshot, self.timing, now) {
                Some(g) => {
                    tracing::info!(group = %id, generation = snapshot.generation, members = snapshot.members.len(),
                        "took over a stable group");
                    if let Ok(json) = serde_json::to_vec(&snapshot) {
                        self.persisted.insert(id.clone(), hash(&json));
                    }
                    self.groups.insert(id, g);
                }
                None => tracing::warn!(group = %id, "ignoring an inconsistent group record; its members rejoin"),
            }
        }
    }

    /// The write that brings `id`'s record in line with the group now, if any.
    fn persist(&mut self, id: &str) -> Option<PersistWrite> {
        let fence = self.fence(id)?;
        let json = self.groups.get(id).and_then(|g| g.snapshot()).and_then(|s| {
            let json = serde_json::to_vec(&s).ok()?;
            if json.len() > SNAPSHOT_BYTES_MAX {
                tracing::warn!(group = %id, bytes = json.len(), "group too large to persist; its members rejoin after a coordinator move");
                return None;
            }
            Some(json)
        });
        let key = self.writer.keys().group(id);
        let op = match json {
            Some(json) => {
                let h = hash(&json);
                if self.persisted.insert(id.to_string(), h) == Some(h) {
                    return None;
                }
                laminar_coord::Op::put(key, json)
            }
            // Not Stable (rebalancing, empty, gone): a recorded membership
            // is stale. Rebalancing keeps it (the next Stable replaces it);
            // an empty or forgotten group drops it.
            None => {
                let stale = self.groups.get(id).is_none_or(|g| g.is_empty());
                if !stale || self.persisted.remove(id).is_none() {
                    return None;
                }
                laminar_coord::Op::delete(key)
            }
        };
        Some((id.to_string(), self.writer.clone(), vec![op], fence))
    }

    fn group_mut(&mut self, id: &str) -> &mut Group {
        let timing = self.timing;
        self.groups.entry(id.to_string()).or_insert_with(|| Group::new(id.to_string(), timing))
    }

    /// Every committed offset held here: (group, topic, partition, offset),
    /// for the consumer lag metric (`metrics/`).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for (group, committed) in &self.offsets {
            for ((topic, partition), c) in committed {
                out.push((group.clone(), topic.clone(), *partition, c.offset));
            }
        }
        out
    }

    /// Timers of every group; `now_ms` is the wall clock, for offset retention.
    pub fn tick(&mut self, now: Instant, now_ms: u64) {
        let mut changed = Vec::new();
        for (id, g) in self.groups.iter_mut() {
            let before = g.signature();
            g.tick(now);
            if g.signature() != before {
                changed.push(id.clone());
            }
            if g.is_empty() {
                self.empty_since_ms.entry(id.clone()).or_insert(now_ms);
            } else {
                self.empty_since_ms.remove(id);
            }
        }
        // Forget groups with no members, no pending member ids and no offsets
        // (Kafka's Dead) once they have been empty for a retention check's
        // interval: until then they are listed and described as Empty, as
        // Kafka's are until its cleanup runs (clients list a group right after
        // its last member left). A group holding only a pending id is kept:
        // its client's second JoinGroup is a round trip away, which can be
        // longer than this tick, and a forgotten id makes that join fail.
        let offsets = &self.offsets;
        let empty_since = &self.empty_since_ms;
        let keep_ms = OFFSETS_RETENTION_CHECK.as_millis() as u64;
        self.groups.retain(|id, g| {
            !g.is_forgettable()
                || offsets.contains_key(id)
                || empty_since.get(id).is_none_or(|&t| now_ms.saturating_sub(t) < keep_ms)
        });
        let groups = &self.groups;
        self.empty_since_ms.retain(|id, _| groups.contains_key(id));
        changed.extend(self.persisted.keys().filter(|id| !self.groups.contains_key(*id)).cloned());
        let writes: Vec<PersistWrite> = changed.iter().filter_map(|id| self.persist(id)).collect();
        spawn_persist(writes);
    }

    /// The earliest deadline of any group held (see `Group::next_deadline`).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups.values().filter_map(Group::next_deadline).min()
    }

    /// Deletes committed offsets past `offsets.retention.minutes` (KIP-211),
    /// from memory at once and from the store through the offset writer,
    /// fenced like commits. A group with no members: every offset whose
    /// commit, and the group's emptying, are older than the retention. A
    /// consumer group with members, stable: only offsets of topics no member
    /// subscribes to, by commit time. Any other group with members: none.
    /// Returns the store writes (group, number of offsets, completion).
    pub fn expire_offsets(&mut self, now_ms: u64) -> Vec<ExpiryWrite> {
        let retention_ms = u64::try_from(self.timing.offsets_retention.as_millis()).unwrap_or(u64::MAX);
        let mut doomed: Vec<(String, Vec<(String, i32)>)> = Vec::new();
        for (group, committed) in &self.offsets {
            if self.commits_in_flight.contains_key(group) {
                continue;
            }
            let (floor_ms, subscribed) = match self.groups.get(group) {
                Some(g) if !g.is_empty() => {
                    if g.protocol_type() == "consumer" && g.state() == GroupState::Stable {
                        (0, Some(subscribed_topics(g)))
                    } else {
                        continue;
                    }
                }
                Some(_) => (self.empty_since_ms.get(group).copied().unwrap_or(now_ms), None),
                None => (0, None),
            };
            let keys: Vec<(String, i32)> = committed
                .iter()
                .filter(|((topic, _), c)| {
                    subscribed.as_ref().is_none_or(|s| !s.contains(topic))
                        && now_ms.saturating_sub(c.commit_ms.max(floor_ms)) >= retention_ms
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !keys.is_empty() {
                doomed.push((group.clone(), keys));
            }
        }
        let mut writes = Vec::new();
        for (group, keys) in doomed {
            let Some(fence) = self.fence(&group) else { continue };
            let entry = self.offsets.get_mut(&group).expect("listed above");
            for k in &keys {
                entry.remove(k);
            }
            if entry.is_empty() {
                self.offsets.remove(&group);
            }
            let store_keys = self.writer.keys().clone();
            let ops: Vec<laminar_coord::Op> =
                keys.iter().map(|(t, p)| laminar_coord::Op::delete(store_keys.offset(&group, t, *p))).collect();
            tracing::info!(%group, offsets = keys.len(), "committed offsets expired (offsets.retention.minutes)");
            writes.push((group, keys.len(), self.writer.submit(ops, fence)));
        }
        writes
    }
}

/// Handles one message on the owning shard.
pub fn handle(mgr: &SharedGroups, msg: GroupMsg) {
    let now = Instant::now();
    if let Some(msg) = refuse_unowned(mgr, msg) {
        // Membership changes only through these (and the timer).
        let changes = match &msg {
            GroupMsg::Join { args, .. } => Some(args.group.clone()),
            GroupMsg::Sync { args, .. } => Some(args.group.clone()),
            GroupMsg::Leave { group, .. } => Some(group.clone()),
            _ => None,
        };
        dispatch(mgr, msg, now);
        if let Some(group) = changes {
            let write = mgr.borrow_mut().persist(&group);
            spawn_persist(write.into_iter().collect());
        }
    }
}

/// Stores group records in the background. A failed write leaves the old
/// record: a later coordinator then restores an older generation, whose
/// members get ILLEGAL_GENERATION and rejoin (a rebalance, never a loss).
fn spawn_persist(writes: Vec<PersistWrite>) {
    for (group, writer, ops, fence) in writes {
        let done = writer.submit(ops, fence);
        tokio_uring::spawn(async move {
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%group, "group record not stored: {e:?}"),
                Err(_) => tracing::debug!(%group, "group record not stored: offset writer stopped"),
            }
        });
    }
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Answers NOT_COORDINATOR for a group whose slot this broker does not own;
/// passes the message on otherwise.
fn refuse_unowned(mgr: &SharedGroups, msg: GroupMsg) -> Option<GroupMsg> {
    use crate::errors::NOT_COORDINATOR as NC;
    let m = mgr.borrow();
    let owns = |g: &str| m.slots.contains_key(&group_slot(g));
    match msg {
        GroupMsg::Join { args, reply } if !owns(&args.group) => {
            let _ = reply.send(super::JoinResult { error: NC, generation: -1, ..Default::default() });
        }
        GroupMsg::Sync { args, reply } if !owns(&args.group) => {
            let _ = reply.send(super::SyncResult { error: NC, ..Default::default() });
        }
        GroupMsg::Heartbeat { group, reply, .. } if !owns(&group) => {
            let _ = reply.send(NC);
        }
        GroupMsg::Leave { group, reply, .. } if !owns(&group) => {
            let _ = reply.send(Err(NC));
        }
        GroupMsg::Commit { args, reply } if !owns(&args.group) => {
            let _ = reply.send(Err(NC));
        }
        GroupMsg::Fetch { group, reply, .. } if !owns(&group) => {
            let _ = reply.send(Err(NC));
        }
        GroupMsg::Describe { group, reply } if !owns(&group) => {
            let _ = reply.send(Err(NC));
        }
        GroupMsg::Delete { group, reply } if !owns(&group) => {
            let _ = reply.send(NC);
        }
        GroupMsg::DeleteOffsets { group, reply, .. } if !owns(&group) => {
            let _ = reply.send(Err(NC));
        }
        other => return Some(other),
    }
    None
}

fn dispatch(mgr: &SharedGroups, msg: GroupMsg, now: Instant) {
    match msg {
        GroupMsg::Slots { owned, gained, offsets, snapshots, reply } => {
            mgr.borrow_mut().set_slots(owned, gained, offsets, snapshots, now);
            let _ = reply.send(());
        }
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
            let _ = reply.send(Ok(out));
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
            let _ = reply.send(Ok(d));
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
        let fence = m.fence(&args.group).expect("ownership checked on arrival");
        (m.writer.clone(), fence)
    };
    let (writer, fence) = writer;
    let ops = writer.put_ops(&args.group, &args.offsets);
    let done = writer.submit(ops, fence);
    *mgr.borrow_mut().commits_in_flight.entry(args.group.clone()).or_default() += 1;
    let mgr = mgr.clone();
    tokio_uring::spawn(async move {
        let result = done.await.unwrap_or_else(|_| Err(WriteError::Store("offset writer stopped".into())));
        {
            let mut m = mgr.borrow_mut();
            if let Some(n) = m.commits_in_flight.get_mut(&args.group) {
                *n -= 1;
                if *n == 0 {
                    m.commits_in_flight.remove(&args.group);
                }
            }
        }
        let code = match result {
            Ok(()) => {
                let mut m = mgr.borrow_mut();
                let entry = m.offsets.entry(args.group.clone()).or_default();
                for (t, p, c) in &args.offsets {
                    entry.insert((t.clone(), *p), c.clone());
                }
                errors::NONE
            }
            Err(WriteError::NotCoordinator) => errors::NOT_COORDINATOR,
            Err(WriteError::Store(e)) => {
                tracing::error!(group = %args.group, "offset commit failed: {e}");
                // Retriable for clients (they retry the commit).
                errors::COORDINATOR_NOT_AVAILABLE
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
        let fence = m.fence(&group).expect("ownership checked on arrival");
        m.groups.remove(&group);
        m.offsets.remove(&group);
        m.persisted.remove(&group);
        (m.writer.clone(), fence)
    };
    let (writer, fence) = writer;
    tokio_uring::spawn(async move {
        let ops = vec![
            laminar_coord::Op::delete_prefix(writer.keys().group_offsets(&group)),
            laminar_coord::Op::delete(writer.keys().group(&group)),
        ];
        let code = match writer.submit(ops, fence).await {
            Ok(Ok(())) => errors::NONE,
            Ok(Err(WriteError::NotCoordinator)) => errors::NOT_COORDINATOR,
            Ok(Err(WriteError::Store(e))) => {
                tracing::error!(%group, "deleting group offsets failed: {e}");
                errors::COORDINATOR_NOT_AVAILABLE
            }
            Err(_) => errors::COORDINATOR_NOT_AVAILABLE,
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
    let (writer, ops, results, fence) = {
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
        let fence = m.fence(&group).expect("ownership checked on arrival");
        let keys = m.writer.keys().clone();
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
                    ops.push(laminar_coord::Op::delete(keys.offset(&group, &t, p)));
                }
                results.push((t.clone(), p, errors::NONE));
            }
        }
        (m.writer.clone(), ops, results, fence)
    };
    let (writer, ops, results, fence) = (writer, ops, results, fence);
    tokio_uring::spawn(async move {
        let outcome = if ops.is_empty() { Ok(Ok(())) } else { writer.submit(ops, fence).await };
        let _ = reply.send(match outcome {
            Ok(Ok(())) => Ok(results),
            Ok(Err(WriteError::NotCoordinator)) => Err(errors::NOT_COORDINATOR),
            _ => Err(errors::COORDINATOR_NOT_AVAILABLE),
        });
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

/// The shard's group timer: sessions and rebalances at their deadlines (at
/// least every `TICK`), offset retention every `OFFSETS_RETENTION_CHECK`.
pub async fn run_ticker(mgr: SharedGroups) {
    let mut last_retention_check = Instant::now();
    loop {
        let now = Instant::now();
        let tick_at = now + TICK;
        // Floored: a deadline a tick cannot clear must not make this spin.
        let wake = mgr.borrow().next_deadline().map_or(tick_at, |d| d.clamp(now + TIMER_FLOOR, tick_at));
        tokio::time::sleep_until(wake.into()).await;
        let (now, now_ms) = (Instant::now(), laminar_engine::log::now_ms());
        mgr.borrow_mut().tick(now, now_ms);
        if now.duration_since(last_retention_check) >= OFFSETS_RETENTION_CHECK {
            last_retention_check = now;
            let writes = mgr.borrow_mut().expire_offsets(now_ms);
            if !writes.is_empty() {
                tokio_uring::spawn(async move {
                    for (group, _, done) in writes {
                        match done.await {
                            Ok(Ok(())) => {}
                            // Still in the store: a later coordinator loads and expires them again.
                            Ok(Err(e)) => tracing::warn!(%group, "deleting expired offsets failed: {e:?}"),
                            Err(_) => tracing::warn!(%group, "deleting expired offsets: offset writer stopped"),
                        }
                    }
                });
            }
        }
    }
}

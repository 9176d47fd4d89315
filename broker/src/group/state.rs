//! One consumer group's membership state machine (Kafka's classic protocol):
//! Empty → PreparingRebalance → CompletingRebalance → Stable, with generation,
//! member ids, static membership (`group.instance.id`), session and rebalance
//! timeouts. Pure: time comes in as `now`, answers go out through the oneshot
//! senders the requests brought. Assignors run in the clients; their bytes
//! pass through untouched.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{GroupDescription, JoinArgs, JoinResult, MemberDescription, SyncArgs, SyncResult};
use crate::errors;

/// The persisted form of a Stable group (a child module: it reads the fields).
#[path = "state_snapshot.rs"]
pub mod snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Timing rules and limits shared by every group of a broker.
#[derive(Debug, Clone, Copy)]
pub struct GroupTiming {
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members.
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// `group.max.size`: members one group may have; a JoinGroup past it
    /// gets GROUP_MAX_SIZE_REACHED. Also bounds the member ids handed out and
    /// not yet joined (KIP-394), which a client repeating JoinGroup without an
    /// id would otherwise grow until their session timeouts pass.
    pub max_members: usize,
    /// `offsets.retention.minutes`: how long committed offsets outlive their
    /// group's last member (or, for a group that never had members, their
    /// commit) before they are deleted (KIP-211).
    pub offsets_retention: Duration,
}

/// Default `group.max.size`. Kafka's is unlimited; a member costs a rebalance
/// round trip for every member and its metadata is held and sent to the
/// leader, so past a thousand a group's rebalances take longer than clients'
/// timeouts anyway (and a thousand members only make sense on topics of a
/// thousand partitions or more).
pub const MAX_MEMBERS_DEFAULT: usize = 1000;

impl Default for GroupTiming {
    fn default() -> Self {
        GroupTiming {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_millis(1_800_000),
            max_members: MAX_MEMBERS_DEFAULT,
            // Kafka's default: 10080 minutes, 7 days.
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    /// Order of joining: the first member becomes leader when one is needed.
    joined_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → current member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pending_members: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// Set while a new group waits `initial_rebalance_delay` for more members.
    initial_delay_until: Option<Instant>,
    next_seq: u64,
    timing: GroupTiming,
}

impl Group {
    pub fn new(id: String, timing: GroupTiming) -> Group {
        Group {
            id,
            timing,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            next_seq: 0,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    #[cfg(test)]
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    /// Nothing to remember: no members and no member ids handed out that a
    /// client may still bring back (KIP-394: the id comes back in a second
    /// JoinGroup one round trip later, however long that trip is).
    pub fn is_forgettable(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty() && self.state == GroupState::Empty
    }
    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }

    /// Each member's subscription metadata for the chosen protocol.
    pub fn member_metadata(&self) -> Vec<Bytes> {
        let p = self.protocol.clone().unwrap_or_default();
        self.members.values().map(|m| m.metadata_for(&p)).collect()
    }

    fn new_member_id(&self, client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// No room for another member (`group.max.size`).
    fn full(&self) -> bool {
        self.members.len() >= self.timing.max_members
    }

    /// Hands out a member id to bring back in a second JoinGroup (KIP-394).
    /// At most `max_members` wait at once: past that the one closest to its
    /// deadline is forgotten (its client gets UNKNOWN_MEMBER_ID and starts
    /// over), rather than refusing every new member until ids expire.
    fn add_pending(&mut self, id: String, deadline: Instant) {
        if self.pending_members.len() >= self.timing.max_members {
            let oldest = self.pending_members.iter().min_by_key(|(_, d)| **d).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.pending_members.remove(&oldest);
            }
        }
        self.pending_members.insert(id, deadline);
    }

    #[cfg(test)]
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    #[cfg(test)]
    pub fn pending_count(&self) -> usize {
        self.pending_members.len()
    }

    pub fn join(&mut self, args: JoinArgs, now: Instant, reply: oneshot::Sender<JoinResult>) {
        let timing = self.timing;
        let fail = |reply: oneshot::Sender<JoinResult>, error: i16, member_id: String| {
            let _ = reply.send(JoinResult { error, member_id, generation: -1, ..Default::default() });
        };
        let session = Duration::from_millis(args.session_timeout_ms.max(0) as u64);
        if session < timing.min_session_timeout || session > timing.max_session_timeout {
            return fail(reply, errors::INVALID_SESSION_TIMEOUT, args.member_id);
        }
        if args.protocols.is_empty()
            || args.protocol_type.is_empty()
            || (!self.members.is_empty() && !self.supports(&args.protocol_type, &args.protocols))
        {
            return fail(reply, errors::INCONSISTENT_GROUP_PROTOCOL, args.member_id);
        }

        let member_id = if args.member_id.is_empty() {
            if let Some(instance) = &args.instance_id {
                let new_id = self.new_member_id(&args.client_id);
                if let Some(old_id) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(old_id, new_id, args, now, reply);
                }
                if self.full() {
                    return fail(reply, errors::GROUP_MAX_SIZE_REACHED, String::new());
                }
                self.static_members.insert(instance.clone(), new_id.clone());
                new_id
            } else if self.full() {
                // Refused before an id is handed out: nothing to remember.
                return fail(reply, errors::GROUP_MAX_SIZE_REACHED, String::new());
            } else if args.require_known_member_id {
                // KIP-394: hand out an id first, so a client that retries
                // a lost JoinGroup response doesn't leave a ghost member.
                let id = self.new_member_id(&args.client_id);
                self.add_pending(id.clone(), now + session);
                return fail(reply, errors::MEMBER_ID_REQUIRED, id);
            } else {
                self.new_member_id(&args.client_id)
            }
        } else {
            let id = args.member_id.clone();
            if let Some(instance) = &args.instance_id {
                match self.static_members.get(instance) {
                    Some(current) if *current != id => return fail(reply, errors::FENCED_INSTANCE_ID, id),
                    None if !self.pending_members.contains_key(&id) => {
                        return fail(reply, errors::UNKNOWN_MEMBER_ID, id);
                    }
                    _ => {}
                }
            }
            if self.pending_members.remove(&id).is_none() && !self.members.contains_key(&id) {
                return fail(reply, errors::UNKNOWN_MEMBER_ID, id);
            }
            if !self.members.contains_key(&id) && self.full() {
                return fail(reply, errors::GROUP_MAX_SIZE_REACHED, id);
            }
            id
        };

        let seq = self.next_seq;
        let was_empty = self.members.is_empty();
        let existing = self.members.get_mut(&member_id);
        let changed = match existing {
            Some(m) => {
                let changed = m.protocols != args.protocols;
                m.protocols = args.protocols.clone();
                m.session_timeout = session;
                m.rebalance_timeout = Duration::from_millis(args.rebalance_timeout_ms.max(0) as u64);
                m.last_heartbeat = now;
                changed
            }
            None => {
                self.next_seq += 1;
                self.members.insert(
                    member_id.clone(),
                    Member {
                        instance_id: args.instance_id.clone(),
                        client_id: args.client_id.clone(),
                        client_host: args.client_host.clone(),
                        session_timeout: session,
                        rebalance_timeout: Duration::from_millis(args.rebalance_timeout_ms.max(0) as u64),
                        protocols: args.protocols.clone(),
                        assignment: Bytes::new(),
                        last_heartbeat: now,
                        awaiting_join: None,
                        awaiting_sync: None,
                        joined_seq: seq,
                    },
                );
                true
            }
        };
        if was_empty || self.protocol_type.is_none() {
            // An emptied group keeps its protocol type (ListGroups shows a
            // consumer group as one, Empty, not as a "simple" group); the
            // first member to join it again sets it anew, as in Kafka.
            self.protocol_type = Some(args.protocol_type.clone());
        }
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        if self.state == GroupState::Stable && !changed && !is_leader {
            // A follower rejoining with nothing new: no rebalance (as Kafka).
            let _ = reply.send(self.join_result(&member_id, false));
            return;
        }
        let m = self.members.get_mut(&member_id).expect("just inserted");
        if let Some(old) = m.awaiting_join.replace(reply) {
            let _ = old.send(JoinResult { error: errors::REBALANCE_IN_PROGRESS, generation: -1, ..Default::default() });
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// A known static member came back with a new member id (KIP-345): the
    /// new id replaces the old one, whose parked requests are fenced. In a
    /// stable group whose protocol stays as it is, nothing else changes: same
    /// generation, same assignment (the member gets it back from SyncGroup),
    /// no rebalance for anyone, whether or not it led the group. Otherwise
    /// the group rebalances, as Kafka's coordinator does.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        args: JoinArgs,
        now: Instant,
        reply: oneshot::Sender<JoinResult>,
    ) {
        let Some(mut m) = self.members.remove(&old_id) else {
            // Mapping without member (it expired): start over as a new member.
            self.static_members.remove(args.instance_id.as_deref().unwrap_or(""));
            let mut args = args;
            args.member_id = String::new();
            return self.join(args, now, reply);
        };
        if let Some(old) = m.awaiting_join.take() {
            let _ = old.send(JoinResult { error: errors::FENCED_INSTANCE_ID, generation: -1, ..Default::default() });
        }
        if let Some(old) = m.awaiting_sync.take() {
            let _ = old.send(SyncResult { error: errors::FENCED_INSTANCE_ID, ..Default::default() });
        }
        let old_protocols = std::mem::replace(&mut m.protocols, args.protocols);
        m.last_heartbeat = now;
        m.session_timeout = Duration::from_millis(args.session_timeout_ms.max(0) as u64);
        m.rebalance_timeout = Duration::from_millis(args.rebalance_timeout_ms.max(0) as u64);
        self.members.insert(new_id.clone(), m);
        self.static_members.insert(args.instance_id.clone().unwrap_or_default(), new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && self.keeps_assignment(&old_protocols, &new_id) {
            let result = if !was_leader {
                self.join_result(&new_id, false)
            } else if args.supports_skip_assignment {
                // KIP-814: it leads, sees the members, and must not assign.
                JoinResult { skip_assignment: true, ..self.join_result(&new_id, true) }
            } else {
                // An older client named leader would compute a new assignment
                // that a stable group ignores; naming its old id (Kafka's
                // answer) tells it it does not lead, so it just syncs.
                JoinResult { leader: old_id, ..self.join_result(&new_id, false) }
            };
            let _ = reply.send(result);
            return;
        }
        self.members.get_mut(&new_id).expect("inserted").awaiting_join = Some(reply);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.try_complete_join(now);
    }

    /// Whether a static member that rejoined with `member_id` (its protocols
    /// before were `old`) leaves the stable group's assignment valid: the
    /// protocol vote still picks the group's protocol (Kafka's rule), and in a
    /// consumer group the member still subscribes to the same topics. Kafka
    /// does not look at topics; a changed subscription would otherwise keep
    /// the old assignment until something else rebalances. Raw metadata is
    /// not compared: the Java consumer puts its generation (-1 after a
    /// restart) and owned partitions in it, so it always changes.
    fn keeps_assignment(&self, old: &[(String, Bytes)], member_id: &str) -> bool {
        let Some(current) = self.protocol.clone() else { return false };
        if self.select_protocol() != current {
            return false;
        }
        if self.protocol_type() != "consumer" {
            return true;
        }
        let topics = |meta: Bytes| {
            super::manager::parse_subscription(meta).map(|s| {
                let mut topics: Vec<String> = s.topics.iter().map(|t| t.to_string()).collect();
                topics.sort();
                topics
            })
        };
        let before = old.iter().find(|(n, _)| *n == current).map(|(_, m)| m.clone()).unwrap_or_default();
        topics(before) == topics(self.members[member_id].metadata_for(&current))
    }

    /// Does the group accept this protocol type and at least one protocol every member has?
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(s) = m.awaiting_sync.take() {
                    let _ = s.send(SyncResult { error: errors::REBALANCE_IN_PROGRESS, ..Default::default() });
                }
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        if self.state == GroupState::Empty {
            self.initial_delay_until = Some(now + self.timing.initial_rebalance_delay.min(timeout));
        }
        self.rebalance_deadline = Some(now + timeout);
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase when every member has rejoined (after a new
    /// group's initial delay) or the rebalance timeout has passed.
    pub fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !((all_joined && delay_over) || timed_out) {
            return;
        }
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        // Members that did not rejoin in time are out.
        let gone: Vec<String> =
            self.members.iter().filter(|(_, m)| m.awaiting_join.is_none()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        // Clients drive rebalances (join, leave, join, …): never overflow; a
        // generation two billion rebalances old cannot be confused with 1.
        self.generation = self.generation.checked_add(1).unwrap_or(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = Some(self.select_protocol());
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.iter().min_by_key(|(_, m)| m.joined_seq).map(|(id, _)| id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result(&id, is_leader);
            let m = self.members.get_mut(&id).expect("member");
            m.last_heartbeat = now;
            m.assignment = Bytes::new();
            if let Some(r) = m.awaiting_join.take() {
                let _ = r.send(result);
            }
        }
    }

    /// The protocol every member supports that most members list first (Kafka's vote).
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("non-empty");
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == *n)))
            .collect();
        let mut best = candidates[0].clone();
        let mut best_votes = 0;
        for c in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| m.protocols.iter().map(|(n, _)| n).find(|n| candidates.contains(n)) == Some(*c))
                .count();
            if votes > best_votes {
                best = (*c).clone();
                best_votes = votes;
            }
        }
        best
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members.iter().map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: errors::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Checks member id, static instance and generation as Sync, Heartbeat and
    /// OffsetCommit all do.
    pub fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if current != member_id {
                    return Err(errors::FENCED_INSTANCE_ID);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(errors::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(errors::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    pub fn sync(&mut self, args: SyncArgs, now: Instant, reply: oneshot::Sender<SyncResult>) {
        let fail = |reply: oneshot::Sender<SyncResult>, error: i16| {
            let _ = reply.send(SyncResult { error, ..Default::default() });
        };
        if let Err(e) = self.check_member(&args.member_id, args.instance_id.as_deref(), args.generation) {
            return fail(reply, e);
        }
        if args.protocol_type.as_ref().is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || args.protocol_name.as_ref().is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return fail(reply, errors::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty => fail(reply, errors::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => fail(reply, errors::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let m = &self.members[&args.member_id];
                let _ = reply.send(self.sync_result(m.assignment.clone()));
            }
            GroupState::CompletingRebalance => {
                let is_leader = self.leader.as_deref() == Some(args.member_id.as_str());
                let m = self.members.get_mut(&args.member_id).expect("checked");
                m.last_heartbeat = now;
                m.awaiting_sync = Some(reply);
                if is_leader {
                    let assignments: HashMap<String, Bytes> = args.assignments.into_iter().collect();
                    for (id, m) in self.members.iter_mut() {
                        m.assignment = assignments.get(id).cloned().unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    let result = self.sync_result(Bytes::new());
                    for m in self.members.values_mut() {
                        if let Some(r) = m.awaiting_sync.take() {
                            let _ = r.send(SyncResult { assignment: m.assignment.clone(), ..result.clone() });
                        }
                    }
                }
            }
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: errors::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: Instant) -> i16 {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e;
        }
        self.members.get_mut(member_id).expect("checked").last_heartbeat = now;
        match self.state {
            GroupState::PreparingRebalance => errors::REBALANCE_IN_PROGRESS,
            GroupState::Empty => errors::UNKNOWN_MEMBER_ID,
            GroupState::CompletingRebalance | GroupState::Stable => errors::NONE,
        }
    }

    /// Records activity for a member that committed offsets.
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
    }

    /// LeaveGroup for one member (by id, or by instance id for static members).
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> i16 {
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return errors::FENCED_INSTANCE_ID,
                None => return errors::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return errors::UNKNOWN_MEMBER_ID;
        }
        self.remove_member(&id);
        self.after_departure(now);
        errors::NONE
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(r) = m.awaiting_join {
                let _ = r.send(JoinResult { error: errors::UNKNOWN_MEMBER_ID, generation: -1, ..Default::default() });
            }
            if let Some(r) = m.awaiting_sync {
                let _ = r.send(SyncResult { error: errors::UNKNOWN_MEMBER_ID, ..Default::default() });
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member left or expired: the rest must rebalance.
    fn after_departure(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// When `member`'s session ends unless it is heard from; `None` while
    /// it is parked in JoinGroup (the rebalance timeout bounds that instead).
    fn session_deadline(&self, m: &Member) -> Option<Instant> {
        let waiting_to_join = self.state == GroupState::PreparingRebalance && m.awaiting_join.is_some();
        (!waiting_to_join).then(|| m.last_heartbeat + m.session_timeout)
    }

    /// The earliest instant at which `tick` has something to do: a session,
    /// a rebalance, the initial delay or a pending member id ending. The
    /// shard's timer sleeps until then (at most `manager::TICK`), so a dead
    /// member is removed when its session ends, not up to a tick later.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.members.values().filter_map(|m| self.session_deadline(m));
        // The initial delay ends a join only once everyone has joined.
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        sessions
            .chain(self.pending_members.values().copied())
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_until.filter(|_| all_joined))
            .min()
    }

    /// Timers: session expiry, rebalance deadline, pending member ids.
    pub fn tick(&mut self, now: Instant) {
        // A pending id lives as long as the session timeout its JoinGroup asked for (as Kafka).
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| self.session_deadline(m).is_some_and(|d| now >= d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_departure(now);
        }
        self.try_complete_join(now);
    }

    pub fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: if self.state == GroupState::Stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }
    }
}

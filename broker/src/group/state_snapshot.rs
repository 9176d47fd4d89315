//! A group's membership as of its last completed rebalance, persisted under
//! `<P>/groups/<group>` so that a new coordinator (the old one died, or its
//! slot moved) takes the group over Stable: its members go on heartbeating
//! with their generation and assignment instead of all rejoining, as Kafka's
//! coordinators do from the group records in `__consumer_offsets`.
//!
//! Only a Stable group is written (every member has its assignment); the
//! record is removed when the group empties. A group taken over mid-rebalance
//! comes back at its last Stable generation: members already in the next
//! one get ILLEGAL_GENERATION and rejoin, which is a rebalance, not a loss.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Group, GroupState, GroupTiming, Member};

/// The largest snapshot written: etcd refuses requests over 1.5 MiB, and a
/// group this big (thousands of members with large subscriptions) rejoins
/// after a coordinator move rather than holding up the offset writer.
pub const SNAPSHOT_BYTES_MAX: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// The member's metadata for the chosen protocol, hex.
    pub metadata: String,
    /// Its assignment from the last SyncGroup, hex.
    pub assignment: String,
}

impl Group {
    /// What a timer tick can change about a group's persisted form: when
    /// this moves, the manager rewrites (or removes) the record.
    pub fn signature(&self) -> (GroupState, i32, usize) {
        (self.state, self.generation, self.members.len())
    }

    /// What to persist now: a Stable group's membership, else nothing.
    pub fn snapshot(&self) -> Option<GroupSnapshot> {
        if self.state != GroupState::Stable {
            return None;
        }
        let protocol = self.protocol.clone()?;
        Some(GroupSnapshot {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    metadata: hex(&m.metadata_for(&protocol)),
                    assignment: hex(&m.assignment),
                })
                .collect(),
            protocol,
        })
    }

    /// The group as a new coordinator takes it over: Stable at the
    /// snapshot's generation, every member's session starting `now` (the
    /// old coordinator's last heartbeats are not known here). None when the
    /// snapshot is damaged (the members rejoin, as without one).
    pub fn restore(id: String, s: &GroupSnapshot, timing: GroupTiming, now: Instant) -> Option<Group> {
        let mut g = Group::new(id, timing);
        let mut members = BTreeMap::new();
        let mut static_members = HashMap::new();
        for (seq, m) in s.members.iter().enumerate() {
            if let Some(instance) = &m.instance_id {
                static_members.insert(instance.clone(), m.member_id.clone());
            }
            members.insert(
                m.member_id.clone(),
                Member {
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: Duration::from_millis(m.session_timeout_ms),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocols: vec![(s.protocol.clone(), Bytes::from(unhex(&m.metadata)?))],
                    assignment: Bytes::from(unhex(&m.assignment)?),
                    last_heartbeat: now,
                    awaiting_join: None,
                    awaiting_sync: None,
                    joined_seq: seq as u64,
                },
            );
        }
        if members.is_empty() || !members.contains_key(&s.leader) {
            return None;
        }
        g.next_seq = members.len() as u64;
        g.members = members;
        g.static_members = static_members;
        g.generation = s.generation;
        g.protocol_type = Some(s.protocol_type.clone());
        g.protocol = Some(s.protocol.clone());
        g.leader = Some(s.leader.clone());
        g.state = GroupState::Stable;
        Some(g)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{JoinArgs, SyncArgs};

    fn join_args(member_id: &str) -> JoinArgs {
        JoinArgs {
            group: "g".into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01sub"))],
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    #[test]
    fn a_stable_group_survives_a_round_trip_and_only_a_stable_one_is_written() {
        let timing = GroupTiming { initial_rebalance_delay: Duration::ZERO, ..Default::default() };
        let now = Instant::now();
        let mut g = Group::new("g".into(), timing);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        g.join(join_args(""), now, tx);
        g.try_complete_join(now);
        let joined = rx.try_recv().expect("joined");
        assert_eq!(joined.error, crate::errors::NONE);
        assert!(g.snapshot().is_none(), "not Stable before SyncGroup");
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let sync = SyncArgs {
            group: "g".into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"\x00\x01asg"))],
        };
        g.sync(sync, now, tx);
        let s = g.snapshot().expect("Stable");
        let json = serde_json::to_vec(&s).unwrap();
        let back: GroupSnapshot = serde_json::from_slice(&json).unwrap();
        let r = Group::restore("g".into(), &back, timing, now).expect("restored");
        assert_eq!(r.state(), GroupState::Stable);
        assert_eq!(r.snapshot(), Some(s));
        // The restored member's heartbeat is accepted at its generation.
        let mut r = r;
        assert_eq!(r.heartbeat(&joined.member_id, None, joined.generation, now), crate::errors::NONE);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex(&hex(b"\x00\xff")), Some(vec![0, 255]));
    }
}

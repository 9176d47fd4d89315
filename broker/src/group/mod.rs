//! The group coordinator (Kafka's classic consumer-group protocol) and
//! committed offsets. A group belongs to a coordinator slot, which one broker
//! owns at a time (`placement::coordinator`); on that broker it is held by one
//! shard (`placement::group_shard`), like a partition; requests for it travel
//! there as `GroupMsg`. The state machine is in
//! `state.rs` (pure, no I/O), the per-shard table and timers in `manager.rs`,
//! durable committed offsets in `offsets.rs`, and the membership of Stable
//! groups, persisted for the next coordinator, in `state_snapshot.rs`.

pub mod manager;
pub mod offsets;
pub mod state;
#[cfg(test)]
mod state_tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use manager::GroupManager;
pub use offsets::{Committed, GroupOffsets, OffsetWriter};

#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ clients understand MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// v9+ clients understand `skip_assignment` (KIP-814): a static leader
    /// rejoining a stable group is told it leads without having to assign.
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: (member id, instance id, metadata of the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader must not assign (KIP-814): the group is stable and keeps
    /// its assignment; `members` is only for its own bookkeeping.
    pub skip_assignment: bool,
}

#[derive(Debug, Clone)]
pub struct SyncArgs {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct CommitArgs {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// (topic, partition, committed) for partitions that passed the broker-side checks.
    pub offsets: Vec<(String, i32, Committed)>,
}

#[derive(Debug, Clone, Default)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// (topic, partition, committed offset if any): OffsetFetch's answer.
pub type CommittedRows = Vec<(String, i32, Option<Committed>)>;

/// (topic, partition) → error code; the shape of commit and offset-delete answers.
pub type PartitionErrors = Vec<(String, i32, i16)>;

pub enum GroupMsg {
    Join {
        args: JoinArgs,
        reply: oneshot::Sender<JoinResult>,
    },
    Sync {
        args: SyncArgs,
        reply: oneshot::Sender<SyncResult>,
    },
    Heartbeat {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        reply: oneshot::Sender<i16>,
    },
    /// Members as (member id, instance id); answers one code per member, or a group-level error.
    Leave {
        group: String,
        members: Vec<(String, Option<String>)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
    },
    Commit {
        args: CommitArgs,
        reply: oneshot::Sender<Result<PartitionErrors, i16>>,
    },
    /// `None` topics: every committed offset of the group.
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        reply: oneshot::Sender<Result<CommittedRows, i16>>,
    },
    Describe {
        group: String,
        reply: oneshot::Sender<Result<GroupDescription, i16>>,
    },
    /// (group id, protocol type, state) of every group on this shard.
    List {
        reply: oneshot::Sender<Vec<(String, String, &'static str)>>,
    },
    Delete {
        group: String,
        reply: oneshot::Sender<i16>,
    },
    DeleteOffsets {
        group: String,
        topics: Vec<(String, Vec<i32>)>,
        reply: oneshot::Sender<Result<PartitionErrors, i16>>,
    },
    /// The coordinator slots this broker owns now (slot → version of its
    /// record, the fence of offset writes); `offsets` holds what is committed
    /// for this shard's groups of the `gained` slots.
    Slots {
        owned: BTreeMap<u32, u64>,
        gained: HashSet<u32>,
        offsets: HashMap<String, GroupOffsets>,
        /// Persisted membership of the gained slots' groups.
        snapshots: HashMap<String, state::snapshot::GroupSnapshot>,
        reply: oneshot::Sender<()>,
    },
}

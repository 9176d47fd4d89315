//! The values stored under the keys of `keys.rs`, as JSON (readable with
//! `etcdctl get`, tolerant of added fields). docs/architecture.md lists every
//! field; a field added later must have a default so older records still read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `<P>/format`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatRecord {
    pub version: u32,
}

/// `<P>/meta/brokers/<id>`: a live broker, bound to its lease. The lease id is
/// the broker's *incarnation* (Kafka's broker epoch): a restarted broker has
/// a new one, which tells the controller its unflushed data may be gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub node_id: i32,
    /// Where clients and other brokers reach it.
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub rack: Option<String>,
    /// Shard threads (cores) it runs: placement balances across them.
    pub shards: u16,
    pub started_ms: u64,
    /// Identifies the data directory (made once, kept in it): a registration
    /// left by this directory's previous process is ours to replace; one from
    /// another directory with our node id is another broker.
    pub data_dir_id: String,
    /// Partition replicas it can keep open within its file-descriptor limit.
    pub partition_capacity: u32,
    #[serde(default)]
    pub build: String,
    /// Set by a broker stopping cleanly (controlled shutdown): the controller
    /// moves its leaderships and group coordinator slots to others and drops
    /// it from ISRs, so its clients see no failed writes when it goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shutting_down: bool,
    /// Every listener it serves, as advertised (Kafka's `advertised.listeners`).
    /// `host`/`port` above stay the inter-broker listener's. Records of builds
    /// before named listeners have none: their one listener is `host`/`port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerRecord>,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...): a
    /// client is told the addresses of the listener it came in on.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
}

impl BrokerRecord {
    /// Where clients of listener `name` reach this broker; `None` when it
    /// has no such listener. A record without listeners (an older build)
    /// serves every client on `host`/`port`.
    pub fn endpoint(&self, name: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners.iter().find(|l| l.name == name).map(|l| (l.host.as_str(), l.port))
    }
}

/// `<P>/scram/<user>/<mechanism>`: one user's SCRAM credential (RFC 5802):
/// what the server needs to check a proof and prove itself, never the
/// password. Byte strings are base64 (standard alphabet, padded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialRecord {
    pub salt: String,
    pub iterations: u32,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: String,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: String,
}

/// `<P>/meta/controller`: the elected controller, bound to its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub node_id: i32,
    pub epoch: u64,
}

/// `<P>/meta/topics/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: uuid::Uuid,
    pub partitions: i32,
    /// Written by every build that replicates; records of single-node builds
    /// before it had none, and meant 1.
    #[serde(default = "one")]
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// A manual replica assignment (CreateTopics' or CreatePartitions'
    /// `assignments`): partition → its brokers, preferred leader first. The
    /// controller places these partitions there and the others itself. Left
    /// in place afterwards: partition records are what holds from then on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assignments: BTreeMap<i32, Vec<i32>>,
}

fn one() -> i16 {
    1
}

/// One in-sync replica: a broker and the incarnation that was in sync. A
/// broker that restarts (new incarnation) is no longer in sync until it has
/// caught up again, whatever its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IsrMember {
    pub node: i32,
    pub incarnation: i64,
}

/// `<P>/meta/partitions/<topic>/<partition>`: who holds a partition and who
/// leads it. Changed only by compare-and-swap on its version: by the
/// controller (leader elections, ISR cleanup after a broker dies, replica
/// placement) and by its leader (ISR shrink and expand), each change bumping
/// `partition_epoch` (Kafka's partition epoch, KIP-497).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: uuid::Uuid,
    /// Replica brokers, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The shard (core) each replica lives on, parallel to `replicas`.
    pub shards: Vec<u16>,
    /// The leader's node id, -1 when none can be elected.
    pub leader: i32,
    pub leader_epoch: i32,
    /// The incarnation of the leader when elected: a broker leads only in the
    /// incarnation it was elected in.
    pub leader_incarnation: i64,
    pub isr: Vec<IsrMember>,
    pub partition_epoch: i32,
    /// A reassignment in progress: replicas being added (catching up) and
    /// being removed once the added ones are in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionRecord {
    pub fn isr_nodes(&self) -> Vec<i32> {
        self.isr.iter().map(|m| m.node).collect()
    }

    pub fn in_isr(&self, node: i32) -> bool {
        self.isr.iter().any(|m| m.node == node)
    }

    /// The shard `node` keeps its replica on, if it has one.
    pub fn shard_of(&self, node: i32) -> Option<u16> {
        let i = self.replicas.iter().position(|&r| r == node)?;
        Some(self.shards.get(i).copied().unwrap_or(0))
    }

    pub fn has_leader(&self) -> bool {
        self.leader >= 0
    }
}

/// `<P>/meta/coordinators/<slot>`: which broker coordinates the groups of a
/// slot. `epoch` grows with every owner change; the owner guards its writes
/// of offsets and group state on this key's version, so a deposed
/// coordinator's late commits fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorRecord {
    pub node_id: i32,
    pub incarnation: i64,
    pub epoch: u64,
}

/// Serializes a record (infallible for these types).
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("cluster records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_records_of_single_node_builds_still_read() {
        let old = br#"{"id":"3f1f4f1c-8f7e-4a55-9d0e-1c9b1f6a2b3c","partitions":3,"configs":{"retention.ms":"1000"}}"#;
        let t: TopicRecord = serde_json::from_slice(old).unwrap();
        assert_eq!((t.partitions, t.replication_factor, t.configs.len()), (3, 1, 1));
    }

    #[test]
    fn partition_records_round_trip() {
        let p = PartitionRecord {
            topic_id: uuid::Uuid::new_v4(),
            replicas: vec![2, 1, 3],
            shards: vec![0, 1, 1],
            leader: 2,
            leader_epoch: 4,
            leader_incarnation: 99,
            isr: vec![IsrMember { node: 2, incarnation: 99 }, IsrMember { node: 1, incarnation: 7 }],
            partition_epoch: 9,
            adding: vec![],
            removing: vec![],
        };
        let json = to_json(&p);
        assert!(!String::from_utf8_lossy(&json).contains("adding"), "empty reassignment fields are left out");
        assert_eq!(serde_json::from_slice::<PartitionRecord>(&json).unwrap(), p);
        assert_eq!((p.shard_of(3), p.shard_of(4)), (Some(1), None));
        assert_eq!(p.isr_nodes(), vec![2, 1]);
    }
}

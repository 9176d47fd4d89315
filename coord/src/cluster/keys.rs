//! Where everything lives in the store, under one prefix per cluster
//! (`--etcd-prefix`, default `/laminar`; empty in a single node's embedded
//! store). The layout is documented byte for byte in docs/architecture.md
//! ("etcd key layout"); this file is its only implementation.
//!
//! ```text
//! <P>/format                               {"version":1}   refused by older builds
//! <P>/cluster/id                           cluster id (32 hex digits)
//! <P>/meta/brokers/<node id, 10 digits>    BrokerRecord, bound to the broker's lease
//! <P>/meta/controller                      ControllerRecord, bound to the controller's lease
//! <P>/meta/controller-epoch                decimal, +1 per election
//! <P>/meta/topics/<topic>                  TopicRecord
//! <P>/meta/partitions/<topic>/<partition>  PartitionRecord (10-digit partition)
//! <P>/meta/coordinators/<slot>             CoordinatorRecord (group coordinator slots)
//! <P>/offsets/<group %-escaped>/<topic>/<partition>   committed offset
//! <P>/groups/<group %-escaped>             group membership at its last rebalance
//! <P>/producer-ids/next-block              decimal
//! <P>/scram/<user %-escaped>/<mechanism>   ScramCredentialRecord (SCRAM-SHA-256 / SCRAM-SHA-512)
//! <P>/acls/<binding>                       one ACL binding (JSON; the key is all its fields, escaped)
//! ```
//!
//! Everything a broker must follow lives under `meta/`, watched as one
//! prefix so every broker sees its changes in one total order; committed
//! offsets and groups, written often, stay outside it so brokers are not
//! woken by other brokers' commits.

/// Group coordinator slots: a group's slot is a hash of its id, and each slot
/// is owned by one broker at a time (fixed for a cluster's life, like Kafka's
/// `offsets.topic.num.partitions`).
pub const GROUP_SLOTS: u32 = 64;

/// The data format this build writes; a store with a newer one is refused.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` is used as given, without a trailing `/` (`""` or `/laminar`).
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.trim_end_matches('/').to_string() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn format(&self) -> String {
        format!("{}/format", self.prefix)
    }
    pub fn cluster_id(&self) -> String {
        format!("{}/cluster/id", self.prefix)
    }
    /// Everything brokers follow (one watch).
    pub fn meta(&self) -> String {
        format!("{}/meta/", self.prefix)
    }
    pub fn brokers(&self) -> String {
        format!("{}/meta/brokers/", self.prefix)
    }
    pub fn broker(&self, node_id: i32) -> String {
        format!("{}/meta/brokers/{node_id:010}", self.prefix)
    }
    pub fn controller(&self) -> String {
        format!("{}/meta/controller", self.prefix)
    }
    pub fn controller_epoch(&self) -> String {
        format!("{}/meta/controller-epoch", self.prefix)
    }
    pub fn topics(&self) -> String {
        format!("{}/meta/topics/", self.prefix)
    }
    pub fn topic(&self, name: &str) -> String {
        format!("{}/meta/topics/{name}", self.prefix)
    }
    pub fn partitions(&self) -> String {
        format!("{}/meta/partitions/", self.prefix)
    }
    /// Every partition of `topic` (the trailing `/` keeps `a` from matching `a.b`).
    pub fn topic_partitions(&self, topic: &str) -> String {
        format!("{}/meta/partitions/{topic}/", self.prefix)
    }
    pub fn partition(&self, topic: &str, partition: i32) -> String {
        format!("{}/meta/partitions/{topic}/{partition:010}", self.prefix)
    }
    pub fn coordinators(&self) -> String {
        format!("{}/meta/coordinators/", self.prefix)
    }
    pub fn coordinator(&self, slot: u32) -> String {
        format!("{}/meta/coordinators/{slot:05}", self.prefix)
    }
    pub fn offsets(&self) -> String {
        format!("{}/offsets/", self.prefix)
    }
    pub fn group_offsets(&self, group: &str) -> String {
        format!("{}/offsets/{}/", self.prefix, escape(group))
    }
    pub fn offset(&self, group: &str, topic: &str, partition: i32) -> String {
        format!("{}{topic}/{partition}", self.group_offsets(group))
    }
    pub fn groups(&self) -> String {
        format!("{}/groups/", self.prefix)
    }
    pub fn group(&self, group: &str) -> String {
        format!("{}/groups/{}", self.prefix, escape(group))
    }
    pub fn producer_ids(&self) -> String {
        format!("{}/producer-ids/next-block", self.prefix)
    }

    /// Every ACL binding (the broker names the keys under it).
    pub fn acls(&self) -> String {
        format!("{}/acls/", self.prefix)
    }
    /// Every SASL/SCRAM credential (salted: no password is ever stored).
    pub fn scram_users(&self) -> String {
        format!("{}/scram/", self.prefix)
    }
    /// The credentials of one user, one key per mechanism.
    pub fn scram_user(&self, user: &str) -> String {
        format!("{}/scram/{}/", self.prefix, escape(user))
    }
    pub fn scram_credential(&self, user: &str, mechanism: &str) -> String {
        format!("{}{mechanism}", self.scram_user(user))
    }
    /// (user, mechanism) of a credential key.
    pub fn parse_scram(&self, key: &str) -> Option<(String, String)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("/scram/")?;
        let (user, mechanism) = rest.split_once('/')?;
        Some((unescape(user)?, mechanism.to_string()))
    }

    /// What a key under [`Keys::meta`] names.
    pub fn parse_meta(&self, key: &str) -> MetaKey {
        let Some(rest) = key.strip_prefix(&self.prefix).and_then(|k| k.strip_prefix("/meta/")) else {
            return MetaKey::Other;
        };
        if rest == "controller" {
            return MetaKey::Controller;
        }
        if rest == "controller-epoch" {
            return MetaKey::ControllerEpoch;
        }
        if let Some(id) = rest.strip_prefix("brokers/") {
            return id.parse().map_or(MetaKey::Other, MetaKey::Broker);
        }
        if let Some(name) = rest.strip_prefix("topics/") {
            return MetaKey::Topic(name.to_string());
        }
        if let Some(tp) = rest.strip_prefix("partitions/") {
            if let Some((topic, p)) = tp.rsplit_once('/') {
                if let Ok(p) = p.parse() {
                    return MetaKey::Partition(topic.to_string(), p);
                }
            }
            return MetaKey::Other;
        }
        if let Some(slot) = rest.strip_prefix("coordinators/") {
            return slot.parse().map_or(MetaKey::Other, MetaKey::Coordinator);
        }
        MetaKey::Other
    }

    /// (group, topic, partition) of a committed-offset key.
    pub fn parse_offset(&self, key: &str) -> Option<(String, String, i32)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("/offsets/")?;
        let mut parts = rest.splitn(3, '/');
        let group = unescape(parts.next()?)?;
        let topic = parts.next()?.to_string();
        let partition = parts.next()?.parse().ok()?;
        Some((group, topic, partition))
    }

    /// The group id of a group-metadata key.
    pub fn parse_group(&self, key: &str) -> Option<String> {
        unescape(key.strip_prefix(&self.prefix)?.strip_prefix("/groups/")?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaKey {
    Broker(i32),
    Controller,
    ControllerEpoch,
    Topic(String),
    Partition(String, i32),
    Coordinator(u32),
    Other,
}

/// The coordinator slot of a group (FNV-1a: stable across runs and builds).
pub fn group_slot(group: &str) -> u32 {
    (fnv1a(group.as_bytes()) % GROUP_SLOTS as u64) as u32
}

/// FNV-1a, 64 bits: the stable hash placement uses everywhere (std's hasher
/// is seeded per process).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Group ids are arbitrary strings; keep `/` (the key separator) and `%` out.
pub fn escape(group: &str) -> String {
    let mut out = String::with_capacity(group.len());
    for b in group.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn unescape(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_round_trip() {
        for prefix in ["", "/laminar", "/a/b/"] {
            let k = Keys::new(prefix);
            assert_eq!(k.parse_meta(&k.broker(7)), MetaKey::Broker(7));
            assert_eq!(k.parse_meta(&k.controller()), MetaKey::Controller);
            assert_eq!(k.parse_meta(&k.controller_epoch()), MetaKey::ControllerEpoch);
            // Topic names valid for Kafka but awkward as keys.
            for t in ["orders", "a.b", "..x", "-", "_.-", "x".repeat(249).as_str()] {
                assert_eq!(k.parse_meta(&k.topic(t)), MetaKey::Topic(t.to_string()));
                assert_eq!(k.parse_meta(&k.partition(t, 12)), MetaKey::Partition(t.to_string(), 12));
                assert!(k.partition(t, 0).starts_with(&k.topic_partitions(t)));
            }
            assert!(!k.partition("a.b", 0).starts_with(&k.topic_partitions("a")));
            assert_eq!(k.parse_meta(&k.coordinator(63)), MetaKey::Coordinator(63));
            assert_eq!(k.parse_meta(&k.offset("g", "t", 1)), MetaKey::Other);
            assert!(k.broker(1).starts_with(&k.meta()) && k.topic("t").starts_with(&k.meta()));
            assert!(!k.offset("g", "t", 1).starts_with(&k.meta()));
        }
    }

    #[test]
    fn offset_and_group_keys_round_trip_any_group_id() {
        let k = Keys::new("/laminar");
        for g in ["simple", "with/slash", "per%cent", "ünï code", ""] {
            let key = k.offset(g, "orders", 7);
            assert_eq!(k.parse_offset(&key), Some((g.to_string(), "orders".to_string(), 7)), "{key}");
            assert!(key.starts_with(&k.group_offsets(g)));
            assert_eq!(k.parse_group(&k.group(g)).as_deref(), Some(g));
        }
        assert!(!k.group_offsets("a").starts_with(&k.group_offsets("a%2F")));
        assert!(!k.group_offsets("a/b").starts_with(&k.group_offsets("a")));
    }

    #[test]
    fn scram_keys_round_trip_any_user_name() {
        let keys = Keys::new("/laminar");
        for user in ["alice", "a/b", "CN=x,O=y", "%41", "ü"] {
            let k = keys.scram_credential(user, "SCRAM-SHA-512");
            assert!(k.starts_with(&keys.scram_user(user)) && k.starts_with(&keys.scram_users()));
            assert_eq!(keys.parse_scram(&k), Some((user.to_string(), "SCRAM-SHA-512".to_string())));
        }
    }

    #[test]
    fn slots_are_stable() {
        assert_eq!(group_slot("g"), group_slot("g"));
        let mut counts = [0u32; GROUP_SLOTS as usize];
        for i in 0..6400 {
            counts[group_slot(&format!("group-{i}")) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}

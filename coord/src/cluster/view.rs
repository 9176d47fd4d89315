//! A broker's (or the ops tool's) picture of the cluster: everything under
//! `<P>/meta/`, rebuilt from one watch. Immutable once built — readers on any
//! thread hold an `Arc<ClusterView>` and never lock — and cheap to derive
//! from the previous one: a change to one partition copies only its topic's
//! list of partition pointers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::keys::{Keys, MetaKey, GROUP_SLOTS};
use super::records::{BrokerRecord, ControllerRecord, CoordinatorRecord, PartitionRecord, TopicRecord};
use crate::{LeaseId, Versioned, WatchEvent, WatchItem};

/// A record and the store revisions that describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub record: T,
    /// `mod_revision`: what a compare-and-swap of this record compares.
    pub version: u64,
    pub create_revision: u64,
    pub lease: LeaseId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicView {
    pub name: String,
    pub topic: Stored<TopicRecord>,
    /// Index = partition; `None` until the controller has placed it.
    pub partitions: Vec<Option<Arc<Stored<PartitionRecord>>>>,
}

impl TopicView {
    pub fn id(&self) -> uuid::Uuid {
        self.topic.record.id
    }
    pub fn partition_count(&self) -> i32 {
        self.topic.record.partitions
    }
    pub fn partition(&self, p: i32) -> Option<&Stored<PartitionRecord>> {
        if p < 0 || p >= self.partition_count() {
            return None;
        }
        self.partitions.get(p as usize).and_then(|x| x.as_deref())
    }
    /// Every partition of the record has been placed.
    pub fn fully_placed(&self) -> bool {
        (0..self.partition_count()).all(|p| self.partition(p).is_some())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Store revision this view reflects.
    pub revision: u64,
    pub brokers: BTreeMap<i32, Arc<Stored<BrokerRecord>>>,
    pub controller: Option<Stored<ControllerRecord>>,
    pub controller_epoch: u64,
    pub topics: HashMap<String, Arc<TopicView>>,
    pub topic_names_by_id: HashMap<uuid::Uuid, String>,
    /// Index = slot.
    pub coordinators: Vec<Option<Stored<CoordinatorRecord>>>,
    /// Partition records whose topic record is not (or no longer) there:
    /// held until it appears, dropped with a topic's deletion.
    orphans: HashMap<String, BTreeMap<i32, Arc<Stored<PartitionRecord>>>>,
    /// Keys that did not parse (a newer format, hand-edits): name and reason.
    pub unreadable: Vec<(String, String)>,
}

impl ClusterView {
    pub fn empty() -> ClusterView {
        ClusterView { coordinators: vec![None; GROUP_SLOTS as usize], ..Default::default() }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicView>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &uuid::Uuid) -> Option<&Arc<TopicView>> {
        self.topic_names_by_id.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn partition(&self, topic: &str, p: i32) -> Option<&Stored<PartitionRecord>> {
        self.topics.get(topic)?.partition(p)
    }

    pub fn has_partition(&self, topic: &str, p: i32) -> bool {
        self.topics.get(topic).is_some_and(|t| (0..t.partition_count()).contains(&p))
    }

    /// Topic names, sorted, for stable Metadata answers.
    pub fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn broker(&self, node: i32) -> Option<&Stored<BrokerRecord>> {
        self.brokers.get(&node).map(|b| &**b)
    }

    /// The incarnation (lease) of a registered broker.
    pub fn incarnation(&self, node: i32) -> Option<LeaseId> {
        self.brokers.get(&node).map(|b| b.lease)
    }

    pub fn controller_id(&self) -> Option<i32> {
        self.controller.as_ref().map(|c| c.record.node_id)
    }

    pub fn coordinator(&self, slot: u32) -> Option<&Stored<CoordinatorRecord>> {
        self.coordinators.get(slot as usize).and_then(|c| c.as_ref())
    }

    /// A view with `item` applied (the view is immutable: readers keep theirs).
    pub fn apply(&self, keys: &Keys, item: &WatchItem) -> ClusterView {
        match item {
            WatchItem::Reset { revision, entries } => {
                let mut v = ClusterView::empty();
                for (key, value) in entries {
                    v.put(keys, key, value);
                }
                v.revision = *revision;
                v
            }
            WatchItem::Changes { revision, events } => {
                let mut v = self.clone();
                v.unreadable.clear();
                for e in events {
                    match e {
                        WatchEvent::Put { key, value } => v.put(keys, key, value),
                        WatchEvent::Delete { key } => v.delete(keys, key),
                    }
                }
                v.revision = *revision;
                v
            }
        }
    }

    fn put(&mut self, keys: &Keys, key: &str, value: &Versioned) {
        let parsed = keys.parse_meta(key);
        fn stored<T>(r: T, v: &Versioned) -> Stored<T> {
            Stored { record: r, version: v.version, create_revision: v.create_revision, lease: v.lease }
        }
        match parsed {
            MetaKey::Broker(id) => match serde_json::from_slice::<BrokerRecord>(&value.value) {
                Ok(r) => {
                    self.brokers.insert(id, Arc::new(stored(r, value)));
                }
                Err(e) => self.unreadable.push((key.to_string(), e.to_string())),
            },
            MetaKey::Controller => match serde_json::from_slice::<ControllerRecord>(&value.value) {
                Ok(r) => self.controller = Some(stored(r, value)),
                Err(e) => self.unreadable.push((key.to_string(), e.to_string())),
            },
            MetaKey::ControllerEpoch => {
                self.controller_epoch = String::from_utf8_lossy(&value.value).trim().parse().unwrap_or(0);
            }
            MetaKey::Topic(name) => match serde_json::from_slice::<TopicRecord>(&value.value) {
                Ok(r) => self.put_topic(name, stored(r, value)),
                Err(e) => self.unreadable.push((key.to_string(), e.to_string())),
            },
            MetaKey::Partition(topic, p) => match serde_json::from_slice::<PartitionRecord>(&value.value) {
                Ok(r) if p >= 0 => self.put_partition(topic, p, Arc::new(stored(r, value))),
                Ok(_) => self.unreadable.push((key.to_string(), "negative partition".into())),
                Err(e) => self.unreadable.push((key.to_string(), e.to_string())),
            },
            MetaKey::Coordinator(slot) => match serde_json::from_slice::<CoordinatorRecord>(&value.value) {
                Ok(r) if slot < GROUP_SLOTS => self.coordinators[slot as usize] = Some(stored(r, value)),
                Ok(_) => self.unreadable.push((key.to_string(), format!("slot {slot} ≥ {GROUP_SLOTS}"))),
                Err(e) => self.unreadable.push((key.to_string(), e.to_string())),
            },
            MetaKey::Other => {}
        }
    }

    fn put_topic(&mut self, name: String, topic: Stored<TopicRecord>) {
        let id = topic.record.id;
        let count = topic.record.partitions.max(0) as usize;
        let mut partitions: Vec<Option<Arc<Stored<PartitionRecord>>>> = match self.topics.get(&name) {
            // Same incarnation of the topic (configs or partition count changed): keep its partitions.
            Some(old) if old.topic.create_revision == topic.create_revision => old.partitions.clone(),
            Some(old) => {
                self.topic_names_by_id.remove(&old.id());
                Vec::new()
            }
            None => Vec::new(),
        };
        if let Some(waiting) = self.orphans.remove(&name) {
            for (p, rec) in waiting {
                if rec.record.topic_id == id {
                    set_slot(&mut partitions, p as usize, rec);
                }
            }
        }
        partitions.resize(count.max(partitions.len()), None);
        self.topic_names_by_id.insert(id, name.clone());
        self.topics.insert(name.clone(), Arc::new(TopicView { name, topic, partitions }));
    }

    fn put_partition(&mut self, topic: String, p: i32, rec: Arc<Stored<PartitionRecord>>) {
        match self.topics.get_mut(&topic) {
            Some(t) if t.id() == rec.record.topic_id => {
                set_slot(&mut Arc::make_mut(t).partitions, p as usize, rec);
            }
            // Another incarnation's leftovers, or a record racing its topic.
            _ => {
                self.orphans.entry(topic).or_default().insert(p, rec);
            }
        }
    }

    fn delete(&mut self, keys: &Keys, key: &str) {
        match keys.parse_meta(key) {
            MetaKey::Broker(id) => {
                self.brokers.remove(&id);
            }
            MetaKey::Controller => self.controller = None,
            MetaKey::ControllerEpoch => self.controller_epoch = 0,
            MetaKey::Topic(name) => {
                if let Some(old) = self.topics.remove(&name) {
                    self.topic_names_by_id.remove(&old.id());
                }
                self.orphans.remove(&name);
            }
            MetaKey::Partition(topic, p) => {
                if let Some(t) = self.topics.get_mut(&topic) {
                    if let Some(slot) = Arc::make_mut(t).partitions.get_mut(p as usize) {
                        *slot = None;
                    }
                }
                if let Some(o) = self.orphans.get_mut(&topic) {
                    o.remove(&p);
                }
            }
            MetaKey::Coordinator(slot) => {
                if let Some(c) = self.coordinators.get_mut(slot as usize) {
                    *c = None;
                }
            }
            MetaKey::Other => {}
        }
    }
}

fn set_slot<T>(v: &mut Vec<Option<T>>, i: usize, value: T) {
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i] = Some(value);
}

#[cfg(test)]
mod tests {
    use super::super::records::{to_json, IsrMember};
    use super::*;

    fn put(key: String, value: Vec<u8>, rev: u64) -> WatchEvent {
        WatchEvent::Put { key, value: Versioned { value, version: rev, create_revision: rev, lease: 0 } }
    }

    fn topic(id: uuid::Uuid, partitions: i32) -> Vec<u8> {
        to_json(&TopicRecord {
            id,
            partitions,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Default::default(),
        })
    }

    fn partition(topic_id: uuid::Uuid, leader: i32) -> Vec<u8> {
        to_json(&PartitionRecord {
            topic_id,
            replicas: vec![leader],
            shards: vec![0],
            leader,
            leader_epoch: 0,
            leader_incarnation: 1,
            isr: vec![IsrMember { node: leader, incarnation: 1 }],
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        })
    }

    #[test]
    fn builds_from_changes_and_orders_partitions_under_topics() {
        let k = Keys::new("/laminar");
        let id = uuid::Uuid::new_v4();
        let v0 = ClusterView::empty();
        // A partition record may arrive before its topic: it waits.
        let v1 = v0.apply(
            &k,
            &WatchItem::Changes { revision: 5, events: vec![put(k.partition("t", 1), partition(id, 2), 5)] },
        );
        assert!(v1.topic("t").is_none());
        let v2 = v1.apply(
            &k,
            &WatchItem::Changes {
                revision: 6,
                events: vec![put(k.topic("t"), topic(id, 2), 6), put(k.partition("t", 0), partition(id, 1), 6)],
            },
        );
        let t = v2.topic("t").unwrap();
        assert!(t.fully_placed());
        assert_eq!(t.partition(1).unwrap().record.leader, 2);
        assert_eq!(v2.topic_by_id(&id).unwrap().name, "t");
        assert!(v1.topic("t").is_none(), "earlier views are untouched");
        // Deleting the topic and its partitions together (one txn).
        let v3 = v2.apply(
            &k,
            &WatchItem::Changes {
                revision: 7,
                events: vec![
                    WatchEvent::Delete { key: k.topic("t") },
                    WatchEvent::Delete { key: k.partition("t", 0) },
                    WatchEvent::Delete { key: k.partition("t", 1) },
                ],
            },
        );
        assert!(v3.topic("t").is_none() && v3.topic_names_by_id.is_empty());
        // Re-created under a new id: the old partitions never show through.
        let id2 = uuid::Uuid::new_v4();
        let v4 = v3.apply(&k, &WatchItem::Changes { revision: 8, events: vec![put(k.topic("t"), topic(id2, 1), 8)] });
        assert!(v4.topic("t").unwrap().partition(0).is_none());
        let stale = v4.apply(
            &k,
            &WatchItem::Changes { revision: 9, events: vec![put(k.partition("t", 0), partition(id, 3), 9)] },
        );
        assert!(stale.topic("t").unwrap().partition(0).is_none(), "a record of the old topic id is not adopted");
    }

    #[test]
    fn reset_replaces_everything_and_bad_records_are_reported() {
        let k = Keys::new("");
        let id = uuid::Uuid::new_v4();
        let v = ClusterView::empty().apply(
            &k,
            &WatchItem::Reset {
                revision: 3,
                entries: vec![
                    (k.topic("a"), Versioned::new(topic(id, 1), 2)),
                    (k.partition("a", 0), Versioned::new(partition(id, 1), 3)),
                    (k.topic("bad"), Versioned::new(b"{not json".to_vec(), 3)),
                ],
            },
        );
        assert_eq!(v.revision, 3);
        assert!(v.topic("a").unwrap().fully_placed());
        assert_eq!(v.unreadable.len(), 1);
        assert_eq!(v.coordinators.len(), GROUP_SLOTS as usize);
    }
}

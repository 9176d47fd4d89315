//! The topic catalog: which topics exist, their ids, partition counts and config
//! overrides. Readers on every shard load it lock-free (`ArcSwap`); the
//! controller replaces it whole after persisting a change through `coord`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use laminar_engine::LogConfig;
use serde::{Deserialize, Serialize};

/// One topic as stored under `/topics/<name>` in the metadata store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: String,
    pub record: TopicRecord,
    /// The engine config the overrides resolve to (validated on create/alter).
    pub log_config: LogConfig,
}

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub topics: HashMap<String, Arc<TopicMeta>>,
    pub by_id: HashMap<uuid::Uuid, Arc<TopicMeta>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }
    pub fn with_topic(&self, meta: TopicMeta) -> Catalog {
        let mut c = self.clone();
        let meta = Arc::new(meta);
        if let Some(old) = c.topics.insert(meta.name.clone(), meta.clone()) {
            c.by_id.remove(&old.record.id);
        }
        c.by_id.insert(meta.record.id, meta);
        c
    }
    pub fn without_topic(&self, name: &str) -> Catalog {
        let mut c = self.clone();
        if let Some(old) = c.topics.remove(name) {
            c.by_id.remove(&old.record.id);
        }
        c
    }
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.get(topic).is_some_and(|m| (0..m.record.partitions).contains(&partition))
    }
    /// Topic names, sorted, for stable Metadata answers.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.keys().cloned().collect();
        v.sort();
        v
    }
}

pub type SharedCatalog = Arc<ArcSwap<Catalog>>;

pub const TOPICS_PREFIX: &str = "/topics/";

pub fn topic_key(name: &str) -> String {
    format!("{TOPICS_PREFIX}{name}")
}

/// Kafka's topic name rule: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters, the limit is 249", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name '{name}' contains '{c}'; allowed: ASCII letters, digits, '.', '_', '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_2-x").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn catalog_updates_are_copy_on_write() {
        let rec = TopicRecord { id: uuid::Uuid::new_v4(), partitions: 3, configs: BTreeMap::new() };
        let meta = TopicMeta { name: "t".into(), record: rec.clone(), log_config: LogConfig::default() };
        let a = Catalog::default();
        let b = a.with_topic(meta);
        assert!(a.get("t").is_none());
        assert_eq!(b.get("t").unwrap().record.partitions, 3);
        assert!(b.by_id.contains_key(&rec.id));
        let c = b.without_topic("t");
        assert!(c.topics.is_empty() && c.by_id.is_empty());
    }
}

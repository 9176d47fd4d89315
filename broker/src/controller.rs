//! The control plane: topic creation, deletion, partition growth and config
//! changes. Serialized by one async mutex (never held on the data path);
//! persisted through `coord` before any shard or client sees the change.

use std::collections::BTreeMap;
use std::sync::Arc;

use laminar_coord::MetaStore;
use tokio::sync::oneshot;

use crate::catalog::{self, Catalog, SharedCatalog, TopicMeta, TopicRecord};
use crate::errors::{self, KafkaError};
use crate::router::Router;
use crate::shard::ShardMsg;
use crate::topic_config;

/// Upper bound on partitions per topic (each is a directory and open files).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

pub struct Controller {
    store: Arc<dyn MetaStore>,
    catalog: SharedCatalog,
    router: Router,
    topic_defaults: BTreeMap<String, String>,
    lock: tokio::sync::Mutex<()>,
}

impl Controller {
    pub fn new(
        store: Arc<dyn MetaStore>,
        catalog: SharedCatalog,
        router: Router,
        topic_defaults: BTreeMap<String, String>,
    ) -> Self {
        Controller { store, catalog, router, topic_defaults, lock: tokio::sync::Mutex::new(()) }
    }

    /// Loads the persisted catalog (at start, before shards open partitions).
    pub async fn load_catalog(
        store: &Arc<dyn MetaStore>,
        defaults: &BTreeMap<String, String>,
    ) -> anyhow::Result<Catalog> {
        let mut cat = Catalog::default();
        for (key, v) in store.list(catalog::TOPICS_PREFIX).await? {
            let name = key.trim_start_matches(catalog::TOPICS_PREFIX).to_string();
            let record: TopicRecord = serde_json::from_slice(&v.value)?;
            let log_config = topic_config::log_config(&record.configs, defaults)
                .map_err(|e| anyhow::anyhow!("topic {name}: stored config invalid: {e}"))?;
            cat = cat.with_topic(TopicMeta { name, record, log_config });
        }
        Ok(cat)
    }

    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.topic_defaults
    }

    fn meta(&self, name: &str, record: TopicRecord) -> Result<TopicMeta, KafkaError> {
        let log_config = topic_config::log_config(&record.configs, &self.topic_defaults)
            .map_err(|e| KafkaError::new(errors::INVALID_CONFIG, e))?;
        Ok(TopicMeta { name: name.to_string(), record, log_config })
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, KafkaError> {
        catalog::validate_topic_name(name).map_err(|e| KafkaError::new(errors::INVALID_TOPIC_EXCEPTION, e))?;
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(KafkaError::new(
                errors::INVALID_PARTITIONS,
                format!("partitions must be in [1, {PARTITIONS_PER_TOPIC_MAX}], got {partitions}"),
            ));
        }
        if replication_factor != 1 {
            return Err(KafkaError::new(
                errors::INVALID_REPLICATION_FACTOR,
                format!("replication factor {replication_factor} is larger than the 1 available broker"),
            ));
        }
        let _guard = self.lock.lock().await;
        if self.catalog.load().get(name).is_some() {
            return Err(KafkaError::new(errors::TOPIC_ALREADY_EXISTS, format!("topic '{name}' already exists")));
        }
        let record = TopicRecord { id: uuid::Uuid::new_v4(), partitions, configs };
        let meta = Arc::new(self.meta(name, record)?);
        if validate_only {
            return Ok(meta);
        }
        self.persist(name, &meta.record).await?;
        self.open_on_shards(&meta, 0..partitions).await?;
        self.catalog.store(Arc::new(self.catalog.load().with_topic((*meta).clone())));
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, KafkaError> {
        let _guard = self.lock.lock().await;
        let Some(meta) = self.catalog.load().get(name).cloned() else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        // Hide it first so no new request reaches its logs, then drop the data.
        self.store.delete(&catalog::topic_key(name)).await.map_err(storage)?;
        self.catalog.store(Arc::new(self.catalog.load().without_topic(name)));
        for shard in 0..self.router.shards() {
            self.ask(shard, |reply| ShardMsg::RemoveTopic { name: name.to_string(), reply }).await?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(meta.record.id)
    }

    pub async fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), KafkaError> {
        let _guard = self.lock.lock().await;
        let Some(meta) = self.catalog.load().get(name).cloned() else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        let old = meta.record.partitions;
        if count <= old {
            return Err(KafkaError::new(
                errors::INVALID_PARTITIONS,
                format!("topic '{name}' has {old} partitions; the new count {count} must be larger"),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err(KafkaError::new(
                errors::INVALID_PARTITIONS,
                format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let mut record = meta.record.clone();
        record.partitions = count;
        let new_meta = Arc::new(self.meta(name, record)?);
        self.persist(name, &new_meta.record).await?;
        self.open_on_shards(&new_meta, old..count).await?;
        self.catalog.store(Arc::new(self.catalog.load().with_topic((*new_meta).clone())));
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs semantics; the
    /// incremental API computes the full set first).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), KafkaError>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let _guard = self.lock.lock().await;
        let Some(meta) = self.catalog.load().get(name).cloned() else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        let mut record = meta.record.clone();
        edit(&mut record.configs)?;
        let new_meta = Arc::new(self.meta(name, record)?);
        if validate_only {
            return Ok(());
        }
        self.persist(name, &new_meta.record).await?;
        self.catalog.store(Arc::new(self.catalog.load().with_topic((*new_meta).clone())));
        for shard in 0..self.router.shards() {
            let m = new_meta.clone();
            self.ask(shard, |reply| ShardMsg::SetConfig { meta: m, reply }).await?;
        }
        Ok(())
    }

    async fn persist(&self, name: &str, record: &TopicRecord) -> Result<(), KafkaError> {
        let value = serde_json::to_vec(record).expect("topic record serializes");
        self.store.put(&catalog::topic_key(name), value).await.map_err(storage)?;
        Ok(())
    }

    async fn open_on_shards(&self, meta: &Arc<TopicMeta>, range: std::ops::Range<i32>) -> Result<(), KafkaError> {
        for shard in 0..self.router.shards() {
            let (m, r) = (meta.clone(), range.clone());
            self.ask(shard, |reply| ShardMsg::OpenPartitions { meta: m, partitions: r, reply }).await?;
        }
        Ok(())
    }

    async fn ask<T>(
        &self,
        shard: usize,
        msg: impl FnOnce(oneshot::Sender<Result<T, KafkaError>>) -> ShardMsg,
    ) -> Result<T, KafkaError> {
        let (tx, rx) = oneshot::channel();
        if self.router.send(shard, msg(tx)).is_err() {
            return Err(KafkaError::new(errors::KAFKA_STORAGE_ERROR, "broker is shutting down"));
        }
        rx.await.map_err(|_| KafkaError::new(errors::KAFKA_STORAGE_ERROR, "broker is shutting down"))?
    }
}

fn storage(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::new(errors::KAFKA_STORAGE_ERROR, format!("metadata store: {e}"))
}

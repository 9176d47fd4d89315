//! Topic changes asked of any broker (CreateTopics, DeleteTopics,
//! CreatePartitions, configs, auto-create): validated here, then written to
//! the store as one compare-and-swap each. That write is the change; this
//! broker's memory, and every other broker's, follows it through the watch,
//! so no dropped connection or failure half-way can leave memory and the
//! store disagreeing (the single node's old bug: journal written, memory not).
//! The controller places new partitions; the request waits, bounded by its
//! timeout, until the change is visible here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use laminar_coord::cluster::records::to_json;
use laminar_coord::cluster::{ClusterView, TopicRecord, TopicView};
use laminar_coord::{Compare, CoordError, Op};

use super::Cluster;
use crate::errors::{self, KafkaError};
use crate::{placement, topic_config};

/// Upper bound on partitions per topic (each is a directory and open files
/// on every replica).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// How long a request waits for its change to show when it gave no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// What a created topic looks like to the client.
pub struct Created {
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

pub struct Admin {
    pub cluster: Arc<Cluster>,
    pub topic_defaults: BTreeMap<String, String>,
    /// `default.replication.factor`: for CreateTopics asking for -1 and auto-create.
    pub default_replication_factor: i16,
}

fn store_error(e: CoordError) -> KafkaError {
    match e {
        // Retriable for every client: the store may answer on the next try.
        CoordError::Unavailable(m) => {
            KafkaError::new(errors::REQUEST_TIMED_OUT, format!("metadata store unavailable: {m}"))
        }
        CoordError::TooLarge { .. } => KafkaError::new(errors::POLICY_VIOLATION, e.to_string()),
        e => KafkaError::new(errors::UNKNOWN_SERVER_ERROR, format!("metadata store: {e}")),
    }
}

impl Admin {
    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.topic_defaults
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        wait: Duration,
    ) -> Result<Created, KafkaError> {
        crate::topic_name::validate(name).map_err(|e| KafkaError::new(errors::INVALID_TOPIC_EXCEPTION, e))?;
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(KafkaError::new(
                errors::INVALID_PARTITIONS,
                format!("partitions must be in [1, {PARTITIONS_PER_TOPIC_MAX}], got {partitions}"),
            ));
        }
        let rf = if replication_factor == -1 { self.default_replication_factor } else { replication_factor };
        let view = self.cluster.view();
        let live = view.brokers.len();
        if rf < 1 || rf as usize > live {
            return Err(KafkaError::new(
                errors::INVALID_REPLICATION_FACTOR,
                format!("replication factor {rf} is outside [1, {live}]: {live} broker(s) are alive"),
            ));
        }
        topic_config::log_config(&configs, &self.topic_defaults)
            .map_err(|e| KafkaError::new(errors::INVALID_CONFIG, e))?;
        topic_config::min_insync_replicas(&configs, &self.topic_defaults)
            .map_err(|e| KafkaError::new(errors::INVALID_CONFIG, e))?;
        if view.topic(name).is_some() {
            return Err(KafkaError::new(errors::TOPIC_ALREADY_EXISTS, format!("topic '{name}' already exists")));
        }
        check_room(&view, partitions, rf)?;
        let record = TopicRecord { id: uuid::Uuid::new_v4(), partitions, replication_factor: rf, configs };
        if validate_only {
            return Ok(created(&record));
        }
        let key = self.cluster.keys.topic(name);
        let r = self.cluster.store.txn(vec![Compare::absent(key.clone())], vec![Op::put(key, to_json(&record))]).await;
        if !r.map_err(store_error)?.applied {
            return Err(KafkaError::new(errors::TOPIC_ALREADY_EXISTS, format!("topic '{name}' already exists")));
        }
        tracing::info!(topic = name, partitions, replication_factor = rf, "created topic");
        let id = record.id;
        self.wait_placed(name, |t| t.id() == id, wait).await?;
        Ok(created(&record))
    }

    pub async fn delete_topic(&self, name: &str, wait: Duration) -> Result<uuid::Uuid, KafkaError> {
        let view = self.cluster.view();
        let Some(t) = view.topic(name) else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        let keys = &self.cluster.keys;
        // The topic and every partition record go in one txn: no broker ever
        // sees a topic without its partitions' fate decided.
        let r = self
            .cluster
            .store
            .txn(
                vec![Compare::created(keys.topic(name), t.topic.create_revision)],
                vec![Op::delete(keys.topic(name)), Op::delete_prefix(keys.topic_partitions(name))],
            )
            .await
            .map_err(store_error)?;
        if !r.applied {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        }
        tracing::info!(topic = name, "deleted topic");
        let id = t.id();
        self.cluster.wait_for(wait, |v| v.topic_by_id(&id).is_none().then_some(())).await;
        self.cluster.wait_applied(r.revision, wait).await;
        Ok(id)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        wait: Duration,
    ) -> Result<(), KafkaError> {
        let view = self.cluster.view();
        let Some(t) = view.topic(name).cloned() else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        let old = t.partition_count();
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
        check_room(&view, count - old, t.topic.record.replication_factor)?;
        if validate_only {
            return Ok(());
        }
        let mut record = t.topic.record.clone();
        record.partitions = count;
        self.replace_topic(name, &t, &record).await?;
        let id = t.id();
        self.wait_placed(name, |v| v.id() == id && v.partition_count() == count, wait).await
    }

    /// Replaces a topic's config overrides (AlterConfigs semantics; the
    /// incremental API computes the full set first).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), KafkaError>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let view = self.cluster.view();
        let Some(t) = view.topic(name).cloned() else {
            return Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        let mut record = t.topic.record.clone();
        edit(&mut record.configs)?;
        topic_config::log_config(&record.configs, &self.topic_defaults)
            .map_err(|e| KafkaError::new(errors::INVALID_CONFIG, e))?;
        topic_config::min_insync_replicas(&record.configs, &self.topic_defaults)
            .map_err(|e| KafkaError::new(errors::INVALID_CONFIG, e))?;
        if validate_only {
            return Ok(());
        }
        let revision = self.replace_topic(name, &t, &record).await?;
        self.cluster.wait_applied(revision, DEFAULT_WAIT).await;
        Ok(())
    }

    /// Starts moving a partition to `target` replicas, or cancels the move in
    /// progress (`None`): one compare-and-swap of its record
    /// (`reassignment.rs`); the controller completes it once the target
    /// replicas are in sync. Answers once this broker has applied the write.
    pub async fn reassign(&self, name: &str, partition: i32, target: Option<&[i32]>) -> Result<(), KafkaError> {
        let view = self.cluster.view();
        let Some(stored) = view.topic(name).and_then(|t| t.partition(partition)).cloned() else {
            return Err(KafkaError::new(
                errors::UNKNOWN_TOPIC_OR_PARTITION,
                format!("{name}-{partition} does not exist"),
            ));
        };
        let next = match target {
            Some(target) => {
                let mut loads = placement::loads(&view);
                super::reassignment::start(&stored.record, target, &view, &mut loads)?
            }
            None => super::reassignment::cancel(&stored.record)?,
        };
        let key = self.cluster.keys.partition(name, partition);
        let r = self
            .cluster
            .store
            .txn(vec![Compare::version(key.clone(), stored.version)], vec![Op::put(key, to_json(&next))])
            .await
            .map_err(store_error)?;
        if !r.applied {
            // The leader changed its ISR or the controller moved it meanwhile:
            // retriable, as for any admin write that lost a race.
            return Err(KafkaError::new(
                errors::REQUEST_TIMED_OUT,
                format!("{name}-{partition} changed concurrently; retry"),
            ));
        }
        tracing::info!(
            partition = %format!("{name}-{partition}"),
            replicas = ?next.replicas,
            adding = ?next.adding,
            removing = ?next.removing,
            "reassignment {}", if target.is_some() { "started" } else { "cancelled" }
        );
        self.cluster.wait_applied(r.revision, DEFAULT_WAIT).await;
        Ok(())
    }

    /// ElectLeaders (preferred): moves each partition's leadership to its
    /// first replica where that one is in sync (`controller::preferred_election`),
    /// one compare-and-swap per partition; answers once this broker has
    /// applied the writes. A result per partition, in order.
    pub async fn elect_preferred(&self, partitions: &[(String, i32)]) -> Vec<Result<(), KafkaError>> {
        let view = self.cluster.view();
        let mut out = Vec::with_capacity(partitions.len());
        let mut last_revision = 0;
        for (name, partition) in partitions {
            let Some(stored) = view.topic(name).and_then(|t| t.partition(*partition)) else {
                out.push(Err(KafkaError::unknown_partition(name, *partition)));
                continue;
            };
            let next = match super::controller::preferred_election(&stored.record, &view) {
                Ok(next) => next,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let key = self.cluster.keys.partition(name, *partition);
            let r = self
                .cluster
                .store
                .txn(vec![Compare::version(key.clone(), stored.version)], vec![Op::put(key, to_json(&next))])
                .await;
            out.push(match r {
                Ok(r) if r.applied => {
                    tracing::info!(
                        partition = %format!("{name}-{partition}"),
                        leader = next.leader,
                        epoch = next.leader_epoch,
                        "preferred leader elected (ElectLeaders)"
                    );
                    last_revision = last_revision.max(r.revision);
                    Ok(())
                }
                // Its leader changed the ISR or the controller moved it meanwhile.
                Ok(_) => Err(KafkaError::new(
                    errors::REQUEST_TIMED_OUT,
                    format!("{name}-{partition} changed concurrently; retry"),
                )),
                Err(e) => Err(store_error(e)),
            });
        }
        if last_revision > 0 {
            self.cluster.wait_applied(last_revision, DEFAULT_WAIT).await;
        }
        out
    }

    async fn replace_topic(&self, name: &str, t: &TopicView, record: &TopicRecord) -> Result<u64, KafkaError> {
        let key = self.cluster.keys.topic(name);
        let r = self
            .cluster
            .store
            .txn(vec![Compare::version(key.clone(), t.topic.version)], vec![Op::put(key, to_json(record))])
            .await
            .map_err(store_error)?;
        if !r.applied {
            // Changed (or deleted) concurrently. NOT_CONTROLLER is what admin
            // clients retry on (after refreshing metadata), which is what is wanted.
            return Err(KafkaError::new(errors::NOT_CONTROLLER, format!("topic '{name}' changed concurrently; retry")));
        }
        Ok(r.revision)
    }

    /// Waits until the topic is placed with a leader for every partition and
    /// this broker has applied that view (its own partitions are open).
    async fn wait_placed(
        &self,
        name: &str,
        is_it: impl Fn(&TopicView) -> bool,
        wait: Duration,
    ) -> Result<(), KafkaError> {
        let ready = self
            .cluster
            .wait_for(wait, |v| {
                let t = v.topic(name)?;
                let placed =
                    is_it(t) && (0..t.partition_count()).all(|p| t.partition(p).is_some_and(|s| s.record.has_leader()));
                placed.then_some(v.revision)
            })
            .await;
        match ready {
            Some(revision) if self.cluster.wait_applied(revision, wait).await => Ok(()),
            _ => Err(KafkaError::new(
                errors::REQUEST_TIMED_OUT,
                format!(
                    "topic '{name}' was written but not placed within {wait:?} (is a controller alive?); it will be"
                ),
            )),
        }
    }
}

fn created(record: &TopicRecord) -> Created {
    Created {
        id: record.id,
        partitions: record.partitions,
        replication_factor: record.replication_factor,
        configs: record.configs.clone(),
    }
}

/// Refuses what the live brokers cannot hold within their file budgets,
/// before anything is written (a create must never half-happen).
fn check_room(view: &ClusterView, partitions: i32, rf: i16) -> Result<(), KafkaError> {
    let loads = placement::loads(view);
    let need = u64::try_from(partitions).unwrap_or(u64::MAX).saturating_mul(rf.max(1) as u64);
    let room: u64 = loads.values().map(|l| l.capacity_left as u64).sum();
    let brokers_with_room = loads.values().filter(|l| l.capacity_left > 0).count();
    if need > room || brokers_with_room < rf as usize {
        return Err(KafkaError::new(
            errors::POLICY_VIOLATION,
            format!(
                "{partitions} partition(s) × replication factor {rf} need {need} replica slots; the live brokers have \
                 {room} left within their open-file limits (raise `ulimit -n` or add brokers)"
            ),
        ));
    }
    Ok(())
}

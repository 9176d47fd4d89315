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

    /// Creates a topic of `partitions` × `replication_factor` replicas placed
    /// by the controller, or, when `assignments` is not empty (the caller
    /// checked that both counts are then -1, as Kafka requires), with the
    /// replicas it names (a manual assignment: `manual_assignment`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: &[(i32, Vec<i32>)],
        configs: BTreeMap<String, String>,
        validate_only: bool,
        wait: Duration,
    ) -> Result<Created, KafkaError> {
        crate::topic_name::validate(name).map_err(|e| KafkaError::new(errors::INVALID_TOPIC_EXCEPTION, e))?;
        let view = self.cluster.view();
        let (partitions, rf, assignments) = if assignments.is_empty() {
            let rf = if replication_factor == -1 { self.default_replication_factor } else { replication_factor };
            (partitions, rf, BTreeMap::new())
        } else {
            let (assigned, rf) = manual_assignment(&view, assignments, 0, None)?;
            (assigned.len() as i32, rf, assigned)
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(KafkaError::new(
                errors::INVALID_PARTITIONS,
                format!("partitions must be in [1, {PARTITIONS_PER_TOPIC_MAX}], got {partitions}"),
            ));
        }
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
        if assignments.is_empty() {
            check_room(&view, partitions, rf)?;
        } else {
            check_room_on(&view, &assignments)?;
        }
        let record = TopicRecord { id: uuid::Uuid::new_v4(), partitions, replication_factor: rf, configs, assignments };
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

    /// Grows a topic to `count` partitions; `assignments`, if any, names the
    /// brokers of each new one (one list per new partition, in order).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: &[Vec<i32>],
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
        let rf = t.topic.record.replication_factor;
        let assigned = if assignments.is_empty() {
            check_room(&view, count - old, rf)?;
            BTreeMap::new()
        } else {
            if assignments.len() != (count - old) as usize {
                return Err(KafkaError::new(
                    errors::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "attempted to add {} partition(s), but {} assignment(s) were given",
                        count - old,
                        assignments.len()
                    ),
                ));
            }
            let numbered: Vec<(i32, Vec<i32>)> = (old..).zip(assignments.iter().cloned()).collect();
            let (assigned, _) = manual_assignment(&view, &numbered, old, Some(rf))?;
            check_room_on(&view, &assigned)?;
            assigned
        };
        if validate_only {
            return Ok(());
        }
        let mut record = t.topic.record.clone();
        record.partitions = count;
        record.assignments.extend(assigned);
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

/// Checks a manual replica assignment as Kafka's controller does and returns
/// it by partition with its replication factor: partitions numbered from
/// `first` on without gaps or repeats, each with at least one broker, no
/// broker twice, every broker live in the cluster view, and the same number
/// of replicas everywhere (`rf`, when the topic has one already). Errors are
/// INVALID_REPLICA_ASSIGNMENT, naming the partition or broker.
fn manual_assignment(
    view: &ClusterView,
    assignments: &[(i32, Vec<i32>)],
    first: i32,
    rf: Option<i16>,
) -> Result<(BTreeMap<i32, Vec<i32>>, i16), KafkaError> {
    let bad = |m: String| KafkaError::new(errors::INVALID_REPLICA_ASSIGNMENT, m);
    let mut out = BTreeMap::new();
    let mut rf = rf.map(|r| r as usize);
    for (partition, brokers) in assignments {
        if out.contains_key(partition) {
            return Err(bad(format!("found multiple manual partition assignments for partition {partition}")));
        }
        if brokers.is_empty() {
            return Err(bad(format!("the manual assignment of partition {partition} has an empty replica list")));
        }
        let mut sorted = brokers.clone();
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            if pair[0] == pair[1] {
                return Err(bad(format!(
                    "the manual assignment of partition {partition} names broker {} more than once",
                    pair[0]
                )));
            }
        }
        if let Some(missing) = sorted.iter().find(|b| view.broker(**b).is_none()) {
            return Err(bad(format!(
                "the manual assignment of partition {partition} names broker {missing}, which is not a live broker"
            )));
        }
        match rf {
            Some(n) if n != brokers.len() => {
                return Err(bad(format!(
                    "partition {partition} is assigned {} replica(s), other partitions {n}",
                    brokers.len()
                )));
            }
            _ => rf = Some(brokers.len()),
        }
        out.insert(*partition, brokers.clone());
    }
    let expected = first..first + out.len() as i32;
    if !out.keys().copied().eq(expected) {
        return Err(bad(format!("assigned partitions must be numbered consecutively from {first}")));
    }
    let rf = rf.unwrap_or(0);
    let rf = i16::try_from(rf).map_err(|_| bad(format!("replication factor {rf} is too large")))?;
    Ok((out, rf))
}

/// `check_room` for a manual assignment: each named broker must have room
/// for the replicas it is given.
fn check_room_on(view: &ClusterView, assignments: &BTreeMap<i32, Vec<i32>>) -> Result<(), KafkaError> {
    let loads = placement::loads(view);
    let mut need: BTreeMap<i32, u64> = BTreeMap::new();
    for brokers in assignments.values() {
        for b in brokers {
            *need.entry(*b).or_default() += 1;
        }
    }
    for (broker, n) in need {
        let left = loads.get(&broker).map_or(0, |l| l.capacity_left as u64);
        if n > left {
            return Err(KafkaError::new(
                errors::POLICY_VIOLATION,
                format!(
                    "broker {broker} is assigned {n} replica(s) but has room for {left} within its open-file limit \
                     (raise `ulimit -n` or assign other brokers)"
                ),
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(nodes: &[i32], capacity: u32) -> ClusterView {
        let mut v = ClusterView::empty();
        for &node in nodes {
            v.brokers.insert(node, crate::cluster::test_broker(node, capacity, 1));
        }
        v
    }

    fn refused(v: &ClusterView, a: &[(i32, Vec<i32>)], first: i32, rf: Option<i16>) -> String {
        let e = manual_assignment(v, a, first, rf).unwrap_err();
        assert_eq!(e.code, errors::INVALID_REPLICA_ASSIGNMENT, "{}", e.message);
        e.message
    }

    /// Kafka's rules for a manual assignment, each refusal naming what is wrong.
    #[test]
    fn manual_assignments_are_checked_as_kafka_checks_them() {
        let v = view(&[1, 2, 3], 1000);
        let (m, rf) = manual_assignment(&v, &[(1, vec![3, 1]), (0, vec![2, 3])], 0, None).unwrap();
        assert_eq!(rf, 2);
        assert_eq!(m[&0], vec![2, 3], "order kept: the first is the preferred leader");
        assert!(refused(&v, &[(0, vec![1]), (0, vec![2])], 0, None).contains("multiple"));
        assert!(refused(&v, &[(0, vec![])], 0, None).contains("empty"));
        assert!(refused(&v, &[(0, vec![1, 1])], 0, None).contains("broker 1 more than once"));
        assert!(refused(&v, &[(0, vec![1, 9])], 0, None).contains("broker 9"));
        assert!(refused(&v, &[(0, vec![1, 2]), (1, vec![3])], 0, None).contains("1 replica(s), other partitions 2"));
        assert!(refused(&v, &[(0, vec![1]), (2, vec![2])], 0, None).contains("consecutively from 0"));
        // CreatePartitions: from the current count on, at the topic's factor.
        assert!(manual_assignment(&v, &[(4, vec![1, 2])], 4, Some(2)).is_ok());
        assert!(refused(&v, &[(4, vec![1])], 4, Some(2)).contains("other partitions 2"));
        assert!(refused(&v, &[(3, vec![1, 2])], 4, Some(2)).contains("from 4"));
    }

    #[test]
    fn a_manual_assignment_must_fit_each_brokers_budget() {
        let v = view(&[1, 2], 2);
        let a: BTreeMap<i32, Vec<i32>> = [(0, vec![1, 2]), (1, vec![1])].into();
        assert!(check_room_on(&v, &a).is_ok());
        let a: BTreeMap<i32, Vec<i32>> = [(0, vec![1]), (1, vec![1]), (2, vec![1, 2])].into();
        let e = check_room_on(&v, &a).unwrap_err();
        assert_eq!(e.code, errors::POLICY_VIOLATION);
        assert!(e.message.contains("broker 1 is assigned 3"), "{}", e.message);
    }
}

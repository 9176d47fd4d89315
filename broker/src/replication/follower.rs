//! A follower shard's fetcher for one leader broker: one connection, one
//! Fetch at a time for every partition this shard follows from that leader,
//! each at its log end with its current leader epoch and the epoch of its
//! last batch. Per partition, the answer is:
//!
//! - records: appended as they are (`append_replicated`); in durable mode
//!   (the default; not with `--no-fsync-acks-all`) fdatasynced before the next fetch, whose offset is
//!   what tells the leader the follower has them;
//! - a diverging epoch: the log is cut back to where it agrees with the
//!   leader's (KIP-595), then fetching resumes from there;
//! - OFFSET_OUT_OF_RANGE: the leader's log starts after ours ends: start over
//!   at its log start;
//! - a leadership error (stale epoch, not leader yet — the leader may still
//!   be making its epoch durable): the partition sits out for
//!   `REFUSED_PAUSE`, or until its record moves on, then asks again.
//!
//! The follower's high watermark is the leader's, capped by its own log end.
//! The task ends when the shard follows nothing from this leader any more.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use laminar_engine::PartitionLog;
use tokio::sync::Notify;

use super::wire::{whole_batches, Channel};
use crate::errors;
use crate::shard::{ReplicaKey, Role, SharedShard};

/// Pause after a failed connection or request, doubling to the maximum.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long a partition the leader refused sits out before asking again.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
/// A replication step slower than this is logged (and again each time).
const SLOW_STEP: Duration = Duration::from_secs(5);
/// How long a partition whose local append or truncation failed sits out.
const FAILED_PAUSE: Duration = Duration::from_secs(5);

/// One partition this fetcher copies.
struct Followed {
    key: ReplicaKey,
    epoch: i32,
    log: PartitionLog,
}

/// Awaits `step`, warning every `SLOW_STEP` it takes: one stuck step stalls
/// every partition this fetcher copies, and the warning says which.
async fn watched<T>(what: &str, leader: i32, step: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(step);
    let started = Instant::now();
    loop {
        tokio::select! {
            out = &mut step => return out,
            _ = tokio::time::sleep(SLOW_STEP) => {
                tracing::warn!(leader, waited_ms = started.elapsed().as_millis() as u64, "replication: {what} is slow");
            }
        }
    }
}

pub async fn run(shard: SharedShard, leader: i32, wake: Rc<Notify>) {
    let me = shard.borrow().cluster.node_id();
    tracing::debug!(leader, "fetcher started");
    let mut channel: Option<Channel> = None;
    let mut pause = RETRY_PAUSE_MIN;
    // Partitions the leader refused, by the epoch they were refused in: left
    // out until their record moves on or the pause ends.
    let mut refused: HashMap<ReplicaKey, (i32, Instant)> = HashMap::new();
    loop {
        let (followed, config, cluster) = {
            let s = shard.borrow();
            if !super::roles::follows(&s, leader) {
                // Nothing left to copy from this leader.
                tracing::debug!(leader, "fetcher stopped: nothing follows this leader");
                drop(s);
                shard.borrow_mut().fetchers.remove(&leader);
                return;
            }
            let followed: Vec<Followed> = s
                .replicas
                .iter()
                .filter_map(|(key, r)| match r.role {
                    Role::Follower { leader: l, epoch } if l == leader => {
                        r.log().map(|log| Followed { key: key.clone(), epoch, log: log.clone() })
                    }
                    _ => None,
                })
                .filter(|f| {
                    !refused.get(&f.key).is_some_and(|&(epoch, until)| epoch == f.epoch && until > Instant::now())
                })
                .collect();
            (followed, s.replication, s.cluster.clone())
        };
        refused.retain(|k, &mut (_, until)| until > Instant::now() && shard.borrow().replicas.contains_key(k));
        if followed.is_empty() {
            // Everything refused or still opening: wait for a new record.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(REFUSED_PAUSE) => {}
            }
            continue;
        }
        if channel.is_none() {
            let address = cluster.view().broker(leader).map(|b| (b.record.host.clone(), b.record.port));
            let Some((host, port)) = address else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match watched("connecting", leader, Channel::connect(&host, port, me, Duration::from_secs(2))).await {
                Ok(c) => channel = Some(c),
                Err(e) => {
                    tracing::debug!(leader, "connecting to the leader failed: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                    continue;
                }
            }
        }
        let req = request(me, &followed, &config);
        let timeout = config.fetch_wait_max + Duration::from_secs(5);
        let resp = match watched("a fetch", leader, channel.as_mut().expect("connected").fetch(&req, timeout)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, "fetch from the leader failed: {e}");
                channel = None;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_PAUSE_MAX);
                continue;
            }
        };
        pause = RETRY_PAUSE_MIN;
        let by_key: HashMap<(String, i32), &Followed> =
            followed.iter().map(|f| ((f.key.0.to_string(), f.key.1), f)).collect();
        let mut appended = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                let Some(f) = by_key.get(&(t.topic.0.to_string(), p.partition_index)) else { continue };
                if !still_following(&shard, f, leader) {
                    continue;
                }
                // A step that takes this long (a stuck disk, a lock never
                // released) stalls every partition of this fetcher: say so.
                let taking = take(f, p);
                tokio::pin!(taking);
                let outcome = loop {
                    tokio::select! {
                        o = &mut taking => break o,
                        _ = tokio::time::sleep(SLOW_STEP) => {
                            tracing::warn!(
                                partition = %format!("{}-{}", f.key.0, f.key.1),
                                leader,
                                log = %f.log.describe_state(),
                                "replicating one fetch's data is taking over {SLOW_STEP:?}"
                            );
                        }
                    }
                };
                match outcome {
                    Outcome::Appended => appended.push((f.key.clone(), f.log.clone())),
                    Outcome::Nothing => {}
                    Outcome::Refused(code) => {
                        tracing::debug!(partition = %format!("{}-{}", f.key.0, f.key.1), code, leader, "the leader refused a fetch");
                        refused.insert(f.key.clone(), (f.epoch, Instant::now() + REFUSED_PAUSE));
                    }
                    Outcome::Failed(e) => {
                        tracing::warn!(partition = %format!("{}-{}", f.key.0, f.key.1), leader, "replicating failed: {e}");
                        refused.insert(f.key.clone(), (f.epoch, Instant::now() + FAILED_PAUSE));
                    }
                }
            }
        }
        if config.fsync_followers {
            // What the next fetch reports as had is on disk. A replica whose
            // sync failed goes offline: fetching on would report unsynced
            // data as had, and the leader would count it as committed.
            for (key, log) in appended {
                if let Err(e) = watched("syncing replicated data", leader, log.flush()).await {
                    tracing::error!(dir = %log.dir().display(), "syncing replicated data failed; replica offline: {e}");
                    if let Some(r) = shard.borrow_mut().replicas.get_mut(&key) {
                        r.status = crate::shard::Status::Offline(format!("syncing replicated data failed: {e}"));
                    }
                }
            }
        }
    }
}

fn still_following(shard: &SharedShard, f: &Followed, leader: i32) -> bool {
    let s = shard.borrow();
    s.replicas
        .get(&f.key)
        .is_some_and(|r| matches!(r.role, Role::Follower { leader: l, epoch } if l == leader && epoch == f.epoch))
}

fn request(me: i32, followed: &[Followed], config: &super::ReplicationConfig) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for f in followed {
        let partition = FetchPartition::default()
            .with_partition(f.key.1)
            .with_current_leader_epoch(f.epoch)
            .with_fetch_offset(f.log.log_end_offset() as i64)
            .with_last_fetched_epoch(f.log.latest_epoch().unwrap_or(-1))
            .with_log_start_offset(f.log.log_start_offset() as i64)
            .with_partition_max_bytes(config.fetch_partition_max_bytes);
        match topics.iter_mut().find(|t| *t.topic.0 == *f.key.0) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(f.key.0.to_string())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(config.fetch_wait_max.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(config.fetch_response_max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

enum Outcome {
    Appended,
    Nothing,
    Refused(i16),
    Failed(String),
}

async fn take(f: &Followed, p: &kafka_protocol::messages::fetch_response::PartitionData) -> Outcome {
    let log = &f.log;
    match p.error_code {
        errors::NONE => {}
        errors::OFFSET_OUT_OF_RANGE if p.log_start_offset > log.log_end_offset() as i64 => {
            // The leader no longer has what would continue our log.
            return match log.restart_at(p.log_start_offset as u64).await {
                Ok(()) => Outcome::Nothing,
                Err(e) => Outcome::Failed(e.to_string()),
            };
        }
        code => return Outcome::Refused(code),
    }
    if p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0 {
        let to = truncation_point(log, p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
        tracing::debug!(
            partition = %format!("{}-{}", f.key.0, f.key.1),
            leader_epoch = p.diverging_epoch.epoch,
            leader_end = p.diverging_epoch.end_offset,
            log_end = log.log_end_offset(),
            cut_to = to,
            "the leader's log diverges from ours"
        );
        return match log.truncate_to(to).await {
            Ok(()) => Outcome::Nothing,
            Err(e) => Outcome::Failed(e.to_string()),
        };
    }
    let mut outcome = Outcome::Nothing;
    if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) {
        let batches = whole_batches(records);
        if let Some(first) = batches.first() {
            // An empty log restarted at the leader's log start may sit inside
            // the leader's first batch (DeleteRecords and retention cut
            // between records): start at that batch instead, as Kafka does;
            // the log start still follows the leader's below.
            let base = i64::from_be_bytes(first[..8].try_into().expect("a whole batch"));
            let end = log.log_end_offset();
            if end == log.log_start_offset() && base >= 0 && (base as u64) < end {
                if let Err(e) = log.restart_at(base as u64).await {
                    return Outcome::Failed(e.to_string());
                }
            }
            if let Err(e) = log.append_replicated(batches).await {
                return Outcome::Failed(e.to_string());
            }
            outcome = Outcome::Appended;
        }
    }
    if p.high_watermark >= 0 {
        log.set_high_watermark((p.high_watermark as u64).min(log.log_end_offset()));
    }
    if p.log_start_offset > log.log_start_offset() as i64 {
        if let Err(e) = log.follow_log_start(p.log_start_offset as u64).await {
            return Outcome::Failed(e.to_string());
        }
    }
    outcome
}

/// Where a follower cuts its log back to when the leader says its last
/// fetched epoch diverges: the leader's `epoch` is the largest it has at or
/// below ours, ending at `end` in its log (Kafka's rule, KIP-101/KIP-279):
///
/// - we have that epoch too: the shorter of the two ends;
/// - we do not: the end, in our log, of the largest epoch we have below it
///   (the start of our next one), which the leader's log also contains up
///   to, since the leader has every epoch it was elected in from there on;
/// - the leader has no epoch at or below ours, or we record none: our high
///   watermark, which the leader's log contains (committed).
///
/// With clean elections committed writes never diverge, so none of these
/// cuts below the high watermark: a replica in the ISR keeps every write
/// below it, which is what makes electing any ISR member safe.
pub(crate) fn truncation_point(log: &PartitionLog, leader_epoch: i32, leader_end: i64) -> u64 {
    let ours = if leader_epoch < 0 { (-1, -1) } else { log.end_offset_for_epoch(leader_epoch) };
    cut_point((leader_epoch, leader_end), ours, log.high_watermark(), log.log_end_offset())
}

/// `truncation_point` on plain numbers: the leader's (epoch, end), ours for
/// that epoch, our high watermark and log end.
fn cut_point(leader: (i32, i64), ours: (i32, i64), high_watermark: u64, log_end: u64) -> u64 {
    let ((leader_epoch, leader_end), (ours_epoch, ours_end)) = (leader, ours);
    let to = if leader_epoch < 0 || leader_end < 0 || ours_end < 0 {
        // The leader has no epoch at or below ours, or our log records none
        // (written before it had an epoch cache): keep what is committed.
        high_watermark
    } else if ours_epoch == leader_epoch {
        (leader_end as u64).min(ours_end as u64)
    } else {
        ours_end as u64
    };
    to.min(log_end)
}

#[cfg(test)]
mod tests {
    use super::cut_point;

    #[test]
    fn cuts_follow_kafkas_truncation_rules() {
        // Same epoch on both sides: the shorter end.
        assert_eq!(cut_point((3, 120), (3, 150), 100, 150), 120);
        assert_eq!(cut_point((3, 160), (3, 150), 100, 150), 150);
        // We never had the leader's epoch: the end of our largest epoch below it.
        assert_eq!(cut_point((4, 200), (2, 130), 100, 150), 130);
        // The leader has nothing at or below our epoch; we record none.
        assert_eq!(cut_point((-1, -1), (-1, -1), 100, 150), 100);
        assert_eq!(cut_point((3, 120), (-1, -1), 90, 150), 90);
        // Never past our own log end.
        assert_eq!(cut_point((3, 500), (3, 500), 100, 150), 150);
    }
}

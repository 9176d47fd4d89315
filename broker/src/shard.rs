//! A shard: one pinned thread with its own io_uring runtime that owns a set of
//! partition replicas and consumer groups. Work for them arrives through its
//! mailbox (`ShardMsg`); connections on any shard post there, and the control
//! thread's reconciler tells it which replicas to hold. Each replica's role
//! (leader, follower) follows its partition record (`replication::roles`).
//! Owned state is `Rc`, so nothing here can be touched from another thread by
//! construction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use laminar_coord::cluster::{PartitionRecord, Stored};
use laminar_engine::{AppendInfo, FileSlice, LogConfig, LogWatch, PartitionLog};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::cluster::Cluster;
use crate::errors::{self, KafkaError};
use crate::partition_dirs;
use crate::replication::roles::Settled;
use crate::replication::{self, leader::SharedLeader, ReplicationConfig};

pub type Reply<T> = oneshot::Sender<Result<T, KafkaError>>;

/// Partition logs one shard opens (recovers), closes or removes at once; the
/// rest wait. Each is disk-bound and runs on blocking threads; this keeps a
/// 10,000-partition create from starting 10,000 threads, and a delete from
/// running thousands of directory renames, fsyncs and removals at once (the
/// filesystem's journal then stalled every other partition's writes for
/// ~300 ms, though no shard thread waited).
const OPENS_IN_FLIGHT_MAX: usize = 8;
/// How often a replicated log's high watermark is checkpointed (if it moved).
const HW_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// What a fetch gets back for one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub slice: Option<FileSlice>,
    pub high_watermark: u64,
    pub last_stable_offset: u64,
    pub log_start_offset: u64,
    /// A follower's fetch: where its log diverges from the leader's
    /// (epoch, end offset), KIP-595's DivergingEpoch; it must truncate first.
    pub diverging: Option<(i32, i64)>,
    /// A follower's fetch below the leader's log start: OFFSET_OUT_OF_RANGE,
    /// answered with the log start so the follower can start over there.
    pub error: i16,
    pub watch: Arc<LogWatch>,
}

/// A follower's fetch, as the leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaFetch {
    pub node: i32,
    /// The epoch of the follower's last batch (-1: none), for the divergence check.
    pub last_fetched_epoch: i32,
}

/// A replica this shard must hold, as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub topic: Arc<str>,
    pub partition: i32,
    pub record: Arc<Stored<PartitionRecord>>,
    pub config: LogConfig,
    /// `min.insync.replicas` of the topic.
    pub min_insync_replicas: i32,
}

pub enum ShardMsg {
    Produce {
        topic: Arc<str>,
        partition: i32,
        batches: Vec<Bytes>,
        /// -1 (all), 0 or 1.
        acks: i16,
        /// fdatasync before answering (acks=all in durable mode).
        sync: bool,
        /// How long an acks=all request waits for the replicas.
        timeout: Duration,
        reply: Reply<AppendInfo>,
    },
    Read {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        min_one: bool,
        /// The client's view of the leader epoch (KIP-320), -1 if it sent none.
        leader_epoch: i32,
        /// Set when a follower replicating the partition fetches.
        replica: Option<ReplicaFetch>,
        reply: Reply<PartitionRead>,
    },
    /// Offset for a ListOffsets timestamp (-1 latest, -2 earliest, else by
    /// time): (offset, timestamp, leader epoch).
    ListOffset {
        topic: Arc<str>,
        partition: i32,
        timestamp: i64,
        leader_epoch: i32,
        reply: Reply<(i64, i64, i32)>,
    },
    /// OffsetForLeaderEpoch: where `epoch` ends in the leader's log.
    EpochEnd {
        topic: Arc<str>,
        partition: i32,
        current_leader_epoch: i32,
        epoch: i32,
        reply: Reply<(i32, i64, i32)>,
    },
    DeleteRecords {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        reply: Reply<u64>,
    },
    /// Hold (opening if needed) this replica in the role its record says.
    /// Answered once the log is open (or has failed to open).
    Assign {
        assignment: Assignment,
        reply: oneshot::Sender<()>,
    },
    /// Stop holding a replica; `delete` removes its data (the topic is gone
    /// or the replica moved to another broker).
    Unassign {
        topic: Arc<str>,
        partition: i32,
        delete: bool,
        reply: oneshot::Sender<()>,
    },
    Group(crate::group::GroupMsg),
    /// DescribeLogDirs: this shard's data directory and, per replica it
    /// holds online, its size on disk and how far its end is below the
    /// high watermark.
    LogDirs {
        reply: oneshot::Sender<(PathBuf, Vec<ReplicaSize>)>,
    },
    /// The shard's metrics report, for a scrape (`metrics/`).
    Metrics {
        reply: oneshot::Sender<crate::metrics::ShardReport>,
    },
    /// Close every log; answered with how many failed to close.
    Shutdown {
        reply: oneshot::Sender<usize>,
    },
}

/// One replica's line in DescribeLogDirs.
pub struct ReplicaSize {
    pub topic: Arc<str>,
    pub partition: i32,
    pub size_bytes: u64,
    /// Kafka's `offset_lag`: max(high watermark - log end offset, 0).
    pub offset_lag: i64,
}

/// Why a replica cannot serve right now.
#[derive(Clone)]
pub enum Status {
    /// Being recovered on a blocking thread.
    Opening,
    Online(PartitionLog),
    /// Recovery or the disk failed: this partition is out, the rest serve.
    Offline(String),
}

/// What this broker does for a partition it holds.
#[derive(Clone)]
pub enum Role {
    /// It leads, in `LeaderState::epoch`.
    Leader(SharedLeader),
    /// It copies `leader`'s log, in `epoch`.
    Follower { leader: i32, epoch: i32 },
    /// Neither yet: becoming leader (its epoch is being made durable), no
    /// leader elected, or not in this incarnation.
    Waiting,
}

pub struct Replica {
    /// Bumped by every (re)open, so a stale open's result is dropped.
    pub generation: u64,
    pub status: Status,
    pub record: Arc<Stored<PartitionRecord>>,
    pub config: LogConfig,
    pub min_insync_replicas: i32,
    pub role: Role,
    /// Set by an unassign that arrived while the log was opening.
    closing: Option<bool>,
    /// When this replica last refused a produce before appending it (not
    /// leader, too few in-sync replicas): see `replication::produce`.
    pub refused_produce_at: Option<Instant>,
}

impl Replica {
    pub fn log(&self) -> Option<&PartitionLog> {
        match &self.status {
            Status::Online(log) => Some(log),
            _ => None,
        }
    }
}

pub type ReplicaKey = (Arc<str>, i32);

pub struct Shard {
    pub id: usize,
    data_dir: PathBuf,
    pub cluster: Arc<Cluster>,
    pub replication: ReplicationConfig,
    pub replicas: HashMap<ReplicaKey, Replica>,
    /// One fetcher per leader this shard follows partitions of: its wake-up.
    pub fetchers: HashMap<i32, Rc<Notify>>,
    next_generation: u64,
    opens: Rc<Semaphore>,
    pub retention_check_interval: Duration,
}

pub type SharedShard = Rc<RefCell<Shard>>;

impl Shard {
    pub fn new(
        id: usize,
        data_dir: PathBuf,
        cluster: Arc<Cluster>,
        replication: ReplicationConfig,
        retention_check_interval: Duration,
    ) -> Self {
        Shard {
            id,
            data_dir,
            cluster,
            replication,
            replicas: HashMap::new(),
            fetchers: HashMap::new(),
            next_generation: 0,
            opens: Rc::new(Semaphore::new(OPENS_IN_FLIGHT_MAX)),
            retention_check_interval,
        }
    }

    pub fn replica(&self, topic: &str, partition: i32) -> Result<&Replica, KafkaError> {
        self.replicas.get(&(Arc::from(topic), partition)).ok_or_else(|| {
            KafkaError::new(
                errors::NOT_LEADER_OR_FOLLOWER,
                format!("{topic}-{partition} has no replica on this broker"),
            )
        })
    }

    /// The log and leadership of a partition this broker leads now, or why not.
    pub fn leader(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<(PartitionLog, SharedLeader), KafkaError> {
        let r = self.replica(topic, partition)?;
        let rec = &r.record.record;
        let not_leader = || {
            KafkaError::new(
                errors::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "this broker does not lead {topic}-{partition} (leader {}, epoch {})",
                    rec.leader, rec.leader_epoch
                ),
            )
        };
        // The lease is read at every request: a paused or cut-off broker
        // stops leading the moment it may no longer hold its lease. And a
        // leadership belongs to the incarnation it was granted to: a broker
        // that lost its lease and registered again (a new incarnation) was
        // deposed meanwhile, whatever it still holds in memory.
        if !self.cluster.is_acting()
            || rec.leader != self.cluster.node_id()
            || rec.leader_incarnation != self.cluster.incarnation()
        {
            return Err(not_leader());
        }
        // Before the role: a replica whose log is not open never becomes
        // leader, and "not the leader" would send clients to this broker again.
        let log = match &r.status {
            Status::Online(log) => log,
            Status::Opening => {
                return Err(KafkaError::new(
                    errors::LEADER_NOT_AVAILABLE,
                    format!("{topic}-{partition} is still being recovered"),
                ))
            }
            Status::Offline(why) => {
                return Err(KafkaError::new(
                    errors::KAFKA_STORAGE_ERROR,
                    format!("{topic}-{partition} is offline: {why}"),
                ))
            }
        };
        let Role::Leader(state) = &r.role else {
            return Err(not_leader());
        };
        check_epoch(leader_epoch, state.borrow().epoch)?;
        Ok((log.clone(), state.clone()))
    }

    fn all_logs(&self) -> Vec<PartitionLog> {
        self.replicas.values().filter_map(|r| r.log().cloned()).collect()
    }
}

/// KIP-320: a client's leader epoch older than ours is fenced (its metadata
/// is stale), a newer one means we are behind; -1 skips the check.
pub fn check_epoch(client: i32, ours: i32) -> Result<(), KafkaError> {
    if client < 0 || client == ours {
        Ok(())
    } else if client < ours {
        Err(KafkaError::new(errors::FENCED_LEADER_EPOCH, format!("leader epoch {client} is older than {ours}")))
    } else {
        Err(KafkaError::new(errors::UNKNOWN_LEADER_EPOCH, format!("leader epoch {client} is newer than {ours}")))
    }
}

/// Applies an assignment: a new replica is opened in the background; a known
/// one takes its new record (role, epoch) and config at once.
fn assign(shard: &SharedShard, a: Assignment, reply: oneshot::Sender<()>) {
    let key = (a.topic.clone(), a.partition);
    let mut s = shard.borrow_mut();
    if let Some(r) = s.replicas.get_mut(&key) {
        if r.record.record.topic_id == a.record.record.topic_id && r.closing.is_none() {
            if let Status::Online(log) = &r.status {
                if r.config != a.config {
                    if let Err(e) = log.set_config(a.config.clone()) {
                        tracing::error!(topic = %a.topic, partition = a.partition, "config not applied: {e}");
                    }
                }
            }
            // Our own ISR writes may be newer than the view's record.
            if a.record.version > r.record.version {
                r.record = a.record;
            }
            r.config = a.config;
            r.min_insync_replicas = a.min_insync_replicas;
            drop(s);
            replication::roles::apply(shard, &key, Settled::new(reply));
            return;
        }
    }
    let generation = s.next_generation;
    s.next_generation += 1;
    let replaced = s.replicas.insert(
        key.clone(),
        Replica {
            generation,
            status: Status::Opening,
            record: a.record.clone(),
            config: a.config.clone(),
            min_insync_replicas: a.min_insync_replicas,
            role: Role::Waiting,
            closing: None,
            refused_produce_at: None,
        },
    );
    let dir = partition_dirs::path(&s.data_dir, &a.topic, a.partition);
    let (opens, shard_id) = (s.opens.clone(), s.id);
    drop(s);
    if let Some(old) = &replaced {
        replication::roles::retire(old, "the topic was recreated");
    }
    let shard = shard.clone();
    tokio_uring::spawn(async move {
        // Another incarnation of the topic held this partition here: its log goes first.
        if let Some(Replica { status: Status::Online(old), .. }) = replaced {
            if let Err(e) = old.remove().await {
                tracing::error!(dir = %dir.display(), "removing the previous topic's log failed: {e}");
            }
        }
        let _permit = opens.acquire().await;
        let topic_id = a.record.record.topic_id;
        let config = a.config.clone();
        let (d, c) = (dir.clone(), config.clone());
        let opened = tokio::task::spawn_blocking(move || {
            partition_dirs::prepare(&d, topic_id)?;
            PartitionLog::recover(&d, c).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        // Settled under the borrow; anything that awaits runs after it.
        let unwanted = {
            let mut s = shard.borrow_mut();
            let Some(r) = s.replicas.get_mut(&key).filter(|r| r.generation == generation) else {
                return; // unassigned and reassigned meanwhile: a newer open owns it
            };
            match opened {
                Ok((recovered, report)) => {
                    if report.truncated_bytes > 0 {
                        tracing::warn!(
                            partition = %format!("{}-{}", a.topic, a.partition),
                            truncated_bytes = report.truncated_bytes,
                            segments_dropped = report.segments_dropped,
                            reason = report.truncation_reason.as_deref().unwrap_or(""),
                            "recovery truncated a torn tail"
                        );
                    }
                    tracing::debug!(?report, "opened partition log");
                    let log = PartitionLog::from_recovered(recovered);
                    if let Some(disk) = crate::failpoints::get().and_then(|f| f.disk.clone()) {
                        log.set_disk_budget(disk);
                    }
                    match r.closing.take() {
                        Some(delete) => {
                            s.replicas.remove(&key);
                            Some((log, delete))
                        }
                        None => {
                            r.status = Status::Online(log);
                            None
                        }
                    }
                }
                Err(why) => {
                    // One damaged partition must not stop the broker: it goes
                    // offline, loudly, and the rest serve.
                    tracing::error!(
                        partition = %format!("{}-{}", a.topic, a.partition),
                        dir = %dir.display(),
                        shard = shard_id,
                        "partition offline: {why}"
                    );
                    if r.closing.is_some() {
                        s.replicas.remove(&key);
                    } else {
                        r.status = Status::Offline(why);
                    }
                    None
                }
            }
        };
        match unwanted {
            Some((log, delete)) => {
                close_or_remove(log, delete).await;
                let _ = reply.send(());
            }
            None => {
                // The permit is held until the role is in place: a new
                // leader's epoch write (an fsync) is part of opening it, and
                // thousands at once stall the filesystem as removals do.
                let (settled, done) = oneshot::channel();
                replication::roles::apply(&shard, &key, Settled::new(settled));
                let _ = done.await;
                let _ = reply.send(());
            }
        }
    });
}

async fn close_or_remove(log: PartitionLog, delete: bool) {
    let dir = log.dir();
    let r = if delete { log.remove().await } else { log.close().await };
    if let Err(e) = r {
        tracing::error!(dir = %dir.display(), delete, "closing a replica failed: {e}");
    }
}

fn unassign(shard: &SharedShard, topic: Arc<str>, partition: i32, delete: bool, reply: oneshot::Sender<()>) {
    let key = (topic, partition);
    let mut s = shard.borrow_mut();
    let Some(r) = s.replicas.get_mut(&key) else {
        let _ = reply.send(());
        return;
    };
    replication::roles::retire(r, "the replica moved or its topic was deleted");
    match &r.status {
        Status::Opening => {
            // The open task finishes the job when the log is recovered.
            r.closing = Some(delete);
            let _ = reply.send(());
        }
        Status::Online(log) => {
            let log = log.clone();
            s.replicas.remove(&key);
            let opens = s.opens.clone();
            drop(s);
            tokio_uring::spawn(async move {
                let _permit = opens.acquire().await;
                close_or_remove(log, delete).await;
                let _ = reply.send(());
            });
        }
        Status::Offline(_) => {
            let dir = partition_dirs::path(&s.data_dir, &key.0, key.1);
            s.replicas.remove(&key);
            let opens = s.opens.clone();
            drop(s);
            tokio_uring::spawn(async move {
                let _permit = opens.acquire().await;
                if delete {
                    let _ = tokio::task::spawn_blocking(move || laminar_engine::log::remove_log_dir(&dir)).await;
                }
                let _ = reply.send(());
            });
        }
    }
}

/// The shard's mailbox loop: runs until Shutdown.
pub async fn run_mailbox(
    shard: SharedShard,
    groups: crate::group::manager::SharedGroups,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
) {
    while let Some(msg) = rx.recv().await {
        crate::metrics::mailbox_depth(rx.len());
        match msg {
            ShardMsg::Metrics { reply } => {
                let _ = reply.send(crate::metrics::shard_report(&shard.borrow(), &groups.borrow()));
            }
            ShardMsg::Group(m) => crate::group::manager::handle(&groups, m),
            ShardMsg::Produce { topic, partition, batches, acks, sync, timeout, reply } => {
                crate::failpoints::before_produce(&topic);
                replication::produce::handle(&shard, topic, partition, batches, acks, sync, timeout, reply);
            }
            ShardMsg::Read { topic, partition, offset, max_bytes, min_one, leader_epoch, replica, reply } => {
                let r = match replica {
                    Some(rf) => replication::serve::follower_fetch(
                        &shard,
                        &topic,
                        partition,
                        offset,
                        max_bytes,
                        leader_epoch,
                        rf,
                    ),
                    None => shard
                        .borrow()
                        .leader(&topic, partition, leader_epoch)
                        .and_then(|(log, _)| read(&log, offset, max_bytes, min_one)),
                };
                let _ = reply.send(r);
            }
            ShardMsg::ListOffset { topic, partition, timestamp, leader_epoch, reply } => {
                let s = shard.borrow();
                let r = s.leader(&topic, partition, leader_epoch).and_then(|(log, state)| {
                    let epoch = state.borrow().epoch;
                    list_offset(&log, timestamp).map(|(o, t)| (o, t, epoch))
                });
                let _ = reply.send(r);
            }
            ShardMsg::EpochEnd { topic, partition, current_leader_epoch, epoch, reply } => {
                let s = shard.borrow();
                let r = s.leader(&topic, partition, current_leader_epoch).map(|(log, state)| {
                    let (e, end) = log.end_offset_for_epoch(epoch);
                    (e, end, state.borrow().epoch)
                });
                let _ = reply.send(r);
            }
            ShardMsg::DeleteRecords { topic, partition, offset, reply } => {
                let log = shard.borrow().leader(&topic, partition, -1).map(|(log, _)| log);
                tokio_uring::spawn(async move {
                    let r = match log {
                        Ok(log) => {
                            let target = if offset == -1 { log.high_watermark() } else { offset.max(0) as u64 };
                            log.delete_records(target).await.map_err(KafkaError::from)
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(r);
                });
            }
            ShardMsg::LogDirs { reply } => {
                let s = shard.borrow();
                let sizes = s
                    .replicas
                    .iter()
                    .filter_map(|((topic, partition), r)| {
                        let log = r.log()?;
                        let lag = (log.high_watermark() as i64 - log.log_end_offset() as i64).max(0);
                        Some(ReplicaSize {
                            topic: topic.clone(),
                            partition: *partition,
                            size_bytes: log.size_bytes(),
                            offset_lag: lag,
                        })
                    })
                    .collect();
                let _ = reply.send((s.data_dir.clone(), sizes));
            }
            ShardMsg::Assign { assignment, reply } => assign(&shard, assignment, reply),
            ShardMsg::Unassign { topic, partition, delete, reply } => unassign(&shard, topic, partition, delete, reply),
            ShardMsg::Shutdown { reply } => {
                let logs = {
                    let mut s = shard.borrow_mut();
                    for r in s.replicas.values_mut() {
                        replication::roles::retire(r, "the broker is shutting down");
                    }
                    s.all_logs()
                };
                let closes: Vec<_> = logs
                    .into_iter()
                    .map(|log| async move {
                        let r = log.close().await;
                        if let Err(e) = &r {
                            // Counted in the last line of the process whatever is logged here.
                            if crate::log_limit::admit(crate::log_limit::Cause::StorageError) {
                                tracing::error!(dir = %log.dir().display(), "close failed: {e}");
                            }
                        }
                        r.is_err()
                    })
                    .collect();
                let failed = futures::future::join_all(closes).await.into_iter().filter(|&f| f).count();
                let _ = reply.send(failed);
                return;
            }
        }
    }
}

fn read(log: &PartitionLog, offset: i64, max_bytes: u64, min_one: bool) -> Result<PartitionRead, KafkaError> {
    if offset < 0 {
        return Err(KafkaError::new(errors::OFFSET_OUT_OF_RANGE, format!("negative fetch offset {offset}")));
    }
    let r = log.read(offset as u64, max_bytes, min_one).map_err(KafkaError::from)?;
    Ok(PartitionRead {
        slice: r.slice,
        high_watermark: r.high_watermark,
        last_stable_offset: r.high_watermark,
        log_start_offset: r.log_start_offset,
        diverging: None,
        error: errors::NONE,
        watch: log.watch(),
    })
}

/// Kafka's ListOffsets special timestamps: -1 latest, -2 earliest.
fn list_offset(log: &PartitionLog, timestamp: i64) -> Result<(i64, i64), KafkaError> {
    match timestamp {
        -1 => Ok((log.high_watermark() as i64, -1)),
        -2 => Ok((log.log_start_offset() as i64, -1)),
        t if t >= 0 => match log.offset_for_timestamp(t).map_err(KafkaError::from)? {
            Some((off, ts)) => Ok((off as i64, ts)),
            None => Ok((-1, -1)),
        },
        t => Err(KafkaError::new(errors::INVALID_REQUEST, format!("unsupported ListOffsets timestamp {t}"))),
    }
}

/// Background upkeep every 100 ms: `flush.ms`, ISR shrink checks and
/// leaderships lost with the lease; at their intervals, high-watermark
/// checkpoints, retention and the expiry of idle idempotent producers
/// (`producer.id.expiration.ms`, so a partition that never rolls still
/// forgets producers that stopped writing to it).
pub async fn run_upkeep(shard: SharedShard) {
    let mut last_retention = Instant::now();
    let mut last_hw_checkpoint = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        replication::roles::upkeep(&shard);
        let (logs, interval) = {
            let s = shard.borrow();
            (s.all_logs(), s.retention_check_interval)
        };
        let now = laminar_engine::log::now_ms();
        for log in &logs {
            if log.flush_due(now) {
                if let Err(e) = log.flush().await {
                    // Retried every check while the data stays unsynced.
                    if crate::log_limit::admit(crate::log_limit::Cause::FlushFailed) {
                        tracing::error!(dir = %log.dir().display(), "flush failed: {e}");
                    }
                }
            }
        }
        if last_hw_checkpoint.elapsed() >= HW_CHECKPOINT_INTERVAL {
            last_hw_checkpoint = Instant::now();
            for log in logs.iter().filter(|l| l.is_replicated()) {
                if let Err(e) = log.checkpoint_high_watermark().await {
                    tracing::warn!(dir = %log.dir().display(), "high watermark checkpoint failed: {e}");
                }
            }
        }
        if last_retention.elapsed() >= interval {
            last_retention = Instant::now();
            for log in &logs {
                let expired = log.expire_producers(now);
                if expired > 0 {
                    tracing::debug!(dir = %log.dir().display(), expired, "idle producers forgotten");
                }
                let r = log.enforce_retention(now);
                if r.segments_deleted > 0 {
                    tracing::info!(
                        dir = %log.dir().display(),
                        segments = r.segments_deleted,
                        bytes = r.bytes_deleted,
                        log_start_offset = r.log_start_offset,
                        "retention deleted segments"
                    );
                }
            }
        }
    }
}

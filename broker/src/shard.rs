//! A shard: one pinned thread with its own io_uring runtime that owns a set of
//! partition logs. Work for its partitions arrives through its mailbox
//! (`ShardMsg`); connections on any shard post there. Owned state is `Rc`, so
//! nothing here can be touched from another thread by construction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use laminar_engine::{AppendInfo, FileSlice, LogWatch, PartitionLog};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::TopicMeta;
use crate::errors::{self, KafkaError};

pub type Reply<T> = oneshot::Sender<Result<T, KafkaError>>;

/// What a fetch gets back for one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    pub slice: Option<FileSlice>,
    pub high_watermark: u64,
    pub last_stable_offset: u64,
    pub log_start_offset: u64,
    pub watch: Arc<LogWatch>,
}

pub enum ShardMsg {
    Produce {
        topic: Arc<str>,
        partition: i32,
        batches: Vec<Bytes>,
        sync: bool,
        reply: Reply<AppendInfo>,
    },
    Read {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        min_one: bool,
        reply: Reply<PartitionRead>,
    },
    /// Offset for a ListOffsets timestamp (-1 latest, -2 earliest, else by time).
    ListOffset {
        topic: Arc<str>,
        partition: i32,
        timestamp: i64,
        reply: Reply<(i64, i64)>,
    },
    DeleteRecords {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        reply: Reply<u64>,
    },
    /// Open (creating if needed) the partitions of `meta` in `partitions` that this shard owns.
    OpenPartitions {
        meta: Arc<TopicMeta>,
        partitions: Range<i32>,
        reply: Reply<()>,
    },
    RemoveTopic {
        name: String,
        reply: Reply<()>,
    },
    SetConfig {
        meta: Arc<TopicMeta>,
        reply: Reply<()>,
    },
    Group(crate::group::GroupMsg),
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub struct Shard {
    pub id: usize,
    pub shards: usize,
    data_dir: PathBuf,
    logs: HashMap<String, HashMap<i32, PartitionLog>>,
    pub retention_check_interval: Duration,
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Shard {
    pub fn new(id: usize, shards: usize, data_dir: PathBuf, retention_check_interval: Duration) -> Self {
        Shard { id, shards, data_dir, logs: HashMap::new(), retention_check_interval }
    }

    fn log(&self, topic: &str, partition: i32) -> Result<PartitionLog, KafkaError> {
        self.logs.get(topic).and_then(|p| p.get(&partition)).cloned().ok_or_else(|| {
            KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}-{partition} is not hosted here"))
        })
    }

    /// Opens the partitions of `meta` within `range` that this shard owns.
    pub fn open_partitions(&mut self, meta: &TopicMeta, range: Range<i32>) -> Result<(), KafkaError> {
        for p in range {
            if crate::router::owner_shard(&meta.name, p, self.shards) != self.id {
                continue;
            }
            if self.logs.get(&meta.name).is_some_and(|m| m.contains_key(&p)) {
                continue;
            }
            let dir = partition_dir(&self.data_dir, &meta.name, p);
            let (log, report) = PartitionLog::open(&dir, meta.log_config.clone()).map_err(KafkaError::from)?;
            if report.truncated_bytes > 0 {
                tracing::warn!(
                    partition = %format!("{}-{p}", meta.name),
                    truncated_bytes = report.truncated_bytes,
                    segments_dropped = report.segments_dropped,
                    reason = report.truncation_reason.as_deref().unwrap_or(""),
                    "recovery truncated a torn tail"
                );
            }
            tracing::debug!(?report, "opened partition log");
            self.logs.entry(meta.name.clone()).or_default().insert(p, log);
        }
        Ok(())
    }

    fn all_logs(&self) -> Vec<PartitionLog> {
        self.logs.values().flat_map(|m| m.values().cloned()).collect()
    }
}

/// The shard's mailbox loop: runs until Shutdown.
pub async fn run_mailbox(
    shard: Rc<RefCell<Shard>>,
    groups: crate::group::manager::SharedGroups,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            ShardMsg::Group(m) => crate::group::manager::handle(&groups, m),
            ShardMsg::Produce { topic, partition, batches, sync, reply } => {
                let log = shard.borrow().log(&topic, partition);
                match log {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    // Spawned tasks first run in spawn order, so appends keep
                    // the order their requests arrived in.
                    Ok(log) => {
                        tokio_uring::spawn(async move {
                            let r = log.append(batches, sync).await.map_err(KafkaError::from);
                            let _ = reply.send(r);
                        });
                    }
                }
            }
            ShardMsg::Read { topic, partition, offset, max_bytes, min_one, reply } => {
                let r = shard.borrow().log(&topic, partition).and_then(|log| read(&log, offset, max_bytes, min_one));
                let _ = reply.send(r);
            }
            ShardMsg::ListOffset { topic, partition, timestamp, reply } => {
                let r = shard.borrow().log(&topic, partition).and_then(|log| list_offset(&log, timestamp));
                let _ = reply.send(r);
            }
            ShardMsg::DeleteRecords { topic, partition, offset, reply } => {
                let log = shard.borrow().log(&topic, partition);
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
            ShardMsg::OpenPartitions { meta, partitions, reply } => {
                let r = shard.borrow_mut().open_partitions(&meta, partitions);
                let _ = reply.send(r);
            }
            ShardMsg::RemoveTopic { name, reply } => {
                let logs = shard.borrow_mut().logs.remove(&name);
                tokio_uring::spawn(async move {
                    let mut result = Ok(());
                    for log in logs.into_iter().flat_map(|m| m.into_values()) {
                        if let Err(e) = log.remove().await {
                            result = Err(KafkaError::from(e));
                        }
                    }
                    let _ = reply.send(result);
                });
            }
            ShardMsg::SetConfig { meta, reply } => {
                let logs: Vec<PartitionLog> =
                    shard.borrow().logs.get(&meta.name).map(|m| m.values().cloned().collect()).unwrap_or_default();
                let mut r = Ok(());
                for log in logs {
                    if let Err(e) = log.set_config(meta.log_config.clone()) {
                        r = Err(KafkaError::new(errors::INVALID_CONFIG, e));
                    }
                }
                let _ = reply.send(r);
            }
            ShardMsg::Shutdown { reply } => {
                let logs = shard.borrow().all_logs();
                for log in logs {
                    if let Err(e) = log.close().await {
                        tracing::error!(dir = %log.dir().display(), "close failed: {e}");
                    }
                }
                let _ = reply.send(());
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

/// Background upkeep: `flush.ms` checks every 100 ms, retention at its interval.
pub async fn run_upkeep(shard: Rc<RefCell<Shard>>) {
    let mut last_retention = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (logs, interval) = {
            let s = shard.borrow();
            (s.all_logs(), s.retention_check_interval)
        };
        let now = laminar_engine::log::now_ms();
        for log in &logs {
            if log.flush_due(now) {
                if let Err(e) = log.flush().await {
                    tracing::error!(dir = %log.dir().display(), "flush failed: {e}");
                }
            }
        }
        if last_retention.elapsed() >= interval {
            last_retention = std::time::Instant::now();
            for log in &logs {
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

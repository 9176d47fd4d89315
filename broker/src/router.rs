//! The mailboxes that carry work to shards, and which shard of this broker
//! holds a partition (`route`, from the cluster view via `placement`). A
//! partition is owned by exactly one shard; requests that touch it from other
//! shards travel as messages, never through a lock.

use laminar_coord::cluster::ClusterView;
use tokio::sync::{mpsc, oneshot};

use crate::errors::{self, KafkaError};
use crate::placement;
use crate::shard::{Reply, ShardMsg};

/// A question posted to a partition's owner shard: the channel its answer
/// comes back on, or why it could not be asked.
pub type Pending<T> = Result<oneshot::Receiver<Result<T, KafkaError>>, KafkaError>;

/// Waits for a posted question's answer.
pub async fn answer<T>(pending: Pending<T>) -> Result<T, KafkaError> {
    match pending {
        Err(e) => Err(e),
        Ok(rx) => rx.await.unwrap_or_else(|_| Err(KafkaError::new(errors::KAFKA_STORAGE_ERROR, "shard stopped"))),
    }
}

/// The shard of this broker (`me`, running `shards` shards) that holds
/// `topic`-`partition`, or the error a client should get for it here.
pub fn route(view: &ClusterView, me: i32, shards: usize, topic: &str, partition: i32) -> Result<usize, KafkaError> {
    let Some(t) = view.topic(topic) else {
        return Err(KafkaError::unknown_partition(topic, partition));
    };
    if !(0..t.partition_count()).contains(&partition) {
        return Err(KafkaError::unknown_partition(topic, partition));
    }
    let Some(p) = t.partition(partition) else {
        return Err(KafkaError::new(errors::LEADER_NOT_AVAILABLE, format!("{topic}-{partition} is not placed yet")));
    };
    placement::local_shard(&p.record, me, shards).ok_or_else(|| {
        KafkaError::new(
            errors::NOT_LEADER_OR_FOLLOWER,
            format!("{topic}-{partition} is led by broker {}, not this one", p.record.leader),
        )
    })
}

/// The target shard has stopped (the broker is shutting down).
#[derive(Debug, Clone, Copy)]
pub struct ShardStopped;

/// Cheap to clone; `Send + Sync`, shared by every shard.
///
/// The mailboxes are unbounded channels, and may stay so because everything
/// that reaches them is bounded elsewhere:
/// - requests' messages (Produce, Read, ListOffset, EpochEnd, DeleteRecords,
///   Group) are posted by a handler while its request's frame is held against
///   the connection's, shard's and broker's budgets (`budget.rs`), and every
///   handler awaits its answers before the frame is let go (acks=0 Produce
///   included; a follower's Fetch is a request like any other). A message is at most one per partition or group the request
///   names, and carries slices of the frame or what was decoded from it (at
///   most 8 MiB + 4x the frame, `api::decode_budget_bytes`). So what waits in
///   all mailboxes together is bounded by `queued.max.request.bytes` times a
///   constant, plus the decode base per request in flight (at most
///   `INFLIGHT_MAX` per connection, connections capped by `max.connections`);
/// - the control plane's (Assign, Unassign, group Slots) are one per replica
///   or shard per reconcile round, and each round awaits its answers;
/// - LogDirs is one per shard per DescribeLogDirs request in flight, which
///   awaits them (so bounded like any request);
/// - Shutdown is one per shard.
#[derive(Clone)]
pub struct Router {
    mailboxes: Vec<mpsc::UnboundedSender<ShardMsg>>,
}

impl Router {
    pub fn new(mailboxes: Vec<mpsc::UnboundedSender<ShardMsg>>) -> Self {
        Router { mailboxes }
    }
    pub fn shards(&self) -> usize {
        self.mailboxes.len()
    }
    /// Posts `msg` to `shard`. Fails only when that shard has stopped (shutdown).
    pub fn send(&self, shard: usize, msg: ShardMsg) -> Result<(), ShardStopped> {
        self.mailboxes[shard].send(msg).map_err(|_| ShardStopped)
    }
    /// Posts the message `msg` builds around a fresh reply channel to `shard`.
    /// It never awaits, so a request can post to every owner first and
    /// collect (`answer`) after: the owners work in parallel.
    pub fn ask<T>(&self, shard: usize, msg: impl FnOnce(Reply<T>) -> ShardMsg) -> Pending<T> {
        let (tx, rx) = oneshot::channel();
        self.send(shard, msg(tx))
            .map(|()| rx)
            .map_err(|_| KafkaError::new(errors::KAFKA_STORAGE_ERROR, "broker is shutting down"))
    }
}

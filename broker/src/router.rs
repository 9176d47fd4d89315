//! Which shard owns a partition, and the mailboxes that carry work to it.
//! A partition is owned by exactly one shard; requests that touch it from other
//! shards travel as messages, never through a lock.

use tokio::sync::{mpsc, oneshot};

use crate::errors::{self, KafkaError};
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

/// Stable owner: a topic's partitions go round-robin over the shards, starting
/// at a per-topic offset so single-partition topics spread too.
pub fn owner_shard(topic: &str, partition: i32, shards: usize) -> usize {
    // FNV-1a: stable across runs and platforms (std's hasher is seeded).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in topic.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    ((h as usize).wrapping_add(partition as usize)) % shards
}

/// The target shard has stopped (the broker is shutting down).
#[derive(Debug, Clone, Copy)]
pub struct ShardStopped;

/// Cheap to clone; `Send + Sync`, shared by every shard.
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
    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        owner_shard(topic, partition, self.mailboxes.len())
    }
    /// Posts `msg` to `shard`. Fails only when that shard has stopped (shutdown).
    pub fn send(&self, shard: usize, msg: ShardMsg) -> Result<(), ShardStopped> {
        self.mailboxes[shard].send(msg).map_err(|_| ShardStopped)
    }
    /// Posts the message `msg` builds around a fresh reply channel to the
    /// partition's owner. It never awaits, so a request can post to every
    /// owner first and collect (`answer`) after: the owners work in parallel.
    pub fn ask_owner<T>(&self, topic: &str, partition: i32, msg: impl FnOnce(Reply<T>) -> ShardMsg) -> Pending<T> {
        let (tx, rx) = oneshot::channel();
        self.send_to_owner(topic, partition, msg(tx))
            .map(|()| rx)
            .map_err(|_| KafkaError::new(errors::KAFKA_STORAGE_ERROR, "broker is shutting down"))
    }
    pub fn send_to_owner(&self, topic: &str, partition: i32, msg: ShardMsg) -> Result<(), ShardStopped> {
        self.send(self.owner(topic, partition), msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_evenly() {
        let mut counts = [0; 4];
        for p in 0..400 {
            counts[owner_shard("orders", p, 4)] += 1;
        }
        assert_eq!(counts, [100; 4]);
        assert_eq!(owner_shard("orders", 7, 4), owner_shard("orders", 7, 4));
        assert_eq!(owner_shard("x", 0, 1), 0);
    }
}

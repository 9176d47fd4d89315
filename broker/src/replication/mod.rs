//! Replication, Kafka's protocol: followers fetch from the leader with
//! ordinary Fetch requests carrying their replica id, append the leader's
//! batches byte for byte, and tell the leader how far they got by the offset
//! of their next fetch. The leader keeps the in-sync replica set and the high
//! watermark (what every in-sync replica has), answers acks=all once the high
//! watermark passes a write, and changes the ISR in the metadata store by
//! compare-and-swap, so a deposed leader cannot.
//!
//! Rooms:
//! - `roles`: which role each replica plays, from its partition record, and
//!   the transitions (a new leader's epoch made durable first, waiters failed
//!   when leadership ends, ISR shrink checks);
//! - `leader`: the leader's state — follower progress, maximal ISR, high
//!   watermark, the purgatory of acks=all produces;
//! - `serve`: a follower's fetch as the leader answers it (divergence check,
//!   progress, ISR expansion);
//! - `produce`: the produce path with acks and `min.insync.replicas`;
//! - `isr`: ISR changes written to the store;
//! - `follower`: the fetcher tasks of a follower shard, and `wire` the
//!   connection they use.
//!
//! Why a deposed leader cannot acknowledge: an acks=all write is answered
//! only when every member of the leader's maximal ISR has fetched it, and
//! that set always contains the ISR the controller elects from. A new leader
//! is elected only after the old one's lease expired (or its incarnation
//! changed), and followers that learn of it stop fetching from the old one:
//! the new leader can only have stopped fetching after it had the write, so
//! the write survives in its log. The old leader also stops by itself when
//! its lease clock runs out (`Cluster::is_acting`), and its ISR writes are
//! fenced on the partition record's version.

pub mod follower;
pub mod isr;
pub mod leader;
pub mod produce;
pub mod roles;
pub mod serve;
pub mod wire;

use std::time::Duration;

/// Replication settings from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this
    /// long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch long-polls.
    pub fetch_wait_max: Duration,
    /// `replica.fetch.max.bytes`: per partition in one fetch.
    pub fetch_partition_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub fetch_response_max_bytes: i32,
    /// Followers fdatasync what they appended before fetching again, so the
    /// high watermark counts only data on disk on every in-sync replica
    /// (with the leader's own fdatasync of acks=all writes, the default, unless `--no-fsync-acks-all`).
    pub fsync_followers: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max: Duration::from_secs(30),
            fetch_wait_max: Duration::from_millis(500),
            fetch_partition_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            fsync_followers: true,
        }
    }
}

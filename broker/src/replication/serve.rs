//! A follower's fetch, as its leader answers it (on the partition's owner
//! shard): the follower's log is checked against the leader's epochs first
//! (KIP-595's DivergingEpoch: where it must cut back to), then its fetch
//! offset is taken as its progress (everything before it, it has), the high
//! watermark recomputed, a caught-up follower added to the ISR, and the
//! leader's log returned from that offset up to its log end, zero-copy.

use std::sync::Arc;

use laminar_engine::ReadLimit;

use super::isr;
use crate::errors::{self, KafkaError};
use crate::shard::{PartitionRead, ReplicaFetch, SharedShard};

pub fn follower_fetch(
    shard: &SharedShard,
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    max_bytes: u64,
    leader_epoch: i32,
    rf: ReplicaFetch,
) -> Result<PartitionRead, KafkaError> {
    let (log, leader) = shard.borrow().leader(topic, partition, leader_epoch)?;
    if !leader.borrow().record.record.replicas.contains(&rf.node) {
        return Err(KafkaError::new(
            errors::NOT_LEADER_OR_FOLLOWER,
            format!("broker {} holds no replica of {topic}-{partition}", rf.node),
        ));
    }
    if offset < 0 {
        return Err(KafkaError::new(errors::OFFSET_OUT_OF_RANGE, format!("negative fetch offset {offset}")));
    }
    let offset = offset as u64;
    let answer = |diverging: Option<(i32, i64)>, error: i16| PartitionRead {
        slice: None,
        high_watermark: log.high_watermark(),
        last_stable_offset: log.high_watermark(),
        log_start_offset: log.log_start_offset(),
        diverging,
        error,
        watch: log.watch(),
    };
    let log_end = log.log_end_offset();
    // Does the follower's log agree with ours up to its fetch offset?
    if rf.last_fetched_epoch >= 0 {
        let (epoch, end) = log.end_offset_for_epoch(rf.last_fetched_epoch);
        if epoch != rf.last_fetched_epoch || end < offset as i64 {
            return Ok(answer(Some((epoch, end)), errors::NONE));
        }
    }
    if offset > log_end {
        let latest = log.latest_epoch().unwrap_or(-1);
        return Ok(answer(Some((latest, log_end as i64)), errors::NONE));
    }
    if offset < log.log_start_offset() {
        // The follower starts over at our log start (retention passed it).
        return Ok(answer(None, errors::OFFSET_OUT_OF_RANGE));
    }
    let add = {
        let mut l = leader.borrow_mut();
        let epoch_start = l.epoch_start;
        let add = l.follower_fetched(rf.node, offset, log_end, log.high_watermark(), epoch_start);
        l.advance(&log);
        add
    };
    if add {
        isr::expand(shard, (topic.clone(), partition), leader, rf.node);
    }
    let r = log.read_to(offset, max_bytes, true, ReadLimit::LogEnd).map_err(KafkaError::from)?;
    Ok(PartitionRead { slice: r.slice, ..answer(None, errors::NONE) })
}

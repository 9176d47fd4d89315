//! The produce path on the leader's shard: leadership checked (with the
//! lease), `min.insync.replicas` checked for acks=all, the batches appended
//! (and fdatasynced for a durable acks=all), then answered — at once for
//! acks=0/1, and for acks=all once the high watermark has passed the last
//! batch (parked in the leader's purgatory, bounded by the request's timeout).
//!
//! A sequence gap right after a refusal is answered as retriable, not as
//! OUT_OF_ORDER_SEQUENCE_NUMBER: a client pipelines batches A and B; A is
//! refused before it is appended (this broker is not leader yet, or the ISR
//! is too small) and B, a moment later, is not (leadership or the ISR came
//! back in between), so B's sequence skips A's. Kafka answers B with
//! OUT_OF_ORDER, on which librdkafka bumps its producer epoch and re-sends
//! every batch it holds under new sequence numbers, including ones an
//! earlier leader may have written (answered "possibly persisted"): those
//! then land twice. NOT_ENOUGH_REPLICAS (retriable, "not written") instead
//! makes the client resend A and then B, in order, under the same sequence
//! numbers. Only within `GAP_AFTER_REFUSAL` of a refusal: a genuine gap
//! still gets OUT_OF_ORDER.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use laminar_engine::AppendInfo;

use crate::errors::{self, KafkaError};
use crate::shard::{ReplicaKey, Reply, SharedShard};

/// How long after a refused produce a sequence gap is taken for its
/// consequence (see the module doc): a client retries within its backoff
/// (100 ms to 1 s by default), refusals during an outage renew it.
const GAP_AFTER_REFUSAL: Duration = Duration::from_secs(5);

fn refused(shard: &SharedShard, key: &ReplicaKey) {
    if let Some(r) = shard.borrow_mut().replicas.get_mut(key) {
        r.refused_produce_at = Some(Instant::now());
    }
}

fn refused_lately(shard: &SharedShard, key: &ReplicaKey) -> bool {
    let s = shard.borrow();
    s.replicas.get(key).and_then(|r| r.refused_produce_at).is_some_and(|t| t.elapsed() < GAP_AFTER_REFUSAL)
}

#[allow(clippy::too_many_arguments)]
pub fn handle(
    shard: &SharedShard,
    topic: Arc<str>,
    partition: i32,
    batches: Vec<Bytes>,
    acks: i16,
    sync: bool,
    timeout: Duration,
    reply: Reply<AppendInfo>,
) {
    let key: ReplicaKey = (topic.clone(), partition);
    let leading = shard.borrow().leader(&topic, partition, -1);
    let (log, leader) = match leading {
        Ok(x) => x,
        Err(e) => {
            refused(shard, &key);
            let _ = reply.send(Err(e));
            return;
        }
    };
    if acks == -1 {
        let short = {
            let l = leader.borrow();
            ((l.isr_size() as i32) < l.min_insync_replicas).then(|| (l.isr_size(), l.min_insync_replicas))
        };
        if let Some((isr, min)) = short {
            refused(shard, &key);
            let _ = reply.send(Err(KafkaError::new(
                errors::NOT_ENOUGH_REPLICAS,
                format!("{topic}-{partition} has {isr} in-sync replicas, fewer than min.insync.replicas {min}"),
            )));
            return;
        }
    }
    let shard = shard.clone();
    // Spawned tasks first run in spawn order, so appends keep the order their
    // requests arrived in.
    tokio_uring::spawn(async move {
        let appended = log.append(batches, sync).await;
        crate::log_limit::note_append(&topic, partition, &appended);
        let info = match appended {
            Ok(info) => info,
            Err(e) => {
                let mut e = KafkaError::from(e);
                if e.code == errors::OUT_OF_ORDER_SEQUENCE_NUMBER && refused_lately(&shard, &key) {
                    e = KafkaError::new(
                        errors::NOT_ENOUGH_REPLICAS,
                        format!("{}; an earlier batch was refused moments ago: resend from it", e.message),
                    );
                }
                let _ = reply.send(Err(e));
                return;
            }
        };
        let waiting = {
            let mut l = leader.borrow_mut();
            let hw = l.advance(&log);
            if acks != -1 {
                None
            } else if hw > info.last_offset {
                // Committed already (this leader is the only in-sync replica).
                Some(Err(l.committed_answer()))
            } else {
                Some(Ok(l.wait_for(info.last_offset + 1)))
            }
        };
        let rx = match waiting {
            None => {
                let _ = reply.send(Ok(info));
                return;
            }
            Some(Err(answer)) => {
                let _ = reply.send(answer.map(|()| info));
                return;
            }
            Some(Ok(rx)) => rx,
        };
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(info),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(super::leader::ended("its state was dropped")),
            Err(_) => Err(KafkaError::new(
                errors::REQUEST_TIMED_OUT,
                format!("the in-sync replicas did not confirm the write within {timeout:?}"),
            )),
        };
        let _ = reply.send(answer);
    });
}

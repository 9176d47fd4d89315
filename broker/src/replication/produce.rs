//! The produce path on the leader's shard: leadership checked (with the
//! lease), `min.insync.replicas` checked for acks=all, the batches appended
//! (and fdatasynced for a durable acks=all), then answered — at once for
//! acks=0/1, and for acks=all once the high watermark has passed the last
//! batch (parked in the leader's purgatory, bounded by the request's timeout).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use laminar_engine::AppendInfo;

use crate::errors::{self, KafkaError};
use crate::shard::{Reply, SharedShard};

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
    let (log, leader) = match shard.borrow().leader(&topic, partition, -1) {
        Ok(x) => x,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    if acks == -1 {
        let l = leader.borrow();
        if (l.isr_size() as i32) < l.min_insync_replicas {
            let _ = reply.send(Err(KafkaError::new(
                errors::NOT_ENOUGH_REPLICAS,
                format!(
                    "{topic}-{partition} has {} in-sync replicas, fewer than min.insync.replicas {}",
                    l.isr_size(),
                    l.min_insync_replicas
                ),
            )));
            return;
        }
    }
    // Spawned tasks first run in spawn order, so appends keep the order their
    // requests arrived in.
    tokio_uring::spawn(async move {
        let appended = log.append(batches, sync).await;
        crate::log_limit::note_append(&topic, partition, &appended);
        let info = match appended {
            Ok(info) => info,
            Err(e) => {
                let _ = reply.send(Err(KafkaError::from(e)));
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
            Ok(Err(_)) => Err(KafkaError::new(errors::NOT_LEADER_OR_FOLLOWER, "leadership ended")),
            Err(_) => Err(KafkaError::new(
                errors::REQUEST_TIMED_OUT,
                format!("the in-sync replicas did not confirm the write within {timeout:?}"),
            )),
        };
        let _ = reply.send(answer);
    });
}

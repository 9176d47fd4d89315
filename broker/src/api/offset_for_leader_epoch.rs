//! OffsetForLeaderEpoch (23): where a leader epoch ends in the leader's log
//! (KIP-101, KIP-320). Consumers ask it after a leader change to find out
//! whether their position survived (a truncated tail means they read records
//! that are gone); answered by the partition's leader from its epoch cache.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader};

use super::{decode, respond, HandlerResult};
use crate::context::Ctx;
use crate::router::{answer, Pending};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: OffsetForLeaderEpochRequest = decode(header, body)?;
    let view = ctx.view();
    // Post every question first, then collect: owners work in parallel.
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name: std::sync::Arc<str> = std::sync::Arc::from(t.topic.0.as_str());
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let topic = name.clone();
            // Followers (replica id set, v3+) act for the cluster.
            let allowed = if req.replica_id.0 >= 0 {
                authz::cluster(ctx, Operation::ClusterAction)
            } else {
                authz::topic(ctx, Operation::Describe, &name)
            };
            let pending: Pending<(i32, i64, i32)> = allowed.and_then(|()| {
                ctx.ask_partition(&view, &name, p.partition, |reply| ShardMsg::EpochEnd {
                    topic,
                    partition: p.partition,
                    current_leader_epoch: p.current_leader_epoch,
                    epoch: p.leader_epoch,
                    reply,
                })
            });
            parts.push((p.partition, pending));
        }
        topics.push((t.topic, parts));
    }
    let mut out = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for (partition, pending) in parts {
            let r = EpochEndOffset::default().with_partition(partition);
            partitions.push(match answer(pending).await {
                Ok((epoch, end_offset, _current)) => r.with_leader_epoch(epoch).with_end_offset(end_offset),
                Err(e) => r.with_error_code(e.code).with_leader_epoch(-1).with_end_offset(-1),
            });
        }
        out.push(OffsetForLeaderTopicResult::default().with_topic(name).with_partitions(partitions));
    }
    respond(header, &OffsetForLeaderEpochResponse::default().with_topics(out))
}

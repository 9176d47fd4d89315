//! ListOffsets (2): earliest (-2), latest (-1), by timestamp, each answered by
//! the partition's owner shard (latest is the high watermark; with no
//! transactions the last stable offset equals it, so isolation level agrees).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use super::{decode, respond, HandlerResult};
use crate::context::Ctx;
use crate::router::{answer, Pending};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: ListOffsetsRequest = decode(header, body)?;
    let view = ctx.view();
    // Post every lookup first, then collect: owners work in parallel.
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name: std::sync::Arc<str> = std::sync::Arc::from(t.name.0.as_str());
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let index = p.partition_index;
            let topic = name.clone();
            let pending: Pending<(i64, i64, i32)> = authz::topic(ctx, Operation::Describe, &name).and_then(|()| {
                ctx.ask_partition(&view, &name, index, |reply| ShardMsg::ListOffset {
                    topic,
                    partition: index,
                    timestamp: p.timestamp,
                    // v4+ carries the client's leader epoch (KIP-320).
                    leader_epoch: if header.request_api_version >= 4 { p.current_leader_epoch } else { -1 },
                    reply,
                })
            });
            parts.push((index, pending));
        }
        topics.push((t.name, parts));
    }
    let mut out = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for (index, pending) in parts {
            let result = answer(pending).await;
            let r = ListOffsetsPartitionResponse::default().with_partition_index(index);
            partitions.push(match result {
                // leader_epoch exists from v4; the codec refuses it set earlier.
                Ok((offset, timestamp, epoch)) => {
                    let r = r.with_offset(offset).with_timestamp(timestamp);
                    if header.request_api_version >= 4 {
                        r.with_leader_epoch(epoch)
                    } else {
                        r
                    }
                }
                Err(e) => r.with_error_code(e.code).with_offset(-1).with_timestamp(-1),
            });
        }
        out.push(ListOffsetsTopicResponse::default().with_name(name).with_partitions(partitions));
    }
    respond(header, &ListOffsetsResponse::default().with_topics(out))
}

//! DeleteRecords (21): advances a partition's log start offset (offset -1
//! means "up to the high watermark"). Segments wholly below it go at once.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::{decode, respond, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::router::{answer, Pending};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DeleteRecordsRequest = decode(header, body)?;
    let view = ctx.view();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name: std::sync::Arc<str> = std::sync::Arc::from(t.name.0.as_str());
        let mut parts = Vec::new();
        for p in t.partitions {
            let index = p.partition_index;
            let pending: Pending<u64> = if let Err(e) = authz::topic(ctx, Operation::Delete, &name) {
                Err(e)
            } else if p.offset < -1 {
                Err(KafkaError::new(errors::OFFSET_OUT_OF_RANGE, format!("offset {} is invalid", p.offset)))
            } else {
                let topic = name.clone();
                ctx.ask_partition(&view, &name, index, |reply| ShardMsg::DeleteRecords {
                    topic,
                    partition: index,
                    offset: p.offset,
                    reply,
                })
            };
            parts.push((index, pending));
        }
        topics.push((t.name, parts));
    }
    let mut out = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for (index, pending) in parts {
            let result = answer(pending).await;
            let r = DeleteRecordsPartitionResult::default().with_partition_index(index);
            partitions.push(match result {
                Ok(low) => r.with_low_watermark(low as i64),
                Err(e) => r.with_error_code(e.code).with_low_watermark(-1),
            });
        }
        out.push(DeleteRecordsTopicResult::default().with_name(name).with_partitions(partitions));
    }
    respond(header, &DeleteRecordsResponse::default().with_topics(out))
}

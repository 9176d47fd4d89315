//! DeleteRecords (21): advances a partition's log start offset (offset -1
//! means "up to the high watermark"). Segments wholly below it go at once.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};
use tokio::sync::oneshot;

use super::{decode, respond, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DeleteRecordsRequest = decode(header, body)?;
    let catalog = ctx.catalog.load();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name: std::sync::Arc<str> = std::sync::Arc::from(t.name.0.as_str());
        let meta = catalog.get(&name);
        let mut parts = Vec::new();
        for p in t.partitions {
            let pending = if meta.is_none_or(|m| p.partition_index < 0 || p.partition_index >= m.record.partitions) {
                Err(KafkaError::new(errors::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic or partition"))
            } else if p.offset < -1 {
                Err(KafkaError::new(errors::OFFSET_OUT_OF_RANGE, format!("offset {} is invalid", p.offset)))
            } else {
                let (tx, rx) = oneshot::channel();
                let msg = ShardMsg::DeleteRecords {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.offset,
                    reply: tx,
                };
                ctx.router
                    .send_to_owner(&name, p.partition_index, msg)
                    .map(|()| rx)
                    .map_err(|_| KafkaError::new(errors::KAFKA_STORAGE_ERROR, "shutting down"))
            };
            parts.push((p.partition_index, pending));
        }
        topics.push((t.name, parts));
    }
    let mut out = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for (index, pending) in parts {
            let result = match pending {
                Err(e) => Err(e),
                Ok(rx) => {
                    rx.await.unwrap_or_else(|_| Err(KafkaError::new(errors::KAFKA_STORAGE_ERROR, "shard stopped")))
                }
            };
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

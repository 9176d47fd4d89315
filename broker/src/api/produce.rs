//! Produce (0). The produce path: decode → per partition, split the records
//! into batches and post them to the owning shard (in request order, before any
//! await, so pipelined requests append in order) → the shard's log validates,
//! assigns offsets and group-commits → acks come back → one response.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use laminar_engine::{batch, AppendInfo};

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::router::{answer, Pending};
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: ProduceRequest = decode(header, body)?;
    let acks = req.acks;
    let sync = acks == -1 && ctx.config.fsync_on_acks_all;
    let view = ctx.view();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name: Arc<str> = Arc::from(t.name.0.as_str());
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let pending: Pending<AppendInfo> = if !matches!(acks, -1..=1) {
                Err(KafkaError::new(errors::INVALID_REQUIRED_ACKS, format!("acks={acks}")))
            } else {
                split(p.records.unwrap_or_default()).and_then(|batches| {
                    let topic = name.clone();
                    ctx.ask_partition(&view, &name, p.index, |reply| ShardMsg::Produce {
                        topic,
                        partition: p.index,
                        batches,
                        sync,
                        reply,
                    })
                })
            };
            parts.push((p.index, pending));
        }
        topics.push((name, parts));
    }
    if acks == 0 {
        return Ok(None); // the client expects no response at all
    }
    let mut responses = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partition_responses = Vec::with_capacity(parts.len());
        for (index, pending) in parts {
            let result = answer(pending).await;
            let r = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
            partition_responses.push(match result {
                Ok(info) => {
                    r.with_base_offset(info.base_offset as i64).with_log_start_offset(info.log_start_offset as i64)
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = index, code = e.code, "produce rejected: {}", e.message);
                    r.with_error_code(e.code)
                        .with_base_offset(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(Some(s(e.message)))
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(s(&*name)))
                .with_partition_responses(partition_responses),
        );
    }
    respond(header, &ProduceResponse::default().with_responses(responses))
}

/// Splits a partition's records into batches: slices of the request frame,
/// no copy (the engine writes its own 16-byte head beside each).
fn split(records: Bytes) -> Result<Vec<Bytes>, KafkaError> {
    let ranges = batch::split_batches(&records).map_err(KafkaError::from)?;
    Ok(ranges.into_iter().map(|r| records.slice(r)).collect())
}

//! Produce (0). The produce path: decode → per partition, split the records
//! into batches and post them to the owning shard (in request order, before any
//! await, so pipelined requests append in order) → the shard's log validates,
//! assigns offsets and group-commits → acks come back → one response.

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader};
use laminar_engine::{batch, AppendInfo};

use super::api_versions::PRODUCE_MIN_ACCEPTED;
use super::{decode, respond, s, ConnError, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::response::{Chunk, Response};
use crate::router::{answer, Pending};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::ShardMsg;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    if header.request_api_version < PRODUCE_MIN_ACCEPTED {
        return refuse_old_version(header, body);
    }
    let req: ProduceRequest = decode(header, body)?;
    let acks = req.acks;
    let sync = acks == -1 && ctx.config.fsync_on_acks_all;
    // How long acks=all waits for the replicas (Kafka's request timeout field).
    let timeout = std::time::Duration::from_millis(req.timeout_ms.clamp(1, PRODUCE_TIMEOUT_MAX_MS) as u64);
    let view = ctx.view();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name: Arc<str> = Arc::from(t.name.0.as_str());
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let pending: Pending<AppendInfo> = if !matches!(acks, -1..=1) {
                Err(KafkaError::new(errors::INVALID_REQUIRED_ACKS, format!("acks={acks}")))
            } else {
                // Where it goes first: a partition that is not here says so
                // whatever its records look like.
                authz::topic(ctx, Operation::Write, &name)
                    .and_then(|()| ctx.route(&view, &name, p.index).map_err(|e| invalid_name(&name, e)))
                    .and_then(|shard| {
                        let records = p.records.unwrap_or_default();
                        crate::metrics::bytes_in(&name, records.len() as u64);
                        let batches = split(records)?;
                        let topic = name.clone();
                        ctx.router.ask(shard, |reply| ShardMsg::Produce {
                            topic,
                            partition: p.index,
                            batches,
                            acks,
                            sync,
                            timeout,
                            reply,
                        })
                    })
            };
            parts.push((p.index, pending));
        }
        topics.push((name, parts));
    }
    if acks == 0 {
        // The client expects no response at all. The appends are still
        // awaited: until they are done the request's bytes stay held against
        // the connection's budgets (so a flood of acks=0 requests stops being
        // read instead of queueing without end), and a later request's
        // answer cannot overtake this one's writes.
        for (_, parts) in topics {
            for (_, pending) in parts {
                let _ = answer(pending).await;
            }
        }
        return Ok(None);
    }
    let mut responses = Vec::with_capacity(topics.len());
    for (name, parts) in topics {
        let mut partition_responses = Vec::with_capacity(parts.len());
        for (index, pending) in parts {
            let result = answer(pending).await;
            let r = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
            partition_responses.push(match result {
                Ok(info) => r
                    .with_base_offset(info.base_offset as i64)
                    .with_log_start_offset(info.log_start_offset as i64)
                    .with_log_append_time_ms(info.log_append_time_ms),
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

/// Longest a produce request may wait for its replicas, whatever it asks.
const PRODUCE_TIMEOUT_MAX_MS: i32 = 300_000;

/// A name that can never exist is INVALID_TOPIC_EXCEPTION, which clients
/// treat as final; UNKNOWN_TOPIC_OR_PARTITION would make them refresh metadata
/// and retry until their delivery timeout. (Kafka's Produce answers the
/// latter; its Metadata already says the former.)
fn invalid_name(topic: &str, e: KafkaError) -> KafkaError {
    match crate::topic_name::validate(topic) {
        Err(why) if e.code == errors::UNKNOWN_TOPIC_OR_PARTITION => {
            KafkaError::new(errors::INVALID_TOPIC_EXCEPTION, why)
        }
        _ => e,
    }
}

/// Produce v0–v2 (message format v0/v1) are advertised for old librdkafka's
/// sake but not served. Every partition gets UNSUPPORTED_VERSION, which the
/// clients treat as final (kafka-python's UnsupportedVersionError is not
/// retriable; librdkafka and the Java client fail the batch), instead of a
/// closed connection they would retry until their delivery timeout. The codec
/// knows only v3+ (Kafka 4.0's message specs dropped v0–v2), so both the
/// request and the answer are hand-coded here; the records are skipped unread.
fn refuse_old_version(header: &RequestHeader, body: Bytes) -> HandlerResult {
    let version = header.request_api_version;
    let budget = super::decode_budget_bytes(body.len());
    let OldProduce { acks, topics } = kafka_protocol::protocol::budget::with_decode_budget(budget, || decode_old(body))
        .map_err(|e| ConnError::Frame(format!("malformed request body (api 0 v{version}): {e}")))?;
    tracing::debug!(version, acks, "refusing Produce v{version}: v{PRODUCE_MIN_ACCEPTED}+ only");
    if acks == 0 {
        return Ok(None); // the client expects no response at all
    }
    let mut b = BytesMut::with_capacity(64);
    Response::header_bytes(ApiKey::Produce, version, header.correlation_id, &mut b);
    b.put_i32(topics.len() as i32);
    for (name, partitions) in &topics {
        b.put_slice(name); // length prefix included, as the client sent it
        b.put_i32(partitions.len() as i32);
        for index in partitions {
            b.put_i32(*index);
            b.put_i16(errors::UNSUPPORTED_VERSION);
            b.put_i64(-1); // base offset
            if version >= 2 {
                b.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        b.put_i32(0); // throttle time
    }
    Ok(Some(Response { chunks: vec![Chunk::Bytes(b.freeze())] }))
}

/// What a refusal needs of a Produce v0–v2 request.
pub(crate) struct OldProduce {
    acks: i16,
    /// (name with its i16 length prefix, as sent; partition indexes).
    topics: Vec<(Bytes, Vec<i32>)>,
}

/// A Produce v0–v2 body: acks i16, timeout i32, [topic: name (i16-prefixed),
/// [partition: index i32, records (i32-prefixed, -1 = null)]]. Counts come
/// from the wire, so nothing is reserved from them, and what is kept is
/// charged to the request's decode budget as the codec's own decoders do
/// (three times its size: a growing vector, while it moves, holds its old
/// buffer and one twice as large).
pub(crate) fn decode_old(mut body: Bytes) -> Result<OldProduce, String> {
    fn need(b: &Bytes, n: usize) -> Result<(), String> {
        if b.remaining() < n {
            Err("truncated".into())
        } else {
            Ok(())
        }
    }
    fn charge(bytes: usize, what: &str) -> Result<(), String> {
        kafka_protocol::protocol::budget::charge(3 * bytes, || what.to_string()).map_err(|e| e.to_string())
    }
    need(&body, 2 + 4 + 4)?;
    let acks = body.get_i16();
    let _timeout_ms = body.get_i32();
    let topic_count = body.get_i32();
    if topic_count < 0 {
        return Err("negative topic count".into());
    }
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        need(&body, 2)?;
        let name_len = i16::from_be_bytes([body[0], body[1]]);
        if name_len < 0 {
            return Err("null topic name".into());
        }
        need(&body, 2 + name_len as usize + 4)?;
        charge(std::mem::size_of::<(Bytes, Vec<i32>)>(), "a Produce v0-v2 topic")?;
        let name = body.split_to(2 + name_len as usize);
        let partition_count = body.get_i32();
        if partition_count < 0 {
            return Err("negative partition count".into());
        }
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            need(&body, 4 + 4)?;
            charge(std::mem::size_of::<i32>(), "a Produce v0-v2 partition")?;
            partitions.push(body.get_i32());
            let records_len = body.get_i32();
            if records_len < -1 {
                return Err("negative records length".into());
            }
            if records_len > 0 {
                need(&body, records_len as usize)?;
                body.advance(records_len as usize);
            }
        }
        topics.push((name, partitions));
    }
    if body.has_remaining() {
        return Err("trailing bytes".into());
    }
    Ok(OldProduce { acks, topics })
}

/// Splits a partition's records into batches: slices of the request frame,
/// no copy (the engine writes its own 16-byte head beside each).
fn split(records: Bytes) -> Result<Vec<Bytes>, KafkaError> {
    let ranges = batch::split_batches(&records).map_err(KafkaError::from)?;
    Ok(ranges.into_iter().map(|r| records.slice(r)).collect())
}

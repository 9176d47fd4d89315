//! DescribeLogDirs (35): the replicas this broker holds on disk, with their
//! size and how far each one's end is below its high watermark. What
//! `kafka-log-dirs.sh` and `laminarctl topic describe` ask for sizes on
//! disk. Every shard answers for the replicas it holds; the broker has one
//! data directory, so the answer has one log dir. Total and usable bytes
//! (v4) are left at -1, "unknown", as the protocol allows.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName};
use tokio::sync::oneshot;

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors;
use crate::security::acl::Operation;
use crate::security::authz;
use crate::shard::{ReplicaSize, ShardMsg};

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeLogDirsRequest = decode(header, body)?;
    if let Err(e) = authz::cluster(ctx, Operation::Describe) {
        // Kafka's answer: the error from v3 on, no directories before.
        let resp = DescribeLogDirsResponse::default();
        let resp = if header.request_api_version >= 3 { resp.with_error_code(e.code) } else { resp };
        return respond(header, &resp);
    }
    // Null: every replica; else only the partitions named.
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        req.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    // Ask every shard first, then collect: they answer in parallel.
    let mut pending = Vec::with_capacity(ctx.router.shards());
    for shard in 0..ctx.router.shards() {
        let (tx, rx) = oneshot::channel();
        if ctx.router.send(shard, ShardMsg::LogDirs { reply: tx }).is_ok() {
            pending.push(rx);
        }
    }
    let mut dir = String::new();
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut answered = 0;
    for rx in pending {
        let Ok((data_dir, sizes)) = rx.await else { continue };
        answered += 1;
        dir = data_dir.display().to_string();
        for ReplicaSize { topic, partition, size_bytes, offset_lag } in sizes {
            let asked = match &wanted {
                None => true,
                Some(w) => w.get(&*topic).is_some_and(|ps| ps.contains(&partition)),
            };
            if asked {
                by_topic.entry(topic.to_string()).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(partition)
                        .with_partition_size(i64::try_from(size_bytes).unwrap_or(i64::MAX))
                        .with_offset_lag(offset_lag),
                );
            }
        }
    }
    let mut result = DescribeLogDirsResult::default().with_log_dir(s(dir));
    if answered < ctx.router.shards() {
        // A shard stopped (the broker is shutting down): say so rather than
        // answer with a partial list that looks whole.
        result = result.with_error_code(errors::KAFKA_STORAGE_ERROR);
    } else {
        let topics = by_topic
            .into_iter()
            .map(|(name, mut partitions)| {
                partitions.sort_by_key(|p| p.partition_index);
                DescribeLogDirsTopic::default().with_name(TopicName(s(name))).with_partitions(partitions)
            })
            .collect();
        result = result.with_topics(topics);
    }
    respond(header, &DescribeLogDirsResponse::default().with_results(vec![result]))
}

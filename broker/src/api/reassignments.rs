//! AlterPartitionReassignments (45) and ListPartitionReassignments (46),
//! KIP-455: what `kafka-reassign-partitions.sh` and admin clients use to move
//! replicas between brokers. Each partition's change is one
//! compare-and-swap in `cluster::admin::reassign`; the controller finishes
//! it once the new replicas are in sync (`cluster/reassignment.rs`).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader, TopicName,
};

use super::{decode, respond, s, HandlerResult};
use crate::cluster::reassignment;
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::security::acl::Operation;
use crate::security::authz;

pub async fn alter(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: AlterPartitionReassignmentsRequest = decode(header, body)?;
    // v1 (KIP-860) lets a client forbid changing the replication factor;
    // v0 always allowed it.
    let rf_change_allowed = header.request_api_version < 1 || req.allow_replication_factor_change;
    if let Err(e) = authz::cluster(ctx, Operation::Alter) {
        let resp = AlterPartitionReassignmentsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)))
            .with_allow_replication_factor_change(rf_change_allowed);
        return respond(header, &resp);
    }
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let outcome = match (&target, rf_change_allowed) {
                (Some(target), false) => match current_rf(ctx, &t.name.0, p.partition_index) {
                    Some(rf) if rf != target.len() => Err(KafkaError::new(
                        errors::INVALID_REPLICATION_FACTOR,
                        format!(
                            "the target has {} replicas, the partition {rf}, and the request forbids a change",
                            target.len()
                        ),
                    )),
                    _ => ctx.admin.reassign(&t.name.0, p.partition_index, Some(target)).await,
                },
                (target, _) => ctx.admin.reassign(&t.name.0, p.partition_index, target.as_deref()).await,
            };
            let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => r,
                Err(e) => r.with_error_code(e.code).with_error_message(Some(s(e.message))),
            });
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    let resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(rf_change_allowed)
        .with_responses(responses);
    respond(header, &resp)
}

/// Replicas before any move in progress.
fn current_rf(ctx: &Ctx, topic: &str, partition: i32) -> Option<usize> {
    let view = ctx.view();
    let stored = view.topic(topic)?.partition(partition)?;
    Some(reassignment::original(&stored.record).len())
}

pub fn list(ctx: &Ctx, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: ListPartitionReassignmentsRequest = decode(header, body)?;
    if let Err(e) = authz::cluster(ctx, Operation::Describe) {
        let resp = ListPartitionReassignmentsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(s(e.message)));
        return respond(header, &resp);
    }
    let view = ctx.view();
    let ongoing = |name: &str, p: i32| {
        let rec = &view.topic(name)?.partition(p)?.record;
        reassignment::in_progress(rec).then(|| {
            let ids = |v: &[i32]| v.iter().map(|&n| BrokerId(n)).collect();
            OngoingPartitionReassignment::default()
                .with_partition_index(p)
                .with_replicas(ids(&rec.replicas))
                .with_adding_replicas(ids(&rec.adding))
                .with_removing_replicas(ids(&rec.removing))
        })
    };
    let mut topics = Vec::new();
    match req.topics {
        // Null: every reassignment in progress.
        None => {
            let mut names: Vec<&String> = view.topics.keys().collect();
            names.sort();
            for name in names {
                let count = view.topics[name].partition_count();
                let partitions: Vec<_> = (0..count).filter_map(|p| ongoing(name, p)).collect();
                if !partitions.is_empty() {
                    topics.push(topic(name, partitions));
                }
            }
        }
        Some(asked) => {
            for t in asked {
                let partitions: Vec<_> = t.partition_indexes.iter().filter_map(|&p| ongoing(&t.name.0, p)).collect();
                if !partitions.is_empty() {
                    topics.push(topic(&t.name.0, partitions));
                }
            }
        }
    }
    respond(header, &ListPartitionReassignmentsResponse::default().with_topics(topics))
}

fn topic(name: &str, partitions: Vec<OngoingPartitionReassignment>) -> OngoingTopicReassignment {
    OngoingTopicReassignment::default().with_name(TopicName(s(name.to_string()))).with_partitions(partitions)
}

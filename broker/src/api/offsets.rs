//! OffsetCommit (8), OffsetFetch (9), OffsetDelete (47): committed offsets,
//! validated here against the catalog, stored by the group's owner shard.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::groups::ask;
use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors;
use crate::group::{CommitArgs, Committed, GroupMsg};
use crate::security::acl::Operation;
use crate::security::authz;

/// `offset.metadata.max.bytes`
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

pub async fn commit(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: OffsetCommitRequest = decode(header, body)?;
    let group_id = req.group_id.0.to_string();
    let view = ctx.view();
    let now = laminar_engine::log::now_ms();
    // (topic, partition) → code for partitions refused before reaching the group.
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let mut offsets = Vec::new();
    let group_denied = authz::group(ctx, Operation::Read, &group_id).is_err();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        let topic_denied = authz::topic(ctx, Operation::Read, &topic).is_err();
        for p in &t.partitions {
            let code = if group_denied {
                authz::GROUP_AUTHORIZATION_FAILED
            } else if topic_denied {
                authz::TOPIC_AUTHORIZATION_FAILED
            } else if !view.has_partition(&topic, p.partition_index) {
                errors::UNKNOWN_TOPIC_OR_PARTITION
            } else if p.committed_metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES) {
                errors::OFFSET_METADATA_TOO_LARGE
            } else {
                offsets.push((
                    topic.clone(),
                    p.partition_index,
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_ms: now,
                    },
                ));
                continue;
            };
            refused.push((topic.clone(), p.partition_index, code));
        }
    }
    let accepted: Vec<(String, i32)> = offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
    let mut results = if group_id.is_empty() {
        accepted.iter().map(|(t, p)| (t.clone(), *p, errors::INVALID_GROUP_ID)).collect()
    } else if offsets.is_empty() {
        Vec::new()
    } else {
        let args = CommitArgs {
            group: group_id.clone(),
            generation: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            offsets,
        };
        match ask(ctx, &group_id, |reply| GroupMsg::Commit { args, reply }).await.and_then(|r| r) {
            Ok(r) => r,
            Err(code) => accepted.iter().map(|(t, p)| (t.clone(), *p, code)).collect(),
        }
    };
    results.extend(refused);
    // Answer in request order, one topic entry per request topic. A map, not
    // a search per partition: a request may carry thousands of partitions.
    let codes: std::collections::HashMap<(&str, i32), i16> =
        results.iter().map(|(t, p, c)| ((t.as_str(), *p), *c)).collect();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = codes.get(&(t.name.0.as_str(), p.partition_index)).copied().unwrap_or(errors::NONE);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    respond(header, &OffsetCommitResponse::default().with_topics(topics))
}

type Fetched = Vec<(String, i32, Option<Committed>)>;

async fn fetch_group(ctx: &Ctx, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Result<Fetched, i16> {
    authz::group(ctx, Operation::Describe, group).map_err(|e| e.code)?;
    let rows =
        ask(ctx, group, |reply| GroupMsg::Fetch { group: group.to_string(), topics, reply }).await.and_then(|r| r)?;
    // Offsets of topics the principal may not describe are left out.
    Ok(rows.into_iter().filter(|(t, _, _)| authz::topic(ctx, Operation::Describe, t).is_ok()).collect())
}

/// Groups (topic, partition, value) rows by topic, keeping first-seen order.
fn by_topic<T>(rows: Vec<(String, i32, T)>) -> Vec<(String, Vec<(i32, T)>)> {
    let mut out: Vec<(String, Vec<(i32, T)>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (t, p, c) in rows {
        match index.get(&t) {
            Some(&i) => out[i].1.push((p, c)),
            None => {
                index.insert(t.clone(), out.len());
                out.push((t, vec![(p, c)]));
            }
        }
    }
    out
}

fn committed_fields(c: &Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.clone().unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

pub async fn fetch(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: OffsetFetchRequest = decode(header, body)?;
    if header.request_api_version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let topics = g
                .topics
                .as_ref()
                .map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
            let entry = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            groups.push(match fetch_group(ctx, &g.group_id.0, topics).await {
                Err(code) => entry.with_error_code(code),
                Ok(rows) => entry.with_topics(
                    by_topic(rows)
                        .into_iter()
                        .map(|(t, parts)| {
                            OffsetFetchResponseTopics::default().with_name(TopicName(s(t))).with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, c)| {
                                        let (offset, epoch, meta) = committed_fields(&c);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(s(meta)))
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
            });
        }
        return respond(header, &OffsetFetchResponse::default().with_groups(groups));
    }
    let topics =
        req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
    let resp = match fetch_group(ctx, &req.group_id.0, topics).await {
        Err(code) if header.request_api_version >= 2 => OffsetFetchResponse::default().with_error_code(code),
        Err(_) => OffsetFetchResponse::default(),
        Ok(rows) => OffsetFetchResponse::default().with_topics(
            by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default().with_name(TopicName(s(t))).with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, c)| {
                                let (offset, epoch, meta) = committed_fields(&c);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(s(meta)))
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    };
    respond(header, &resp)
}

pub async fn delete(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: OffsetDeleteRequest = decode(header, body)?;
    let group_id = req.group_id.0.to_string();
    let topics: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
        .collect();
    let result = match authz::group(ctx, Operation::Delete, &group_id) {
        Err(e) => Err(e.code),
        Ok(()) => ask(ctx, &group_id, |reply| GroupMsg::DeleteOffsets { group: group_id.clone(), topics, reply })
            .await
            .and_then(|r| r),
    };
    let resp = match result {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(rows) => OffsetDeleteResponse::default().with_topics(
            by_topic(rows)
                .into_iter()
                .map(|(t, parts)| {
                    OffsetDeleteResponseTopic::default().with_name(TopicName(s(t))).with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, code)| {
                                OffsetDeleteResponsePartition::default().with_partition_index(p).with_error_code(code)
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    };
    respond(header, &resp)
}

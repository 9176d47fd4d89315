//! CreateTopics (19), DeleteTopics (20), CreatePartitions (37): thin
//! translations onto `cluster::admin`, which validates and writes the change
//! to the metadata store; the controller places partitions and every broker
//! follows, through its view.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, RequestHeader, TopicName,
};

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::topic_config;

pub async fn create(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: CreateTopicsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if !seen.insert(name.clone()) {
            results.push(error_result(
                result,
                KafkaError::new(errors::INVALID_REQUEST, "topic named twice in one request"),
            ));
            continue;
        }
        if let Err(e) = authz::create_topic(ctx, &name) {
            results.push(error_result(result, e));
            continue;
        }
        let assignments: Vec<(i32, Vec<i32>)> =
            t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
        // A manual assignment sets both counts; Kafka wants them left at -1.
        if !assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
            let what = if t.replication_factor != -1 { "replication factor" } else { "numPartitions" };
            let msg = format!("a manual partition assignment was specified, but {what} was not set to -1");
            results.push(error_result(result, KafkaError::new(errors::INVALID_REQUEST, msg)));
            continue;
        }
        // -1 (v4+) asks for the broker defaults.
        let partitions = if t.num_partitions == -1 { ctx.config.default_partitions } else { t.num_partitions };
        let replication = t.replication_factor;
        let mut configs = BTreeMap::new();
        let mut bad = None;
        for c in t.configs {
            match c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    bad = Some(KafkaError::new(errors::INVALID_CONFIG, format!("config '{}' has a null value", c.name)))
                }
            }
        }
        if let Some(e) = bad {
            results.push(error_result(result, e));
            continue;
        }
        match ctx
            .admin
            .create_topic(
                &name,
                partitions,
                replication,
                &assignments,
                configs,
                req.validate_only,
                wait(req.timeout_ms),
            )
            .await
        {
            Ok(created) => {
                let configs = topic_config::describe(&created.configs, &super::configs::broker_defaults(ctx))
                    .into_iter()
                    .map(|d| {
                        CreatableTopicConfigs::default()
                            .with_name(s(d.name))
                            .with_value(Some(s(d.value)))
                            .with_config_source(d.source)
                    })
                    .collect();
                results.push(
                    result
                        .with_topic_id(created.id)
                        .with_num_partitions(created.partitions)
                        .with_replication_factor(created.replication_factor)
                        .with_configs(Some(configs)),
                );
            }
            Err(e) => results.push(error_result(result, e)),
        }
    }
    respond(header, &CreateTopicsResponse::default().with_topics(results))
}

/// How long a request waits for its change to show, from its `timeout_ms`.
fn wait(timeout_ms: i32) -> Duration {
    if timeout_ms > 0 {
        Duration::from_millis(timeout_ms as u64)
    } else {
        crate::cluster::admin::DEFAULT_WAIT
    }
}

fn error_result(r: CreatableTopicResult, e: KafkaError) -> CreatableTopicResult {
    tracing::debug!(topic = %r.name.0, code = e.code, "create topic refused: {}", e.message);
    r.with_error_code(e.code)
        .with_error_message(Some(s(e.message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_topic_config_error_code(0)
}

pub async fn delete(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DeleteTopicsRequest = decode(header, body)?;
    // v6+ names topics by name or id in `topics`; earlier versions in `topic_names`.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match (&name, id.is_nil()) {
            (Some(n), _) => Ok(n.clone()),
            (None, false) => ctx
                .view()
                .topic_by_id(&id)
                .map(|t| t.name.clone())
                .ok_or_else(|| KafkaError::new(errors::UNKNOWN_TOPIC_ID, format!("no topic with id {id}"))),
            (None, true) => Err(KafkaError::new(errors::INVALID_REQUEST, "neither topic name nor id given")),
        };
        let r = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(s(n)))).with_topic_id(id);
        let outcome = match resolved.and_then(|n| authz::topic(ctx, Operation::Delete, &n).map(|()| n)) {
            Ok(n) => ctx.admin.delete_topic(&n, wait(req.timeout_ms)).await.map(|id| (n, id)),
            Err(e) => Err(e),
        };
        responses.push(match outcome {
            Ok((n, id)) => r.with_name(Some(TopicName(s(n)))).with_topic_id(id),
            Err(e) => r.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &DeleteTopicsResponse::default().with_responses(responses))
}

pub async fn create_partitions(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: CreatePartitionsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let assignments: Vec<Vec<i32>> =
            t.assignments.iter().flatten().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect();
        let outcome = if let Err(e) = authz::topic(ctx, Operation::Alter, &t.name.0) {
            Err(e)
        } else {
            ctx.admin.create_partitions(&t.name.0, t.count, &assignments, req.validate_only, wait(req.timeout_ms)).await
        };
        results.push(match outcome {
            Ok(()) => r,
            Err(e) => r.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &CreatePartitionsResponse::default().with_results(results))
}

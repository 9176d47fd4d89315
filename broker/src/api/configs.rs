//! DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).
//! Topic configs are those the engine honours (`topic_config::SUPPORTED`);
//! broker configs are described read-only (they come from the command line).

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::{effective_configs, SOURCE_STATIC_BROKER};
use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::topic_config;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

// Incremental operations (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// DescribeConfigs v3+ config_type codes.
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match name {
        "cleanup.policy" => LIST,
        "segment.bytes"
        | "max.message.bytes"
        | "index.interval.bytes"
        | "num.partitions"
        | "broker.id"
        | "socket.request.max.bytes" => INT,
        "auto.create.topics.enable" => BOOLEAN,
        _ => LONG,
    }
}

pub async fn describe(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: DescribeConfigsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let denied = match r.resource_type {
            RESOURCE_TOPIC => authz::topic(ctx, Operation::DescribeConfigs, &r.resource_name).err(),
            _ => authz::cluster(ctx, Operation::DescribeConfigs).err(),
        };
        let entries: Result<Vec<(String, String, i8, bool)>, KafkaError> = match r.resource_type {
            _ if denied.is_some() => Err(denied.expect("checked")),
            RESOURCE_TOPIC => match ctx.view().topic(&r.resource_name) {
                Some(t) => Ok(effective_configs(&t.topic.record.configs, ctx.admin.topic_defaults())
                    .into_iter()
                    .map(|(n, v, src)| (n, v, src, false))
                    .collect()),
                None => Err(KafkaError::new(
                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic '{}' does not exist", r.resource_name),
                )),
            },
            RESOURCE_BROKER if r.resource_name.is_empty() || *r.resource_name == ctx.config.node_id.to_string() => {
                Ok(broker_configs(ctx))
            }
            RESOURCE_BROKER => Err(KafkaError::new(
                errors::INVALID_REQUEST,
                format!("broker '{}' is not this broker", r.resource_name),
            )),
            other => {
                Err(KafkaError::new(errors::INVALID_REQUEST, format!("config resource type {other} is not supported")))
            }
        };
        let keys: Option<Vec<String>> = r.configuration_keys.map(|k| k.iter().map(|k| k.to_string()).collect());
        results.push(match entries {
            Ok(entries) => result.with_configs(
                entries
                    .into_iter()
                    .filter(|(n, ..)| keys.as_ref().is_none_or(|k| k.contains(n)))
                    .map(|(name, value, source, read_only)| {
                        DescribeConfigsResourceResult::default()
                            .with_config_type(config_type(&name))
                            .with_name(s(name))
                            .with_value(Some(s(value)))
                            .with_config_source(source)
                            .with_read_only(read_only)
                    })
                    .collect(),
            ),
            Err(e) => result.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &DescribeConfigsResponse::default().with_results(results))
}

/// The broker settings a client may want to see; all fixed at start.
fn broker_configs(ctx: &Ctx) -> Vec<(String, String, i8, bool)> {
    let c = &ctx.config;
    let mut v = vec![
        ("broker.id".to_string(), c.node_id.to_string()),
        ("num.partitions".to_string(), c.default_partitions.to_string()),
        ("auto.create.topics.enable".to_string(), c.auto_create_topics.to_string()),
        ("socket.request.max.bytes".to_string(), c.socket_request_max_bytes.to_string()),
    ];
    // Topic defaults appear under their broker names (`log.` prefix), as in Kafka.
    for (name, value) in &c.topic_defaults {
        v.push((format!("log.{name}"), value.clone()));
    }
    v.into_iter().map(|(n, val)| (n, val, SOURCE_STATIC_BROKER, true)).collect()
}

/// Checks the resource is a topic we can alter; returns its name.
fn topic_resource(resource_type: i8, name: &StrBytes) -> Result<String, KafkaError> {
    match resource_type {
        RESOURCE_TOPIC => Ok(name.to_string()),
        RESOURCE_BROKER => Err(KafkaError::new(
            errors::INVALID_REQUEST,
            "broker configs are static in Laminar; set them on the command line",
        )),
        other => {
            Err(KafkaError::new(errors::INVALID_REQUEST, format!("config resource type {other} is not supported")))
        }
    }
}

fn check_supported(name: &str) -> Result<(), KafkaError> {
    if topic_config::is_supported(name) {
        Ok(())
    } else {
        Err(KafkaError::new(errors::INVALID_CONFIG, format!("unknown or unsupported topic config '{name}'")))
    }
}

pub async fn alter(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: AlterConfigsRequest = decode(header, body)?;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match topic_resource(r.resource_type, &r.resource_name)
            .and_then(|n| authz::topic(ctx, Operation::AlterConfigs, &n).map(|()| n))
        {
            Err(e) => Err(e),
            Ok(topic) => {
                // AlterConfigs replaces the whole override set.
                let mut new = BTreeMap::new();
                let mut bad = None;
                for c in &r.configs {
                    match (&c.value, check_supported(&c.name)) {
                        (_, Err(e)) => bad = Some(e),
                        (Some(v), Ok(())) => {
                            new.insert(c.name.to_string(), v.to_string());
                        }
                        (None, Ok(())) => {}
                    }
                }
                match bad {
                    Some(e) => Err(e),
                    None => {
                        ctx.admin
                            .set_topic_configs(
                                &topic,
                                move |configs| {
                                    *configs = new;
                                    Ok(())
                                },
                                req.validate_only,
                            )
                            .await
                    }
                }
            }
        };
        let resp = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &AlterConfigsResponse::default().with_responses(responses))
}

pub async fn incremental_alter(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: IncrementalAlterConfigsRequest = decode(header, body)?;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match topic_resource(r.resource_type, &r.resource_name)
            .and_then(|n| authz::topic(ctx, Operation::AlterConfigs, &n).map(|()| n))
        {
            Err(e) => Err(e),
            Ok(topic) => {
                let ops: Vec<(String, i8, Option<String>)> = r
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                let defaults = ctx.admin.topic_defaults().clone();
                ctx.admin
                    .set_topic_configs(
                        &topic,
                        move |configs| apply_incremental(configs, &ops, &defaults),
                        req.validate_only,
                    )
                    .await
            }
        };
        let resp = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &IncrementalAlterConfigsResponse::default().with_responses(responses))
}

/// KIP-339 semantics: SET, DELETE (back to default), APPEND / SUBTRACT on
/// list-typed configs only.
fn apply_incremental(
    configs: &mut BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
    defaults: &BTreeMap<String, String>,
) -> Result<(), KafkaError> {
    for (name, op, value) in ops {
        check_supported(name)?;
        let is_list = config_type(name) == 7;
        match (*op, value) {
            (OP_SET, Some(v)) => {
                configs.insert(name.clone(), v.clone());
            }
            (OP_SET, None) => {
                return Err(KafkaError::new(errors::INVALID_CONFIG, format!("SET of '{name}' needs a value")));
            }
            (OP_DELETE, _) => {
                configs.remove(name);
            }
            (OP_APPEND | OP_SUBTRACT, _) if !is_list => {
                return Err(KafkaError::new(
                    errors::INVALID_CONFIG,
                    format!("APPEND/SUBTRACT only apply to list configs; '{name}' is not one"),
                ));
            }
            (OP_APPEND | OP_SUBTRACT, v) => {
                let current = configs
                    .get(name)
                    .or_else(|| defaults.get(name))
                    .cloned()
                    .unwrap_or_else(|| topic_config::default_of(name).unwrap_or("").to_string());
                let mut items: Vec<String> =
                    current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                for item in v.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == OP_APPEND && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    } else if *op == OP_SUBTRACT {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
            (other, _) => {
                return Err(KafkaError::new(errors::INVALID_REQUEST, format!("unknown config operation {other}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, op: i8, v: Option<&str>) -> (String, i8, Option<String>) {
        (name.to_string(), op, v.map(String::from))
    }

    #[test]
    fn incremental_ops_follow_kip_339() {
        let mut c = BTreeMap::new();
        let d = BTreeMap::new();
        apply_incremental(&mut c, &[op("retention.ms", OP_SET, Some("1000"))], &d).unwrap();
        assert_eq!(c["retention.ms"], "1000");
        apply_incremental(&mut c, &[op("retention.ms", OP_DELETE, None)], &d).unwrap();
        assert!(c.is_empty());
        apply_incremental(&mut c, &[op("cleanup.policy", OP_APPEND, Some("delete"))], &d).unwrap();
        assert_eq!(c["cleanup.policy"], "delete");
        apply_incremental(&mut c, &[op("cleanup.policy", OP_SUBTRACT, Some("delete"))], &d).unwrap();
        assert_eq!(c["cleanup.policy"], "");
        let e = apply_incremental(&mut c, &[op("retention.ms", OP_APPEND, Some("1"))], &d).unwrap_err();
        assert_eq!(e.code, errors::INVALID_CONFIG);
        let e = apply_incremental(&mut c, &[op("compression.type", OP_SET, Some("lz4"))], &d).unwrap_err();
        assert_eq!(e.code, errors::INVALID_CONFIG);
        let e = apply_incremental(&mut c, &[op("retention.ms", 9, Some("1"))], &d).unwrap_err();
        assert_eq!(e.code, errors::INVALID_REQUEST);
    }

    #[test]
    fn source_codes_are_kafkas() {
        assert_eq!(super::super::create_topics::SOURCE_TOPIC, 1);
        assert_eq!(SOURCE_STATIC_BROKER, 4);
    }
}

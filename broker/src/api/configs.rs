//! DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).
//! Topic configs are Kafka 4.x's (`topic_config_table`), described with
//! Kafka's defaults, sources and synonyms; broker configs are described
//! read-only (they come from the command line).

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::security::acl::Operation;
use crate::security::authz;
use crate::topic_config::{self, Kind};
use crate::topic_config_table::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

// Incremental operations (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One entry of a DescribeConfigs answer.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: Kind,
    synonyms: Vec<(String, String, i8)>,
    documentation: Option<String>,
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
        let entries: Result<Vec<Entry>, KafkaError> = match r.resource_type {
            _ if denied.is_some() => Err(denied.expect("checked")),
            RESOURCE_TOPIC => match ctx.view().topic(&r.resource_name) {
                Some(t) => Ok(topic_config::describe(&t.topic.record.configs, &broker_defaults(ctx))
                    .into_iter()
                    .map(|d| Entry {
                        name: d.name.to_string(),
                        value: d.value,
                        source: d.source,
                        read_only: false,
                        kind: d.kind,
                        synonyms: d.synonyms,
                        documentation: d.note,
                    })
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
        // Null or empty: every config (as Kafka).
        let keys: Option<Vec<String>> =
            r.configuration_keys.filter(|k| !k.is_empty()).map(|k| k.iter().map(|k| k.to_string()).collect());
        results.push(match entries {
            Ok(entries) => result.with_configs(
                entries
                    .into_iter()
                    .filter(|e| keys.as_ref().is_none_or(|k| k.contains(&e.name)))
                    .map(|e| answer(e, req.include_synonyms, req.include_documentation))
                    .collect(),
            ),
            Err(e) => result.with_error_code(e.code).with_error_message(Some(s(e.message))),
        });
    }
    respond(header, &DescribeConfigsResponse::default().with_results(results))
}

fn answer(e: Entry, include_synonyms: bool, include_documentation: bool) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        e.synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default().with_name(s(name)).with_value(Some(s(value))).with_source(source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_config_type(e.kind as i8)
        .with_name(s(e.name))
        .with_value(Some(s(e.value)))
        .with_config_source(e.source)
        .with_read_only(e.read_only)
        .with_synonyms(synonyms)
        .with_documentation(e.documentation.filter(|_| include_documentation).map(s))
}

/// The topics' defaults this broker was started with, by topic config name:
/// `--topic-default`s and `--unclean-leader-election` (the broker's
/// `unclean.leader.election.enable`), shown as STATIC_BROKER_CONFIG.
pub(super) fn broker_defaults(ctx: &Ctx) -> BTreeMap<String, String> {
    let mut defaults = ctx.admin.topic_defaults().clone();
    if ctx.cluster.config.unclean_leader_election {
        defaults.insert("unclean.leader.election.enable".into(), "true".into());
    }
    defaults
}

/// The broker settings a client may want to see; all fixed at start.
fn broker_configs(ctx: &Ctx) -> Vec<Entry> {
    let c = &ctx.config;
    let fixed = |name: &str, value: String, kind: Kind| Entry {
        name: name.to_string(),
        value: value.clone(),
        source: SOURCE_STATIC_BROKER,
        read_only: true,
        kind,
        synonyms: vec![(name.to_string(), value, SOURCE_STATIC_BROKER)],
        documentation: None,
    };
    let mut v = vec![
        fixed("broker.id", c.node_id.to_string(), Kind::Int),
        fixed("num.partitions", c.default_partitions.to_string(), Kind::Int),
        fixed("auto.create.topics.enable", c.auto_create_topics.to_string(), Kind::Boolean),
        fixed("socket.request.max.bytes", c.socket_request_max_bytes.to_string(), Kind::Int),
    ];
    // Topic defaults appear under their broker names (`message.max.bytes`,
    // `log.retention.ms`, ...), as in Kafka: the command line's, else Kafka's.
    for d in topic_config::describe(&BTreeMap::new(), &broker_defaults(ctx)) {
        let Some((broker, _)) = topic_config::def(d.name).and_then(|t| t.broker) else { continue };
        let Some((_, value, source)) = d.synonyms.first().cloned() else { continue };
        let source = if source == SOURCE_DEFAULT { SOURCE_DEFAULT } else { SOURCE_STATIC_BROKER };
        v.push(Entry {
            name: broker.to_string(),
            value,
            source,
            read_only: true,
            kind: d.kind,
            synonyms: d.synonyms,
            documentation: None,
        });
    }
    v
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

/// A name AlterConfigs may touch: one of Kafka's topic configs (its value is
/// checked with the whole set, `topic_config::log_config`).
fn check_supported(name: &str) -> Result<(), KafkaError> {
    match topic_config::def(name) {
        Some(_) => Ok(()),
        None => {
            Err(KafkaError::new(errors::INVALID_CONFIG, topic_config::check(name, "").expect_err("not a topic config")))
        }
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
        let is_list = topic_config::def(name).is_some_and(|d| d.kind == Kind::List);
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
                    .unwrap_or_else(|| topic_config::def(name).map_or("", |d| d.default).to_string());
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
        let e = apply_incremental(&mut c, &[op("no.such.config", OP_SET, Some("lz4"))], &d).unwrap_err();
        assert_eq!(e.code, errors::INVALID_CONFIG);
        let e = apply_incremental(&mut c, &[op("retention.ms", 9, Some("1"))], &d).unwrap_err();
        assert_eq!(e.code, errors::INVALID_REQUEST);
    }

    #[test]
    fn source_codes_are_kafkas() {
        assert_eq!(crate::topic_config_table::SOURCE_TOPIC, 1);
        assert_eq!((SOURCE_STATIC_BROKER, SOURCE_DEFAULT), (4, 5));
    }
}

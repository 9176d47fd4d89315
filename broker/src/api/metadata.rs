//! Metadata (3): brokers, controller, topics and partition leaders. Unknown
//! topics are auto-created when both the request and `auto.create.topics.enable`
//! allow it.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName};

use super::{decode, respond, s, HandlerResult};
use crate::catalog::{self, TopicMeta};
use crate::context::Ctx;
use crate::errors;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: MetadataRequest = decode(header, body)?;
    let version = header.request_api_version;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(ref t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    // Auto-create only since v4 lets the client say whether it wants that.
    let allow_create = ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match wanted {
        None => {
            let cat = ctx.catalog.load();
            for name in cat.names() {
                topics.push(topic_entry(ctx, &name, Ok(cat.get(&name).unwrap())));
            }
        }
        Some(names) => {
            for name in names {
                let existing = ctx.catalog.load().get(&name).cloned();
                let entry = match existing {
                    Some(meta) => topic_entry(ctx, &name, Ok(&meta)),
                    None if allow_create => {
                        let created = ctx
                            .controller
                            .create_topic(&name, ctx.config.default_partitions, 1, Default::default(), false)
                            .await;
                        match created {
                            Ok(meta) => topic_entry(ctx, &name, Ok(&meta)),
                            // Lost a race with another creator: it exists now.
                            Err(e) if e.code == errors::TOPIC_ALREADY_EXISTS => match ctx.catalog.load().get(&name) {
                                Some(meta) => topic_entry(ctx, &name, Ok(meta)),
                                None => topic_entry(ctx, &name, Err(errors::UNKNOWN_TOPIC_OR_PARTITION)),
                            },
                            Err(e) if e.code == errors::INVALID_TOPIC_EXCEPTION => {
                                topic_entry(ctx, &name, Err(errors::INVALID_TOPIC_EXCEPTION))
                            }
                            Err(e) => {
                                tracing::warn!(topic = %name, "auto-create failed: {}", e.message);
                                topic_entry(ctx, &name, Err(e.code))
                            }
                        }
                    }
                    // As Kafka: a name that can never exist is an invalid topic, not a missing one.
                    None => {
                        let code = match catalog::validate_topic_name(&name) {
                            Ok(()) => errors::UNKNOWN_TOPIC_OR_PARTITION,
                            Err(_) => errors::INVALID_TOPIC_EXCEPTION,
                        };
                        topic_entry(ctx, &name, Err(code))
                    }
                };
                topics.push(entry);
            }
        }
    }
    let cfg = &ctx.config;
    let resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(cfg.node_id))
            .with_host(s(cfg.advertised_host.clone()))
            .with_port(cfg.advertised_port as i32)])
        .with_cluster_id(Some(s(cfg.cluster_id.clone())))
        .with_controller_id(BrokerId(cfg.node_id))
        .with_topics(topics);
    respond(header, &resp)
}

fn topic_entry(ctx: &Ctx, name: &str, meta: Result<&std::sync::Arc<TopicMeta>, i16>) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(TopicName(s(name))));
    let meta = match meta {
        Ok(m) => m,
        Err(code) => return t.with_error_code(code),
    };
    let me = BrokerId(ctx.config.node_id);
    let partitions = (0..meta.record.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(me)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![me])
                .with_isr_nodes(vec![me])
        })
        .collect();
    t.with_topic_id(meta.record.id).with_partitions(partitions)
}

//! Metadata (3): live brokers, the controller, topics and, per partition, its
//! leader, leader epoch, replicas, ISR and offline replicas, all from the
//! cluster view. Unknown topics are auto-created when both the request and
//! `auto.create.topics.enable` allow it.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName};
use laminar_coord::cluster::{ClusterView, TopicView};

use super::{authorized_ops, decode, respond, s, HandlerResult};
use crate::cluster::admin::DEFAULT_WAIT;
use crate::context::Ctx;
use crate::errors;
use crate::security::acl::Operation;
use crate::security::{authz, Session};

pub async fn handle(ctx: &Rc<Ctx>, session: &Session, header: &RequestHeader, body: Bytes) -> HandlerResult {
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
            let view = ctx.view();
            // Topics the principal may not describe are left out.
            for name in view.topic_names().into_iter().filter(|n| authz::topic(ctx, Operation::Describe, n).is_ok()) {
                topics.push(topic_entry(&view, &name, Ok(view.topic(&name).expect("listed"))));
            }
        }
        Some(names) => {
            for name in names {
                let existing = ctx.view().topic(&name).cloned();
                let describable = authz::topic(ctx, Operation::Describe, &name).is_ok();
                let entry = match existing {
                    _ if !describable => topic_entry(&ctx.view(), &name, Err(authz::TOPIC_AUTHORIZATION_FAILED)),
                    Some(t) => topic_entry(&ctx.view(), &name, Ok(&t)),
                    None if allow_create && authz::create_topic(ctx, &name).is_ok() => auto_create(ctx, &name).await,
                    None if crate::topic_name::validate(&name).is_err() => {
                        topic_entry(&ctx.view(), &name, Err(errors::INVALID_TOPIC_EXCEPTION))
                    }
                    None => topic_entry(&ctx.view(), &name, Err(errors::UNKNOWN_TOPIC_OR_PARTITION)),
                };
                topics.push(entry);
            }
        }
    }
    let view = ctx.view();
    // Each broker's address on the listener this client came in on (Kafka
    // leaves out brokers without it).
    let brokers = view
        .brokers
        .values()
        .filter_map(|b| {
            let (host, port) = b.record.endpoint(&session.listener.name)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.record.node_id))
                    .with_host(s(host))
                    .with_port(port as i32)
                    .with_rack(b.record.rack.clone().map(s)),
            )
        })
        .collect();
    // Asked for (v8+): what a Kafka broker without an authorizer answers.
    // The cluster's field exists in v8–v10 only (DescribeCluster replaced it).
    let topic_ops = authorized_ops::topic(version >= 8 && req.include_topic_authorized_operations);
    for t in topics.iter_mut() {
        t.topic_authorized_operations = topic_ops;
    }
    let cluster_ops = authorized_ops::cluster((8..=10).contains(&version) && req.include_cluster_authorized_operations);
    let resp = MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_ops)
        .with_brokers(brokers)
        .with_cluster_id(Some(s(ctx.config.cluster_id.clone())))
        .with_controller_id(BrokerId(view.controller_id().unwrap_or(-1)))
        .with_topics(topics);
    respond(header, &resp)
}

async fn auto_create(ctx: &Ctx, name: &str) -> MetadataResponseTopic {
    let created = ctx
        .admin
        .create_topic(
            name,
            ctx.config.default_partitions,
            ctx.config.default_replication_factor,
            &[],
            Default::default(),
            false,
            DEFAULT_WAIT,
        )
        .await;
    let view = ctx.view();
    match created {
        Ok(_) => match view.topic(name) {
            Some(t) => topic_entry(&view, name, Ok(t)),
            None => topic_entry(&view, name, Err(errors::LEADER_NOT_AVAILABLE)),
        },
        // Lost a race with another creator: it exists now.
        Err(e) if e.code == errors::TOPIC_ALREADY_EXISTS => match view.topic(name) {
            Some(t) => topic_entry(&view, name, Ok(t)),
            None => topic_entry(&view, name, Err(errors::LEADER_NOT_AVAILABLE)),
        },
        Err(e) if e.code == errors::INVALID_TOPIC_EXCEPTION => topic_entry(&view, name, Err(e.code)),
        Err(e) => {
            tracing::warn!(topic = %name, "auto-create failed: {}", e.message);
            // Retriable for clients: the next Metadata request tries again.
            let code = if e.code == errors::REQUEST_TIMED_OUT { errors::LEADER_NOT_AVAILABLE } else { e.code };
            topic_entry(&view, name, Err(code))
        }
    }
}

fn topic_entry(view: &ClusterView, name: &str, topic: Result<&Arc<TopicView>, i16>) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(TopicName(s(name))));
    let topic = match topic {
        Ok(t) => t,
        Err(code) => return t.with_error_code(code),
    };
    let partitions = (0..topic.partition_count())
        .map(|p| {
            let entry = MetadataResponsePartition::default().with_partition_index(p);
            let Some(stored) = topic.partition(p) else {
                return entry.with_error_code(errors::LEADER_NOT_AVAILABLE).with_leader_id(BrokerId(-1));
            };
            let r = &stored.record;
            let offline: Vec<BrokerId> =
                r.replicas.iter().filter(|n| view.broker(**n).is_none()).map(|n| BrokerId(*n)).collect();
            let code = if r.has_leader() { errors::NONE } else { errors::LEADER_NOT_AVAILABLE };
            entry
                .with_error_code(code)
                .with_leader_id(BrokerId(r.leader))
                .with_leader_epoch(r.leader_epoch)
                .with_replica_nodes(r.replicas.iter().map(|n| BrokerId(*n)).collect())
                .with_isr_nodes(r.isr.iter().map(|m| BrokerId(m.node)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    t.with_topic_id(topic.id()).with_partitions(partitions)
}

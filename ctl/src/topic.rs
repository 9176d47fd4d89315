//! `topic create|list|describe|delete|alter-config|add-partitions`, through
//! the Kafka admin API against any broker (the broker validates and writes
//! the records). `describe` asks every broker for its replicas' sizes on
//! disk (DescribeLogDirs) and adds what etcd knows (shards, partition
//! epoch) when `--etcd` is given.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    CreatePartitionsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use laminar_client::{NewTopic, OffsetSpec, TopicMetadata};
use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::{self, CtlError, Exit, Result};
use crate::kafka::{unknown_topic, Kafka};
use crate::output::{ids, opt, Report, Table};

/// Kafka's config resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs' source of a per-topic override.
const SOURCE_TOPIC_OVERRIDE: i8 = 1;
/// How long the broker may take to make a topic change visible.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The topic's name.
    pub topic: String,
    /// Partition count (the broker's num.partitions when not given).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub partitions: i32,
    /// Replicas per partition (the broker's default.replication.factor when not given).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// A topic config, `name=value`; repeat for several.
    #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub configs: Vec<(String, String)>,
    /// Succeed if the topic exists already.
    #[arg(long)]
    pub if_not_exists: bool,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("change").args(["set", "delete"]).multiple(true).required(true)))]
pub struct AlterConfigArgs {
    /// The topic.
    pub topic: String,
    /// Sets a config, `name=value`; repeat for several.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,
    /// Removes an override (back to the broker's default); repeat for several.
    #[arg(long, value_name = "NAME")]
    pub delete: Vec<String>,
}

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

pub async fn create(ctx: &Ctx, a: CreateArgs) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let topic = NewTopic {
        name: a.topic.clone(),
        partitions: a.partitions,
        replication_factor: a.replication_factor,
        configs: a.configs.clone(),
    };
    let results = kafka.any().await?.create_topics(&[topic], ADMIN_TIMEOUT_MS).await.map_err(|e| kafka.err(e))?;
    let r = results.first().ok_or_else(|| CtlError::failed("the broker answered CreateTopics without a result"))?;
    let existed = r.error_code == TOPIC_ALREADY_EXISTS;
    if r.error_code != 0 && !(existed && a.if_not_exists) {
        return Err(CtlError::new(
            error::exit_for_code(r.error_code),
            format!("cannot create topic {}: {}", a.topic, error::code_text(r.error_code, r.error_message.as_deref())),
        ));
    }
    let t = kafka.topic(&a.topic).await?;
    let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
    #[derive(Serialize)]
    struct Created<'a> {
        topic: &'a str,
        created: bool,
        partitions: usize,
        replication_factor: usize,
    }
    let mut rep = Report::new(Created {
        topic: &a.topic,
        created: !existed,
        partitions: t.partitions.len(),
        replication_factor: rf,
    });
    if existed {
        rep.line(format!(
            "topic {} exists already ({} partitions, replication factor {rf})",
            a.topic,
            t.partitions.len()
        ));
    } else {
        rep.line(format!("created topic {} ({} partitions, replication factor {rf})", a.topic, t.partitions.len()));
    }
    Ok(rep)
}

#[derive(Serialize)]
struct Listed {
    topic: String,
    partitions: usize,
    replication_factor: usize,
}

pub async fn list(ctx: &Ctx) -> Result<Report> {
    let md = ctx.kafka().await?.metadata(None).await?;
    let mut rows: Vec<Listed> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| Listed {
            topic: t.name.clone(),
            partitions: t.partitions.len(),
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len()),
        })
        .collect();
    rows.sort_by(|a, b| a.topic.cmp(&b.topic));
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "RF"]);
    for l in &rows {
        table.row(vec![l.topic.clone(), l.partitions.to_string(), l.replication_factor.to_string()]);
    }
    let mut r = Report::new(&rows);
    r.table(table);
    Ok(r)
}

#[derive(Debug, Serialize)]
pub struct TopicDescription {
    pub topic: String,
    pub topic_id: Option<String>,
    pub partitions: usize,
    pub replication_factor: usize,
    /// Per-topic overrides (the rest are the broker's defaults).
    pub configs: BTreeMap<String, String>,
    pub partition_details: Vec<PartitionDescription>,
}

#[derive(Debug, Serialize)]
pub struct PartitionDescription {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: Option<i32>,
    pub replicas: Vec<i32>,
    /// The shard (core) of each replica, parallel to `replicas` (etcd only).
    pub shards: Option<Vec<u16>>,
    pub isr: Vec<i32>,
    pub log_start_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// The leader's replica's size on disk (DescribeLogDirs).
    pub size_bytes: Option<u64>,
    /// Every replica's size on disk, by broker (those that answered).
    pub replica_sizes: BTreeMap<i32, u64>,
    /// Why an offset is missing (the leader's error), if one is.
    pub error: Option<String>,
}

pub async fn describe(ctx: &Ctx, names: &[String]) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let view = match ctx.store_if_given("topic describe").await? {
        Some(store) => Some(store.view().await?),
        None => None,
    };
    let md = if names.is_empty() {
        kafka.metadata(None).await?
    } else {
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        kafka.metadata(Some(&refs)).await?
    };
    let mut wanted: Vec<&TopicMetadata> = Vec::new();
    if names.is_empty() {
        wanted.extend(md.topics.iter().filter(|t| t.error_code == 0));
        wanted.sort_by(|a, b| a.name.cmp(&b.name));
    } else {
        for n in names {
            match md.topic(n) {
                Some(t) if t.error_code == 0 => wanted.push(t),
                _ => return Err(unknown_topic(n, &kafka.bootstrap)),
            }
        }
    }
    let configs = describe_configs(kafka, &wanted.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()).await?;
    // Sizes on disk: every broker answers for the replicas it holds. One
    // that does not answer leaves its replicas' sizes unknown ("-").
    let mut sizes: BTreeMap<i32, BTreeMap<(String, i32), u64>> = BTreeMap::new();
    let mut size_failures = Vec::new();
    for b in &md.brokers {
        match kafka.log_sizes(b.node_id).await {
            Ok(s) => {
                sizes.insert(b.node_id, s);
            }
            Err(e) => size_failures.push(format!("broker {}: {}", b.node_id, e.message)),
        }
    }
    let mut out = Vec::new();
    for t in wanted {
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
        let starts = kafka.list_offsets(t, &parts, OffsetSpec::Earliest).await?;
        let ends = kafka.list_offsets(t, &parts, OffsetSpec::Latest).await?;
        let tv = view.as_ref().and_then(|v| v.topic(&t.name));
        let mut details = Vec::new();
        for p in &t.partitions {
            let rec = tv.and_then(|tv| tv.partition(p.partition)).map(|s| &s.record);
            let start = starts.get(&p.partition).cloned().unwrap_or(Err(3));
            let end = ends.get(&p.partition).cloned().unwrap_or(Err(3));
            let error = [&start, &end].iter().find_map(|r| r.as_ref().err()).map(|&c| error::code_text(c, None));
            let key = (t.name.clone(), p.partition);
            let replica_sizes: BTreeMap<i32, u64> =
                sizes.iter().filter_map(|(&node, s)| s.get(&key).map(|&bytes| (node, bytes))).collect();
            let leader = rec.map_or(p.leader, |r| r.leader);
            details.push(PartitionDescription {
                partition: p.partition,
                // etcd is the source of truth when it is there; Metadata
                // may lag it by the broker's watch delay.
                leader,
                leader_epoch: rec.map_or(p.leader_epoch, |r| r.leader_epoch),
                partition_epoch: rec.map(|r| r.partition_epoch),
                replicas: rec.map_or_else(|| p.replicas.clone(), |r| r.replicas.clone()),
                shards: rec.map(|r| r.shards.clone()),
                isr: rec.map_or_else(|| p.isr.clone(), |r| r.isr_nodes()),
                log_start_offset: start.ok(),
                high_watermark: end.ok(),
                size_bytes: replica_sizes.get(&leader).copied(),
                replica_sizes,
                error,
            });
        }
        out.push(TopicDescription {
            topic: t.name.clone(),
            topic_id: tv.map(|tv| tv.id().to_string()),
            partitions: t.partitions.len(),
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len()),
            configs: configs.get(&t.name).cloned().unwrap_or_default(),
            partition_details: details,
        });
    }
    let mut r = render_descriptions(&out);
    for f in size_failures {
        r.line(format!("(sizes unknown from {f})"));
    }
    Ok(r)
}

pub fn render_descriptions(out: &[TopicDescription]) -> Report {
    let mut r = Report::new(out);
    for (i, t) in out.iter().enumerate() {
        if i > 0 {
            r.line("");
        }
        let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        r.line(format!(
            "topic {}  partitions {}  replication factor {}{}  configs {}",
            t.topic,
            t.partitions,
            t.replication_factor,
            t.topic_id.as_ref().map(|id| format!("  id {id}")).unwrap_or_default(),
            if configs.is_empty() { "(defaults)".to_string() } else { configs.join(",") }
        ));
        let with_shards = t.partition_details.iter().any(|p| p.shards.is_some());
        let mut headers = vec![
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOG-START",
            "HIGH-WATERMARK",
            "SIZE-BYTES",
            "ERROR",
        ];
        if with_shards {
            headers.insert(5, "SHARDS");
            headers.insert(3, "PART-EPOCH");
        }
        let mut table = Table::new(&headers);
        for p in &t.partition_details {
            let mut row = vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                opt(p.log_start_offset),
                opt(p.high_watermark),
                opt(p.size_bytes),
                opt(p.error.clone()),
            ];
            if with_shards {
                let shards = p.shards.as_ref().map_or("-".to_string(), |s| {
                    p.replicas.iter().zip(s).map(|(n, s)| format!("{n}:{s}")).collect::<Vec<_>>().join(",")
                });
                row.insert(5, shards);
                row.insert(3, opt(p.partition_epoch));
            }
            table.row(row);
        }
        r.table(table);
    }
    r
}

/// Per-topic config overrides of `topics`.
async fn describe_configs(kafka: &Kafka, topics: &[&str]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let req = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(t.to_string()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let conn = kafka.any().await?;
    let (resp, _) = kafka.call(&conn, &req, 1..=4).await?;
    for r in resp.results {
        if r.error_code != 0 {
            continue;
        }
        let overrides = r
            .configs
            .iter()
            .filter(|c| c.config_source == SOURCE_TOPIC_OVERRIDE)
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
            .collect();
        out.insert(r.resource_name.to_string(), overrides);
    }
    Ok(out)
}

pub async fn delete(ctx: &Ctx, topics: &[String]) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let names: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    let results = kafka.any().await?.delete_topics(&names, ADMIN_TIMEOUT_MS).await.map_err(|e| kafka.err(e))?;
    let mut rep = Report::new(serde_json::json!({ "deleted": topics }));
    let mut failure: Option<CtlError> = None;
    for t in topics {
        let res = results.iter().find(|r| &r.name == t);
        match res.map(|r| (r.error_code, r.error_message.clone())) {
            Some((0, _)) => {
                rep.line(format!("deleted topic {t}"));
            }
            Some((3, _)) => failure = Some(unknown_topic(t, &kafka.bootstrap)),
            Some((code, msg)) => {
                failure = Some(CtlError::new(
                    error::exit_for_code(code),
                    format!("cannot delete topic {t}: {}", error::code_text(code, msg.as_deref())),
                ))
            }
            None => failure = Some(CtlError::failed(format!("the broker did not answer for topic {t}"))),
        }
    }
    match failure {
        Some(e) if topics.len() == 1 => Err(e),
        Some(e) => Ok(rep.fail(e)),
        None => Ok(rep),
    }
}

pub async fn alter_config(ctx: &Ctx, a: AlterConfigArgs) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    // Fail on an unknown topic before asking for a change.
    kafka.topic(&a.topic).await?;
    let mut configs: Vec<AlterableConfig> = a
        .set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(0) // SET
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(a.delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(1) // DELETE
            .with_value(None)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(StrBytes::from_string(a.topic.clone()))
        .with_configs(configs)]);
    let conn = kafka.any().await?;
    let (resp, _) = kafka.call(&conn, &req, 0..=1).await?;
    for r in &resp.responses {
        if r.error_code != 0 {
            return Err(CtlError::new(
                error::exit_for_code(r.error_code),
                format!(
                    "cannot change the configs of topic {}: {}",
                    a.topic,
                    error::code_text(r.error_code, r.error_message.as_deref())
                ),
            ));
        }
    }
    let now = describe_configs(kafka, &[&a.topic]).await?.remove(&a.topic).unwrap_or_default();
    let mut rep = Report::new(serde_json::json!({ "topic": a.topic, "configs": now }));
    let shown: Vec<String> = now.iter().map(|(k, v)| format!("{k}={v}")).collect();
    rep.line(format!(
        "topic {} configs now: {}",
        a.topic,
        if shown.is_empty() { "(defaults)".to_string() } else { shown.join(",") }
    ));
    Ok(rep)
}

pub async fn add_partitions(ctx: &Ctx, topic: &str, total: i32) -> Result<Report> {
    let kafka = ctx.kafka().await?;
    let before = kafka.topic(topic).await?.partitions.len();
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_count(total)
            .with_assignments(None)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let conn = kafka.any().await?;
    let (resp, _) = kafka.call(&conn, &req, 0..=3).await?;
    for r in &resp.results {
        if r.error_code != 0 {
            let exit = if r.error_code == 37 { Exit::Usage } else { error::exit_for_code(r.error_code) };
            return Err(CtlError::new(
                exit,
                format!(
                    "cannot raise {topic} from {before} to {total} partitions: {}",
                    error::code_text(r.error_code, r.error_message.as_deref())
                ),
            ));
        }
    }
    let mut rep = Report::new(serde_json::json!({ "topic": topic, "partitions_before": before, "partitions": total }));
    rep.line(format!("topic {topic} now has {total} partitions (had {before})"));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_value_pairs() {
        assert_eq!(parse_kv("retention.ms=1000"), Ok(("retention.ms".into(), "1000".into())));
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn describe_table_shows_shards_when_etcd_knows_them() {
        let d = TopicDescription {
            topic: "orders".into(),
            topic_id: None,
            partitions: 1,
            replication_factor: 2,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            partition_details: vec![PartitionDescription {
                partition: 0,
                leader: 2,
                leader_epoch: 4,
                partition_epoch: Some(7),
                replicas: vec![2, 1],
                shards: Some(vec![1, 0]),
                isr: vec![2, 1],
                log_start_offset: Some(0),
                high_watermark: Some(42),
                size_bytes: Some(4096),
                replica_sizes: [(2, 4096), (1, 4000)].into(),
                error: None,
            }],
        };
        let text = render_descriptions(&[d]).render(crate::output::Format::Table);
        assert!(
            text.starts_with("topic orders  partitions 1  replication factor 2  configs retention.ms=1000\n"),
            "{text}"
        );
        assert!(text.contains("PARTITION  LEADER  EPOCH  PART-EPOCH  REPLICAS  ISR  SHARDS"), "{text}");
        assert!(text.contains("2,1       2,1  2:1,1:0"), "{text}");
        assert!(text.contains("SIZE-BYTES"), "{text}");
        assert!(text.contains("42        4096"), "{text}");
    }
}

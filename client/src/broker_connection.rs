//! A negotiated connection to one broker and the calls the client makes on it.
//!
//! Each call builds its request at the version negotiated for it and turns the response into
//! plain result types. Per-partition and per-topic error codes are data, not `Err`.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig, PendingResponse};
use crate::error::{Error, Result};
use crate::metadata::ClusterMetadata;
use crate::negotiate::{negotiate, ApiVersionTable};

/// Produce acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// No response at all: the broker stays silent.
    None,
    /// The leader has appended the batch.
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" | "none" => Ok(Acks::None),
            "1" | "leader" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1 or all, not '{s}'")),
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

/// One partition's outcome of a Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    /// Offset given to the batch's first record; -1 on error or with acks=0.
    pub base_offset: i64,
    /// Set when the topic uses LogAppendTime, otherwise -1.
    pub log_append_time_ms: i64,
    pub error_message: Option<String>,
}

/// One batch (or several, concatenated) destined for a partition.
#[derive(Debug, Clone)]
pub struct ProduceBatch {
    pub topic: String,
    pub partition: i32,
    pub records: Bytes,
}

/// A Produce request on the wire; await it for the per-partition results.
pub struct PendingProduce {
    inner: Option<PendingResponse<ProduceResponse>>,
    /// (topic, partition) in request order, for the acks=0 answer and for lookups.
    targets: Vec<(String, i32)>,
}

impl PendingProduce {
    pub async fn recv(self) -> Result<Vec<ProduceResult>> {
        match self.inner {
            None => Ok(unacknowledged(&self.targets)),
            Some(pending) => Ok(produce_results(pending.recv().await?)),
        }
    }

    /// The results if they have arrived, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Vec<ProduceResult>>> {
        match &mut self.inner {
            None => Ok(Some(unacknowledged(&self.targets))),
            Some(pending) => Ok(pending.try_recv()?.map(produce_results)),
        }
    }
}

fn unacknowledged(targets: &[(String, i32)]) -> Vec<ProduceResult> {
    targets
        .iter()
        .map(|(topic, partition)| ProduceResult {
            topic: topic.clone(),
            partition: *partition,
            error_code: 0,
            base_offset: -1,
            log_append_time_ms: -1,
            error_message: None,
        })
        .collect()
}

fn produce_results(response: ProduceResponse) -> Vec<ProduceResult> {
    let mut out = Vec::new();
    for topic in response.responses {
        for p in topic.partition_responses {
            out.push(ProduceResult {
                topic: topic.name.0.to_string(),
                partition: p.index,
                error_code: p.error_code,
                base_offset: p.base_offset,
                log_append_time_ms: p.log_append_time_ms,
                error_message: p.error_message.map(|m| m.to_string()),
            });
        }
    }
    out
}

/// What to fetch from one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Per-partition byte budget (Kafka's max.partition.fetch.bytes, 1 MiB by default).
    pub max_bytes: i32,
}

/// Server-side wait and size bounds of a Fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    /// Whole-response byte budget (Kafka's fetch.max.bytes, 50 MiB by default).
    pub max_bytes: i32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self { max_wait_ms: 500, min_bytes: 1, max_bytes: 50 * 1024 * 1024 }
    }
}

/// One partition's answer to a Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Raw record batches; read them with [`crate::BatchReader`]. The last may be partial.
    pub records: Bytes,
}

/// Which offset ListOffsets should look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire_value(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    /// -1 when no record matches a timestamp query.
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1 lets the broker choose (CreateTopics v4+).
    pub partitions: i32,
    /// -1 lets the broker choose (CreateTopics v4+).
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// One topic's outcome of CreateTopics or DeleteTopics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// A connection whose API versions have been negotiated.
pub struct BrokerConnection {
    conn: Connection,
    versions: ApiVersionTable,
    produce_version: i16,
    fetch_version: i16,
}

impl BrokerConnection {
    /// Connects to `addr` and negotiates versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Self> {
        let conn = Connection::connect(addr, config).await?;
        let versions = negotiate(&conn).await?;
        // Produce and Fetch are checked up front: a broker without them is no use to a client.
        let produce_version = versions.pick(ApiKey::Produce)?;
        let fetch_version = versions.pick(ApiKey::Fetch)?;
        Ok(Self { conn, versions, produce_version, fetch_version })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Metadata for `topics`, or for every topic when `None`. With `allow_auto_create` a broker
    /// configured to do so creates missing topics.
    pub async fn metadata(&self, topics: Option<&[&str]>, allow_auto_create: bool) -> Result<ClusterMetadata> {
        let version = self.versions.pick(ApiKey::Metadata)?;
        let topics = topics.map(|names| {
            names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect()
        });
        let request = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(allow_auto_create && version >= 4);
        let response = self.conn.call(&request, version).await?;
        Ok(ClusterMetadata::from_response(response))
    }

    pub async fn create_topics(&self, topics: &[NewTopic], timeout_ms: i32) -> Result<Vec<TopicResult>> {
        let version = self.versions.pick(ApiKey::CreateTopics)?;
        let topics = topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(topic_name(&t.name))
                    .with_num_partitions(t.partitions)
                    .with_replication_factor(t.replication_factor)
                    .with_configs(
                        t.configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    )
            })
            .collect();
        let request = CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(timeout_ms);
        let response = self.conn.call(&request, version).await?;
        Ok(response
            .topics
            .into_iter()
            .map(|t| TopicResult {
                name: t.name.0.to_string(),
                error_code: t.error_code,
                error_message: t.error_message.map(|m| m.to_string()),
            })
            .collect())
    }

    pub async fn delete_topics(&self, names: &[&str], timeout_ms: i32) -> Result<Vec<TopicResult>> {
        let version = self.versions.pick(ApiKey::DeleteTopics)?;
        let request = DeleteTopicsRequest::default()
            .with_topic_names(names.iter().map(|n| topic_name(n)).collect())
            .with_timeout_ms(timeout_ms);
        let response = self.conn.call(&request, version).await?;
        Ok(response
            .responses
            .into_iter()
            .map(|t| TopicResult {
                name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                error_code: t.error_code,
                error_message: t.error_message.map(|m| m.to_string()),
            })
            .collect())
    }

    /// Produces one batch to one partition and waits for the outcome.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: Acks,
        timeout_ms: i32,
    ) -> Result<ProduceResult> {
        let batch = ProduceBatch { topic: topic.to_string(), partition, records };
        let results = self.submit_produce(std::slice::from_ref(&batch), acks, timeout_ms).await?.recv().await?;
        results
            .into_iter()
            .find(|r| r.partition == partition && r.topic == topic)
            .ok_or_else(|| Error::Malformed(format!("Produce response lacks {topic}/{partition}")))
    }

    /// Sends one Produce request carrying `batches` (any topics and partitions led by this
    /// broker) and returns without waiting, so that several can be in flight at once.
    pub async fn submit_produce(
        &self,
        batches: &[ProduceBatch],
        acks: Acks,
        timeout_ms: i32,
    ) -> Result<PendingProduce> {
        let mut topic_data: Vec<TopicProduceData> = Vec::new();
        for batch in batches {
            let data =
                PartitionProduceData::default().with_index(batch.partition).with_records(Some(batch.records.clone()));
            match topic_data.iter_mut().find(|t| t.name.0.as_str() == batch.topic) {
                Some(t) => t.partition_data.push(data),
                None => topic_data.push(
                    TopicProduceData::default().with_name(topic_name(&batch.topic)).with_partition_data(vec![data]),
                ),
            }
        }
        let request = ProduceRequest::default()
            .with_acks(acks.wire_value())
            .with_timeout_ms(timeout_ms)
            .with_topic_data(topic_data);
        let targets = batches.iter().map(|b| (b.topic.clone(), b.partition)).collect();
        if acks == Acks::None {
            self.conn.send_oneway(&request, self.produce_version).await?;
            return Ok(PendingProduce { inner: None, targets });
        }
        let pending = self.conn.submit(&request, self.produce_version).await?;
        Ok(PendingProduce { inner: Some(pending), targets })
    }

    /// Fetches from one partition.
    pub async fn fetch(&self, target: FetchTarget, options: FetchOptions) -> Result<FetchResult> {
        let (topic, partition) = (target.topic.clone(), target.partition);
        self.fetch_many(&[target], options)
            .await?
            .into_iter()
            .find(|r| r.partition == partition && r.topic == topic)
            .ok_or_else(|| Error::Malformed(format!("Fetch response lacks {topic}/{partition}")))
    }

    /// Fetches from several partitions led by this broker in one sessionless request.
    pub async fn fetch_many(&self, targets: &[FetchTarget], options: FetchOptions) -> Result<Vec<FetchResult>> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for t in targets {
            let p = FetchPartition::default()
                .with_partition(t.partition)
                .with_fetch_offset(t.offset)
                .with_partition_max_bytes(t.max_bytes);
            match topics.iter_mut().find(|x| x.topic.0.as_str() == t.topic) {
                Some(x) => x.partitions.push(p),
                None => topics.push(FetchTopic::default().with_topic(topic_name(&t.topic)).with_partitions(vec![p])),
            }
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(options.max_wait_ms)
            .with_min_bytes(options.min_bytes)
            .with_max_bytes(options.max_bytes)
            .with_topics(topics);
        let extra = Duration::from_millis(options.max_wait_ms.max(0) as u64);
        let response: FetchResponse =
            self.conn.submit(&request, self.fetch_version).await?.recv_with_extra(extra).await?;
        if response.error_code != 0 {
            return Err(Error::Broker { code: response.error_code, context: "Fetch".into() });
        }
        let mut out = Vec::new();
        for topic in response.responses {
            for p in topic.partitions {
                out.push(FetchResult {
                    topic: topic.topic.0.to_string(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    log_start_offset: p.log_start_offset,
                    records: p.records.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Looks up an offset in each of `partitions` of `topic`.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListOffsetsResult>> {
        let version = self.versions.pick(ApiKey::ListOffsets)?;
        let parts = partitions
            .iter()
            .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(spec.wire_value()))
            .collect();
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(parts)]);
        let response = self.conn.call(&request, version).await?;
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                out.push(ListOffsetsResult {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    offset: p.offset,
                    timestamp_ms: p.timestamp,
                });
            }
        }
        Ok(out)
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

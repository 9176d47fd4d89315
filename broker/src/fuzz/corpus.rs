//! The fuzzer's seeds: one or more real request frames (header + body, no
//! size prefix — what `api::handle` receives) for every API and version the
//! broker serves, encoded with the codec's own request types and realistic
//! contents. Produce frames carry record batches from `laminar-client`'s
//! batch builder in every codec, with keys and headers.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use laminar_client::{BatchBuilder, Compression, ProducerIdentity, RecordHeader};

use crate::api::api_versions::{range_of, SUPPORTED};

/// One seed frame, with where its record batches sit (Produce only).
#[derive(Clone)]
pub struct Seed {
    pub api: ApiKey,
    pub version: i16,
    pub frame: Bytes,
    /// Byte ranges of whole record batches inside `frame`.
    pub batches: Vec<std::ops::Range<usize>>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}
fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}
fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

const TOPICS: [&str; 3] = ["orders", "payments-eu-west-1", "clickstream.v2"];
const GROUP: &str = "billing-consumers";
const MEMBER: &str = "rdkafka-5f3c2a9e-8b1d-4c6e-9a0f-2d7e1b4c8a63";

/// Encodes `body` behind a request header: a frame as the broker reads it.
pub fn frame<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("laminar-fuzz")))
        .encode(&mut b, R::header_version(version))
        .expect("header encodes");
    body.encode(&mut b, version).unwrap_or_else(|e| panic!("{api:?} v{version} encodes: {e}"));
    b.freeze()
}

/// A batch of `records` records with keys, values and (every other record)
/// headers, compressed with `codec`.
pub fn record_batch(codec: Compression, records: usize, producer: Option<ProducerIdentity>) -> Bytes {
    let mut builder = BatchBuilder::new(codec);
    if let Some(p) = producer {
        builder.set_producer(p);
    }
    for i in 0..records {
        let key = format!("customer-{}", 1000 + i * 7);
        let value = format!(
            "{{\"order\":{i},\"amount_cents\":{},\"currency\":\"EUR\",\"note\":\"{}\"}}",
            1999 + i,
            "x".repeat(i % 40)
        );
        let trace = format!("trace-{i:08x}");
        let headers = [
            RecordHeader { key: "content-type", value: Some(b"application/json") },
            RecordHeader { key: "trace-id", value: Some(trace.as_bytes()) },
            RecordHeader { key: "empty", value: None },
        ];
        let headers: &[RecordHeader<'_>] = if i % 2 == 0 { &headers } else { &[] };
        let key: Option<&[u8]> = if i % 5 == 4 { None } else { Some(key.as_bytes()) };
        builder.append(1_700_000_000_000 + i as i64 * 13, key, Some(value.as_bytes()), headers).expect("append");
    }
    builder.finish().expect("finish")
}

fn produce(variant: usize) -> (ProduceRequest, Vec<Bytes>) {
    let mut batches = Vec::new();
    let mut topic_data = Vec::new();
    for (t, name) in TOPICS.iter().take(1 + variant % 2).enumerate() {
        let mut partitions = Vec::new();
        for p in 0..2 {
            let codec = Compression::ALL[(variant + t * 2 + p) % Compression::ALL.len()];
            let producer = (variant % 2 == 1).then_some(ProducerIdentity {
                producer_id: 4000 + variant as i64,
                producer_epoch: 0,
                base_sequence: 17,
            });
            // One or two batches per partition: the broker splits them.
            let mut records = BytesMut::new();
            for b in 0..1 + (variant + p) % 2 {
                let batch = record_batch(codec, 1 + (variant * 3 + p + b) % 6, producer);
                records.put_slice(&batch);
                batches.push(batch);
            }
            partitions.push(PartitionProduceData::default().with_index(p as i32).with_records(Some(records.freeze())));
        }
        topic_data.push(TopicProduceData::default().with_name(topic(name)).with_partition_data(partitions));
    }
    let req = ProduceRequest::default()
        .with_acks(if variant.is_multiple_of(3) { -1 } else { 1 })
        .with_timeout_ms(30_000)
        .with_topic_data(topic_data);
    (req, batches)
}

fn fetch(version: i16) -> FetchRequest {
    let topics = TOPICS
        .iter()
        .map(|name| {
            let partitions = (0..3)
                .map(|p| {
                    let mut fp = FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(1234 + p as i64)
                        .with_partition_max_bytes(1 << 20);
                    if version >= 9 {
                        fp = fp.with_current_leader_epoch(0);
                    }
                    if version >= 5 {
                        fp = fp.with_log_start_offset(-1);
                    }
                    fp
                })
                .collect();
            FetchTopic::default().with_topic(topic(name)).with_partitions(partitions)
        })
        .collect();
    let mut req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_isolation_level(0)
        .with_topics(topics);
    if version >= 7 {
        req = req.with_session_id(0).with_session_epoch(-1).with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(topic("old-topic"))
            .with_partitions(vec![0, 3])]);
    }
    if version >= 11 {
        req = req.with_rack_id(s("eu-west-1a"));
    }
    req
}

fn list_offsets(version: i16) -> ListOffsetsRequest {
    let topics = TOPICS
        .iter()
        .map(|name| {
            let partitions = [(0, -1i64), (1, -2), (2, 1_700_000_000_000)]
                .iter()
                .map(|&(p, ts)| {
                    let lp = ListOffsetsPartition::default().with_partition_index(p).with_timestamp(ts);
                    if version >= 4 {
                        lp.with_current_leader_epoch(0)
                    } else {
                        lp
                    }
                })
                .collect();
            ListOffsetsTopic::default().with_name(topic(name)).with_partitions(partitions)
        })
        .collect();
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
    if version >= 2 {
        req.with_isolation_level(1)
    } else {
        req
    }
}

/// Moves (and one cancel) of a few partitions.
fn alter_reassignments(version: i16, cancel: bool) -> AlterPartitionReassignmentsRequest {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let topics = TOPICS
        .iter()
        .map(|name| {
            let partitions = (0..3)
                .map(|p| {
                    let replicas = (!cancel || p != 1).then(|| vec![BrokerId(p + 1), BrokerId(4), BrokerId(7)]);
                    ReassignablePartition::default().with_partition_index(p).with_replicas(replicas)
                })
                .collect();
            ReassignableTopic::default().with_name(topic(name)).with_partitions(partitions)
        })
        .collect();
    let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(60_000).with_topics(topics);
    if version >= 1 {
        req.with_allow_replication_factor_change(cancel)
    } else {
        req
    }
}

fn list_reassignments(all: bool) -> ListPartitionReassignmentsRequest {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    let topics = (!all).then(|| {
        TOPICS
            .iter()
            .map(|n| {
                ListPartitionReassignmentsTopics::default().with_name(topic(n)).with_partition_indexes(vec![0, 2, 9])
            })
            .collect()
    });
    ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(topics)
}

/// A preferred election of a few partitions, or of every partition (null).
fn elect_leaders(version: i16, all: bool) -> ElectLeadersRequest {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let topics = (!all).then(|| {
        TOPICS.iter().map(|n| TopicPartitions::default().with_topic(topic(n)).with_partitions(vec![0, 1, 9])).collect()
    });
    let req = ElectLeadersRequest::default().with_topic_partitions(topics).with_timeout_ms(30_000);
    if version >= 1 {
        req.with_election_type(if all { 0 } else { 1 })
    } else {
        req
    }
}

/// Sizes on disk of a few partitions, or of every replica (null).
fn describe_log_dirs(all: bool) -> DescribeLogDirsRequest {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    let topics = (!all).then(|| {
        TOPICS
            .iter()
            .map(|n| DescribableLogDirTopic::default().with_topic(topic(n)).with_partitions(vec![0, 2]))
            .collect()
    });
    DescribeLogDirsRequest::default().with_topics(topics)
}

/// A consumer's (replica -1) or a follower's (broker id) epoch query.
fn offset_for_leader_epoch(version: i16, replica: i32) -> OffsetForLeaderEpochRequest {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let topics = TOPICS
        .iter()
        .map(|name| {
            let partitions = [(0, 3, 4), (1, 0, 0), (7, -1, 12)]
                .iter()
                .map(|&(p, current, epoch)| {
                    OffsetForLeaderPartition::default()
                        .with_partition(p)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch)
                })
                .collect();
            OffsetForLeaderTopic::default().with_topic(topic(name)).with_partitions(partitions)
        })
        .collect();
    let req = OffsetForLeaderEpochRequest::default().with_topics(topics);
    if version >= 3 {
        req.with_replica_id(BrokerId(replica))
    } else {
        req
    }
}

fn metadata(version: i16, all: bool) -> MetadataRequest {
    let topics = if all && version >= 1 {
        None
    } else {
        Some(TOPICS.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic(n)))).collect())
    };
    let mut req = MetadataRequest::default().with_topics(topics);
    if version >= 4 {
        req = req.with_allow_auto_topic_creation(false);
    }
    if version >= 8 {
        req = req.with_include_topic_authorized_operations(true);
    }
    req
}

fn create_topics() -> CreateTopicsRequest {
    let configs = vec![
        CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("604800000"))),
        CreatableTopicConfig::default().with_name(s("cleanup.policy")).with_value(Some(s("delete"))),
        CreatableTopicConfig::default().with_name(s("segment.bytes")).with_value(None),
    ];
    let explicit = CreatableTopic::default()
        .with_name(topic("audit-log"))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![
            CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
            CreatableReplicaAssignment::default().with_partition_index(1).with_broker_ids(vec![BrokerId(1)]),
        ]);
    CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("orders-v2"))
                .with_num_partitions(6)
                .with_replication_factor(1)
                .with_configs(configs),
            explicit,
        ])
        .with_timeout_ms(30_000)
}

fn delete_topics(version: i16) -> DeleteTopicsRequest {
    let req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if version >= 6 {
        req.with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic("orders-v2"))),
            DeleteTopicState::default().with_topic_id(uuid::Uuid::from_u128(0x6b1f_2c3d_4e5f_4a6b_8c7d_9e0f_1a2b_3c4d)),
        ])
    } else {
        req.with_topic_names(vec![topic("orders-v2"), topic("audit-log")])
    }
}

fn delete_records() -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default().with_name(topic("orders")).with_partitions(vec![
            DeleteRecordsPartition::default().with_partition_index(0).with_offset(1000),
            DeleteRecordsPartition::default().with_partition_index(1).with_offset(-1),
        ])])
        .with_timeout_ms(30_000)
}

fn describe_configs(version: i16) -> DescribeConfigsRequest {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configuration_keys(None),
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("payments-eu-west-1"))
            .with_configuration_keys(Some(vec![s("retention.ms"), s("max.message.bytes")])),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configuration_keys(None),
    ]);
    let req = req.with_include_synonyms(true);
    if version >= 3 {
        req.with_include_documentation(true)
    } else {
        req
    }
}

fn alter_configs() -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("orders"))
        .with_configs(vec![
            AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("86400000"))),
            AlterableConfig::default().with_name(s("cleanup.policy")).with_value(None),
        ])])
}

fn incremental_alter_configs() -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("orders"))
        .with_configs(vec![
            AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("3600000"))),
            AlterableConfig::default().with_name(s("segment.ms")).with_config_operation(1).with_value(None),
        ])])
}

fn create_partitions() -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default().with_name(topic("orders")).with_count(12).with_assignments(None),
            CreatePartitionsTopic::default().with_name(topic("clickstream.v2")).with_count(4).with_assignments(Some(
                vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                ],
            )),
        ])
        .with_timeout_ms(30_000)
}

fn describe_cluster(version: i16) -> DescribeClusterRequest {
    let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    if version >= 1 {
        req.with_endpoint_type(1)
    } else {
        req
    }
}

fn find_coordinator(version: i16) -> FindCoordinatorRequest {
    let req = FindCoordinatorRequest::default();
    let req = if version >= 4 {
        req.with_coordinator_keys(vec![group(GROUP).0, s("analytics")])
    } else {
        req.with_key(s(GROUP))
    };
    if version >= 1 {
        req.with_key_type(0)
    } else {
        req
    }
}

/// A consumer's subscription, as JoinGroup carries it in `metadata`.
fn subscription_bytes(version: i16) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    let mut sub = ConsumerProtocolSubscription::default()
        .with_topics(TOPICS.iter().map(|t| s(t)).collect())
        .with_user_data(Some(Bytes::from_static(b"\x00\x01sticky")));
    if version >= 1 {
        sub = sub.with_owned_partitions(vec![TopicPartition::default()
            .with_topic(topic("orders"))
            .with_partitions(vec![0, 1])]);
    }
    if version >= 2 {
        sub = sub.with_generation_id(3);
    }
    if version >= 3 {
        sub = sub.with_rack_id(Some(s("eu-west-1a")));
    }
    let mut b = BytesMut::new();
    b.put_i16(version);
    sub.encode(&mut b, version).expect("subscription encodes");
    b.freeze()
}

fn assignment_bytes() -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default().with_topic(topic("orders")).with_partitions(vec![0, 2, 4]),
        TopicPartition::default().with_topic(topic("payments-eu-west-1")).with_partitions(vec![1]),
    ]);
    let mut b = BytesMut::new();
    b.put_i16(1);
    a.encode(&mut b, 1).expect("assignment encodes");
    b.freeze()
}

fn join_group(version: i16) -> JoinGroupRequest {
    let protocols = vec![
        JoinGroupRequestProtocol::default().with_name(s("cooperative-sticky")).with_metadata(subscription_bytes(3)),
        JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(subscription_bytes(0)),
    ];
    let mut req = JoinGroupRequest::default()
        .with_group_id(group(GROUP))
        .with_session_timeout_ms(45_000)
        .with_member_id(s(if version >= 4 { MEMBER } else { "" }))
        .with_protocol_type(s("consumer"))
        .with_protocols(protocols);
    if version >= 1 {
        req = req.with_rebalance_timeout_ms(300_000);
    }
    if version >= 5 {
        req = req.with_group_instance_id(Some(s("billing-1")));
    }
    if version >= 8 {
        req = req.with_reason(Some(s("rebalance after metadata change")));
    }
    req
}

fn sync_group(version: i16) -> SyncGroupRequest {
    let mut req = SyncGroupRequest::default()
        .with_group_id(group(GROUP))
        .with_generation_id(7)
        .with_member_id(s(MEMBER))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default().with_member_id(s(MEMBER)).with_assignment(assignment_bytes()),
            SyncGroupRequestAssignment::default().with_member_id(s("rdkafka-other")).with_assignment(Bytes::new()),
        ]);
    if version >= 3 {
        req = req.with_group_instance_id(Some(s("billing-1")));
    }
    if version >= 5 {
        req = req.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("cooperative-sticky")));
    }
    req
}

fn heartbeat(version: i16) -> HeartbeatRequest {
    let req = HeartbeatRequest::default().with_group_id(group(GROUP)).with_generation_id(7).with_member_id(s(MEMBER));
    if version >= 3 {
        req.with_group_instance_id(Some(s("billing-1")))
    } else {
        req
    }
}

fn leave_group(version: i16) -> LeaveGroupRequest {
    let req = LeaveGroupRequest::default().with_group_id(group(GROUP));
    if version >= 3 {
        let mut m = MemberIdentity::default().with_member_id(s(MEMBER)).with_group_instance_id(Some(s("billing-1")));
        if version >= 5 {
            m = m.with_reason(Some(s("the consumer is being closed")));
        }
        req.with_members(vec![m, MemberIdentity::default().with_member_id(s("rdkafka-other"))])
    } else {
        req.with_member_id(s(MEMBER))
    }
}

fn describe_groups(version: i16) -> DescribeGroupsRequest {
    let req = DescribeGroupsRequest::default().with_groups(vec![group(GROUP), group("analytics")]);
    if version >= 3 {
        req.with_include_authorized_operations(true)
    } else {
        req
    }
}

fn list_groups(version: i16) -> ListGroupsRequest {
    let req = ListGroupsRequest::default();
    let req = if version >= 4 { req.with_states_filter(vec![s("Stable"), s("Empty")]) } else { req };
    if version >= 5 {
        req.with_types_filter(vec![s("classic")])
    } else {
        req
    }
}

fn offset_commit(version: i16) -> OffsetCommitRequest {
    let topics = TOPICS
        .iter()
        .map(|name| {
            let partitions = (0..3)
                .map(|p| {
                    let op = OffsetCommitRequestPartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(10_000 + p as i64)
                        .with_committed_metadata(Some(s(if p == 0 { "" } else { "app-v1" })));
                    if version >= 6 {
                        op.with_committed_leader_epoch(0)
                    } else {
                        op
                    }
                })
                .collect();
            OffsetCommitRequestTopic::default().with_name(topic(name)).with_partitions(partitions)
        })
        .collect();
    let mut req = OffsetCommitRequest::default()
        .with_group_id(group(GROUP))
        .with_generation_id_or_member_epoch(7)
        .with_member_id(s(MEMBER))
        .with_topics(topics);
    if version <= 4 {
        req = req.with_retention_time_ms(-1);
    }
    if version >= 7 {
        req = req.with_group_instance_id(Some(s("billing-1")));
    }
    req
}

fn offset_fetch(version: i16, all: bool) -> OffsetFetchRequest {
    if version >= 8 {
        let topics = (!all).then(|| {
            TOPICS
                .iter()
                .map(|n| OffsetFetchRequestTopics::default().with_name(topic(n)).with_partition_indexes(vec![0, 1, 2]))
                .collect()
        });
        let mut g = OffsetFetchRequestGroup::default().with_group_id(group(GROUP)).with_topics(topics);
        if version >= 9 {
            g = g.with_member_id(Some(s(MEMBER))).with_member_epoch(3);
        }
        return OffsetFetchRequest::default()
            .with_groups(vec![g, OffsetFetchRequestGroup::default().with_group_id(group("analytics"))])
            .with_require_stable(true);
    }
    let topics = if all && version >= 2 {
        None
    } else {
        Some(
            TOPICS
                .iter()
                .map(|n| OffsetFetchRequestTopic::default().with_name(topic(n)).with_partition_indexes(vec![0, 1, 2]))
                .collect(),
        )
    };
    let req = OffsetFetchRequest::default().with_group_id(group(GROUP)).with_topics(topics);
    if version >= 7 {
        req.with_require_stable(true)
    } else {
        req
    }
}

fn offset_delete() -> OffsetDeleteRequest {
    OffsetDeleteRequest::default().with_group_id(group(GROUP)).with_topics(vec![OffsetDeleteRequestTopic::default()
        .with_name(topic("orders"))
        .with_partitions(vec![
            OffsetDeleteRequestPartition::default().with_partition_index(0),
            OffsetDeleteRequestPartition::default().with_partition_index(2),
        ])])
}

fn init_producer_id(version: i16) -> InitProducerIdRequest {
    let req = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
    if version >= 3 {
        req.with_producer_id(ProducerId(4000)).with_producer_epoch(2)
    } else {
        req
    }
}

fn api_versions(version: i16) -> ApiVersionsRequest {
    let req = ApiVersionsRequest::default();
    if version >= 3 {
        req.with_client_software_name(s("librdkafka")).with_client_software_version(s("2.6.1"))
    } else {
        req
    }
}

/// A Produce v0–v2 frame (the codec knows only v3+, so it is built by hand
/// as the broker's own decoder reads it): one topic, one partition, one batch.
fn old_produce(version: i16, correlation_id: i32) -> (Bytes, Bytes) {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("laminar-fuzz")))
        .encode(&mut b, 1)
        .expect("header encodes");
    let batch = record_batch(Compression::None, 3, None);
    b.put_i16(1); // acks
    b.put_i32(5000); // timeout
    b.put_i32(1); // topics
    b.put_i16(6);
    b.put_slice(b"orders");
    b.put_i32(1); // partitions
    b.put_i32(0);
    b.put_i32(batch.len() as i32);
    b.put_slice(&batch);
    (b.freeze(), batch)
}

/// Every served API and version, with one to three frames each.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut correlation_id = 0;
    for &(api, _, _) in SUPPORTED {
        let (min, max) = range_of(api).expect("served");
        for version in min..=max {
            let mut push = |frame: Bytes, batches: &[Bytes]| {
                let ranges = batches.iter().map(|b| locate(&frame, b)).collect();
                out.push(Seed { api, version, frame, batches: ranges });
            };
            correlation_id += 1;
            let c = correlation_id;
            match api {
                ApiKey::Produce if version < crate::api::api_versions::PRODUCE_MIN_ACCEPTED => {
                    let (f, batch) = old_produce(version, c);
                    push(f, &[batch]);
                }
                ApiKey::Produce => {
                    for variant in 0..3 {
                        let (req, batches) = produce(variant);
                        push(frame(api, version, c, &req), &batches);
                    }
                }
                ApiKey::Fetch => push(frame(api, version, c, &fetch(version)), &[]),
                ApiKey::ListOffsets => push(frame(api, version, c, &list_offsets(version)), &[]),
                ApiKey::Metadata => {
                    push(frame(api, version, c, &metadata(version, false)), &[]);
                    push(frame(api, version, c, &metadata(version, true)), &[]);
                }
                ApiKey::ApiVersions => push(frame(api, version, c, &api_versions(version)), &[]),
                ApiKey::CreateTopics => push(frame(api, version, c, &create_topics()), &[]),
                ApiKey::DeleteTopics => push(frame(api, version, c, &delete_topics(version)), &[]),
                ApiKey::DeleteRecords => push(frame(api, version, c, &delete_records()), &[]),
                ApiKey::DescribeConfigs => push(frame(api, version, c, &describe_configs(version)), &[]),
                ApiKey::AlterConfigs => push(frame(api, version, c, &alter_configs()), &[]),
                ApiKey::CreatePartitions => push(frame(api, version, c, &create_partitions()), &[]),
                ApiKey::IncrementalAlterConfigs => push(frame(api, version, c, &incremental_alter_configs()), &[]),
                ApiKey::DescribeCluster => push(frame(api, version, c, &describe_cluster(version)), &[]),
                ApiKey::FindCoordinator => push(frame(api, version, c, &find_coordinator(version)), &[]),
                ApiKey::JoinGroup => push(frame(api, version, c, &join_group(version)), &[]),
                ApiKey::SyncGroup => push(frame(api, version, c, &sync_group(version)), &[]),
                ApiKey::Heartbeat => push(frame(api, version, c, &heartbeat(version)), &[]),
                ApiKey::LeaveGroup => push(frame(api, version, c, &leave_group(version)), &[]),
                ApiKey::DescribeGroups => push(frame(api, version, c, &describe_groups(version)), &[]),
                ApiKey::ListGroups => push(frame(api, version, c, &list_groups(version)), &[]),
                ApiKey::DeleteGroups => push(
                    frame(
                        api,
                        version,
                        c,
                        &DeleteGroupsRequest::default().with_groups_names(vec![group(GROUP), group("old")]),
                    ),
                    &[],
                ),
                ApiKey::OffsetCommit => push(frame(api, version, c, &offset_commit(version)), &[]),
                ApiKey::OffsetFetch => {
                    push(frame(api, version, c, &offset_fetch(version, false)), &[]);
                    push(frame(api, version, c, &offset_fetch(version, true)), &[]);
                }
                ApiKey::OffsetDelete => push(frame(api, version, c, &offset_delete()), &[]),
                ApiKey::InitProducerId => push(frame(api, version, c, &init_producer_id(version)), &[]),
                ApiKey::AlterPartitionReassignments => {
                    push(frame(api, version, c, &alter_reassignments(version, false)), &[]);
                    push(frame(api, version, c, &alter_reassignments(version, true)), &[]);
                }
                ApiKey::ListPartitionReassignments => {
                    push(frame(api, version, c, &list_reassignments(false)), &[]);
                    push(frame(api, version, c, &list_reassignments(true)), &[]);
                }
                ApiKey::ElectLeaders => {
                    push(frame(api, version, c, &elect_leaders(version, false)), &[]);
                    push(frame(api, version, c, &elect_leaders(version, true)), &[]);
                }
                ApiKey::DescribeLogDirs => {
                    push(frame(api, version, c, &describe_log_dirs(false)), &[]);
                    push(frame(api, version, c, &describe_log_dirs(true)), &[]);
                }
                ApiKey::OffsetForLeaderEpoch => {
                    push(frame(api, version, c, &offset_for_leader_epoch(version, -1)), &[]);
                    push(frame(api, version, c, &offset_for_leader_epoch(version, 2)), &[]);
                }
                ApiKey::SaslHandshake => {
                    for m in ["PLAIN", "SCRAM-SHA-512"] {
                        push(frame(api, version, c, &SaslHandshakeRequest::default().with_mechanism(s(m))), &[]);
                    }
                }
                ApiKey::SaslAuthenticate => {
                    for token in [&b"\0alice\0alice-secret"[..], b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"] {
                        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
                        push(frame(api, version, c, &req), &[]);
                    }
                }
                ApiKey::DescribeUserScramCredentials => {
                    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
                    let all = DescribeUserScramCredentialsRequest::default().with_users(None);
                    push(frame(api, version, c, &all), &[]);
                    let named = DescribeUserScramCredentialsRequest::default()
                        .with_users(Some(vec![UserName::default().with_name(s("alice"))]));
                    push(frame(api, version, c, &named), &[]);
                }
                ApiKey::AlterUserScramCredentials => {
                    use kafka_protocol::messages::alter_user_scram_credentials_request::{
                        ScramCredentialDeletion, ScramCredentialUpsertion,
                    };
                    let req = AlterUserScramCredentialsRequest::default()
                        .with_deletions(vec![ScramCredentialDeletion::default().with_name(s("bob")).with_mechanism(1)])
                        .with_upsertions(vec![ScramCredentialUpsertion::default()
                            .with_name(s("alice"))
                            .with_mechanism(2)
                            .with_iterations(8192)
                            .with_salt(Bytes::from_static(b"0123456789abcdef"))
                            .with_salted_password(Bytes::from(vec![7u8; 64]))]);
                    push(frame(api, version, c, &req), &[]);
                }
                ApiKey::CreateAcls => {
                    use kafka_protocol::messages::create_acls_request::AclCreation;
                    let acl = |name: &str, pattern: i8, op: i8| {
                        AclCreation::default()
                            .with_resource_type(2)
                            .with_resource_name(s(name))
                            .with_resource_pattern_type(pattern)
                            .with_principal(s("User:alice"))
                            .with_host(s("*"))
                            .with_operation(op)
                            .with_permission_type(3)
                    };
                    let req =
                        CreateAclsRequest::default().with_creations(vec![acl("orders", 3, 4), acl("logs.", 4, 3)]);
                    push(frame(api, version, c, &req), &[]);
                }
                ApiKey::DescribeAcls => {
                    let any = DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_pattern_type_filter(1)
                        .with_operation(1)
                        .with_permission_type(1);
                    push(frame(api, version, c, &any), &[]);
                    let named = any
                        .with_resource_type_filter(2)
                        .with_resource_name_filter(Some(s("orders")))
                        .with_principal_filter(Some(s("User:alice")));
                    push(frame(api, version, c, &named), &[]);
                }
                ApiKey::DeleteAcls => {
                    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
                    let f = DeleteAclsFilter::default()
                        .with_resource_type_filter(2)
                        .with_resource_name_filter(Some(s("orders")))
                        .with_pattern_type_filter(3)
                        .with_operation(1)
                        .with_permission_type(1);
                    push(frame(api, version, c, &DeleteAclsRequest::default().with_filters(vec![f])), &[]);
                }
                other => panic!("the corpus has no frame for served API {other:?}: add one"),
            }
        }
    }
    out
}

/// Where `needle` (a batch) sits in `frame`: the codec copies it verbatim.
fn locate(frame: &[u8], needle: &[u8]) -> std::ops::Range<usize> {
    let at = frame.windows(needle.len()).position(|w| w == needle).expect("batch is in the frame");
    at..at + needle.len()
}

//! Requests the broker refuses with a Kafka error code in a response, where a
//! closed connection or a retriable code would leave clients retrying until
//! they time out: Produce v0–v2 (advertised, not served) and topic names that
//! can never exist.

mod common;

use std::io::Write;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{call, closed_by_broker, frame, read_frame, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn create_topic(l: &Laminar, topic: &str, partitions: i32) {
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn latest_offset(l: &Laminar, topic: &str, partition: i32) -> i64 {
    let r = list_offsets(l, topic, partition);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn list_offsets(l: &Laminar, topic: &str, partition: i32) -> ListOffsetsResponse {
    let mut s = l.connect();
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default().with_name(name(topic)).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1),
        ])]);
    call(&mut s, ApiKey::ListOffsets, 5, &req)
}

/// A Produce v0–v2 frame, hand-encoded (the codec knows only v3+): one topic,
/// the given partitions, each with a one-message message set of format v1.
fn old_produce_frame(version: i16, correlation_id: i32, acks: i16, topic: &str, partitions: &[i32]) -> Bytes {
    // One message, magic 1: offset, size, crc, magic, attributes, timestamp, key (null), value.
    let mut message = BytesMut::new();
    message.put_i8(1);
    message.put_i8(0);
    message.put_i64(1_700_000_000_000);
    message.put_i32(-1);
    message.put_i32(5);
    message.put_slice(b"hello");
    let crc = crc32_ieee(&message);
    let mut set = BytesMut::new();
    set.put_i64(0);
    set.put_i32(4 + message.len() as i32);
    set.put_u32(crc);
    set.put_slice(&message);

    let mut f = BytesMut::new();
    f.put_i32(0);
    f.put_i16(ApiKey::Produce as i16);
    f.put_i16(version);
    f.put_i32(correlation_id);
    f.put_i16(3);
    f.put_slice(b"e2e");
    f.put_i16(acks);
    f.put_i32(5000);
    f.put_i32(1);
    f.put_i16(topic.len() as i16);
    f.put_slice(topic.as_bytes());
    f.put_i32(partitions.len() as i32);
    for p in partitions {
        f.put_i32(*p);
        f.put_i32(set.len() as i32);
        f.put_slice(&set);
    }
    let size = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&size.to_be_bytes());
    f.freeze()
}

/// CRC-32 (IEEE) of message format v0/v1, bit by bit: a test needs no table.
fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// (partition, error code, base offset) of one partition in a Produce answer.
type PartitionAnswer = (i32, i16, i64);

/// Decodes a Produce v0–v2 response body (after the correlation id):
/// [(topic, [partition answer])], checking the version's fields.
fn old_produce_response(version: i16, mut b: Bytes) -> Vec<(String, Vec<PartitionAnswer>)> {
    let mut out = Vec::new();
    for _ in 0..b.get_i32() {
        let n = b.get_i16() as usize;
        let topic = String::from_utf8(b.split_to(n).to_vec()).unwrap();
        let mut parts = Vec::new();
        for _ in 0..b.get_i32() {
            let (index, error, base_offset) = (b.get_i32(), b.get_i16(), b.get_i64());
            if version >= 2 {
                assert_eq!(b.get_i64(), -1, "log append time");
            }
            parts.push((index, error, base_offset));
        }
        out.push((topic, parts));
    }
    if version >= 1 {
        assert_eq!(b.get_i32(), 0, "throttle time");
    }
    assert!(!b.has_remaining(), "trailing bytes in the response");
    out
}

#[test]
fn produce_v0_to_v2_get_unsupported_version_and_the_connection_stays_open() {
    let l = Laminar::start(&[]);
    create_topic(&l, "t", 1);
    let mut s = l.connect();
    for version in 0..=2 {
        let correlation_id = 40 + version as i32;
        // Partition 0 exists, partition 5 does not: the version is refused before either is looked at.
        s.write_all(&old_produce_frame(version, correlation_id, 1, "t", &[0, 5])).unwrap();
        let mut resp = read_frame(&mut s).expect("an answer, not a closed connection");
        assert_eq!(resp.get_i32(), correlation_id);
        let topics = old_produce_response(version, resp);
        assert_eq!(
            topics,
            vec![("t".to_string(), vec![(0, UNSUPPORTED_VERSION, -1), (5, UNSUPPORTED_VERSION, -1)])],
            "v{version}"
        );
    }
    // acks=0: no answer at all; the next response on the connection is the next request's.
    s.write_all(&old_produce_frame(2, 50, 0, "t", &[0])).unwrap();
    s.write_all(&frame(ApiKey::ApiVersions, 3, 51, &ApiVersionsRequest::default())).unwrap();
    let resp = read_frame(&mut s).unwrap();
    assert_eq!(&resp[..4], &51i32.to_be_bytes(), "nothing was sent for the acks=0 request");
    assert_eq!(latest_offset(&l, "t", 0), 0, "nothing was stored");

    // A v3 request on the same connection is served.
    let batch = {
        let mut b = BatchBuilder::new(Compression::None);
        b.append(1_700_000_000_000, None, Some(b"v3"), &[]).unwrap();
        b.finish().unwrap()
    };
    let req =
        ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 3, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(latest_offset(&l, "t", 0), 1);

    // A v2 body cut short is malformed, like any other: that connection closes.
    let mut s = l.connect();
    let f = old_produce_frame(2, 60, 1, "t", &[0]);
    let mut cut = BytesMut::from(&f[..f.len() - 10]);
    let size = (cut.len() - 4) as i32;
    cut[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&cut).unwrap();
    assert!(closed_by_broker(&mut s));
    let mut s = l.connect();
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

const BAD: &str = "no spaces allowed";

#[test]
fn invalid_topic_names_are_invalid_in_produce_and_metadata_unknown_elsewhere() {
    let l = Laminar::start(&[]);
    let mut s = l.connect();

    // Produce: INVALID_TOPIC_EXCEPTION for a name that can never exist, UNKNOWN for one that could.
    for (topic, want) in [(BAD, INVALID_TOPIC_EXCEPTION), ("absent", UNKNOWN_TOPIC_OR_PARTITION)] {
        let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(None)]),
        ]);
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, want, "produce to {topic:?}: {:?}", p.error_message);
    }
    let too_long = "x".repeat(250);
    let req =
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(&too_long))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(None)])]);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
    assert_eq!(r.responses[0].partition_responses[0].error_code, INVALID_TOPIC_EXCEPTION);

    // Metadata: INVALID_TOPIC_EXCEPTION with and without auto-creation (as Kafka).
    for allow in [false, true] {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(BAD))),
                MetadataRequestTopic::default().with_name(Some(name("absent-valid"))),
            ]))
            .with_allow_auto_topic_creation(allow);
        let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &req);
        assert_eq!(r.topics[0].error_code, INVALID_TOPIC_EXCEPTION, "auto-create {allow}");
        let absent = if allow { 0 } else { UNKNOWN_TOPIC_OR_PARTITION };
        assert_eq!(r.topics[1].error_code, absent, "auto-create {allow}");
    }

    // Fetch, ListOffsets, OffsetCommit, DeleteRecords: Kafka does not check names there
    // and answers UNKNOWN_TOPIC_OR_PARTITION; so do we.
    let req =
        FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(
            vec![FetchTopic::default()
                .with_topic(name(BAD))
                .with_partitions(vec![FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20)])],
        );
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &req);
    assert_eq!(r.responses[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    let r = list_offsets(&l, BAD, 0);
    assert_eq!(r.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name(BAD)).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
        ])]);
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 8, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    let req = DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(name(BAD))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(0)])]);
    let r: DeleteRecordsResponse = call(&mut s, ApiKey::DeleteRecords, 2, &req);
    assert_eq!(r.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
}

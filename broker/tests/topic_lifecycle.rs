//! Topic changes against the real binary: what the broker serves before a
//! restart is what it serves after, whatever happens to the connection that
//! asked for the change (hardening issue, items 1 and 3).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{call, frame, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn create(l: &Laminar, topic: &str) -> CreateTopicsResponse {
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(2)
        .with_replication_factor(1)]);
    call(&mut s, ApiKey::CreateTopics, 7, &req)
}

/// Produces `n` records to partition 0 with acks=all; the error code.
fn produce(l: &Laminar, topic: &str, n: usize) -> i16 {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.append(1_700_000_000_000 + i as i64, None, Some(b"v"), &[]).unwrap();
    }
    let req =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default(
        )
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(b.finish().unwrap()))])]);
    let mut s = l.connect();
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].error_code
}

/// Whether Metadata lists the topic.
fn exists(l: &Laminar, topic: &str) -> bool {
    let mut s = l.connect();
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 9, &req);
    r.topics[0].error_code == 0
}

/// Sends `req` followed, in the same write, by a frame header that closes the
/// connection (`ff ff ff ff`: a negative size), as the review's probe did.
fn send_then_break<R>(l: &Laminar, api: ApiKey, version: i16, req: &R)
where
    R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    let mut s = l.connect();
    let mut bytes = BytesMut::new();
    bytes.put(frame(api, version, 1, req));
    bytes.put_slice(&[0xff, 0xff, 0xff, 0xff]);
    s.write_all(&bytes).unwrap();
    // The broker closes on the bad header; nothing to read.
    drop(s);
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Regression: DeleteTopics followed by a broken frame left the topic
/// serving (and acknowledging produces) until restart, then gone with its
/// acknowledged records. Now the deletion is one store write that memory
/// follows: before and after a restart agree.
#[test]
fn a_delete_on_a_dropped_connection_is_all_or_nothing_across_restarts() {
    let mut l = Laminar::start(&[]);
    assert_eq!(create(&l, "doomed").topics[0].error_code, 0);
    assert_eq!(produce(&l, "doomed", 10), 0);
    let req = DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topic_names(vec![name("doomed")]);
    send_then_break(&l, ApiKey::DeleteTopics, 4, &req);
    // Whether the delete happened is the store's answer; memory must agree.
    std::thread::sleep(Duration::from_millis(500));
    let before = exists(&l, "doomed");
    if !before {
        assert_ne!(produce(&l, "doomed", 1), 0, "a deleted topic must not acknowledge produces");
    }
    l.restart(libc::SIGKILL);
    assert_eq!(exists(&l, "doomed"), before, "the topic's existence changed across a restart");
    if !before {
        // Its directories are gone too (removed, or swept at start).
        eventually("deleted topic's directories remain", || {
            std::fs::read_dir(l.dir.path())
                .unwrap()
                .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with("doomed-"))
        });
    }
}

/// Regression: a create whose connection dropped appeared only after a restart.
#[test]
fn a_create_on_a_dropped_connection_is_all_or_nothing_across_restarts() {
    let mut l = Laminar::start(&[]);
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(name("maybe"))
        .with_num_partitions(3)
        .with_replication_factor(1)]);
    send_then_break(&l, ApiKey::CreateTopics, 7, &req);
    std::thread::sleep(Duration::from_millis(500));
    let before = exists(&l, "maybe");
    if before {
        assert_eq!(produce(&l, "maybe", 3), 0);
    }
    l.restart(libc::SIGKILL);
    assert_eq!(exists(&l, "maybe"), before, "the topic's existence changed across a restart");
}

/// Regression (item 3): a topic deleted and created again under the same
/// name starts empty, even when the old one's directories were left behind
/// by a crash half-way through the deletion.
#[test]
fn a_recreated_topic_never_inherits_the_old_data() {
    let mut l = Laminar::start(&[]);
    assert_eq!(create(&l, "reborn").topics[0].error_code, 0);
    assert_eq!(produce(&l, "reborn", 25), 0);
    // Keep a copy of the old partition directory, as a crash between the
    // catalog change and the removal would have left it.
    let old_dir = l.dir.path().join("reborn-0");
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&old_dir, saved.path());
    let mut s = l.connect();
    let r: DeleteTopicsResponse = call(
        &mut s,
        ApiKey::DeleteTopics,
        4,
        &DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topic_names(vec![name("reborn")]),
    );
    assert_eq!(r.responses[0].error_code, 0);
    l.stop(libc::SIGKILL);
    std::fs::create_dir_all(&old_dir).unwrap();
    copy_dir(saved.path(), &old_dir);
    l.restart_stopped();
    assert!(!exists(&l, "reborn"));
    assert_eq!(create(&l, "reborn").topics[0].error_code, 0);
    let mut s = l.connect();
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(name("reborn")).with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
        ]),
    ]);
    let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 5, &req);
    assert_eq!(r.topics[0].partitions[0].offset, 0, "the new topic must not hold the old one's 25 records");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

//! A full disk: produce gets KAFKA_STORAGE_ERROR, nothing partial lands, what
//! was acknowledged stays readable, the broker keeps serving, and writes work
//! again once space is freed. Runs on a 6 MiB tmpfs, so it needs root (it is
//! skipped, loudly, where mounting is not allowed).

mod common;

use std::process::Command;

use bytes::Bytes;
use common::{call, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn produce(s: &mut std::net::TcpStream, topic: &str, records: Bytes) -> (i16, Option<String>) {
    let req =
        ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(name(topic)))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.error_message.as_ref().map(|m| m.to_string()))
}

fn latest(s: &mut std::net::TcpStream, topic: &str) -> i64 {
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(name(topic)))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 5, &req);
    r.topics[0].partitions[0].offset
}

#[test]
fn full_disk_refuses_writes_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED full_disk test: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(dir.path().to_path_buf());
    let l = Laminar::start_in(dir, &[]);
    let mut s = l.connect();
    for t in ["fill", "spare"] {
        let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(name(t)))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
        assert_eq!(r.topics[0].error_code, 0);
    }
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..64 {
        b.append(0, None, Some(&[7u8; 1000]), &[]).unwrap();
    }
    let batch = b.finish().unwrap();

    let mut acked = 0;
    let mut refusal = None;
    for _ in 0..500 {
        match produce(&mut s, "fill", batch.clone()) {
            (0, _) => acked += 64,
            (code, msg) => {
                refusal = Some((code, msg));
                break;
            }
        }
    }
    let (code, msg) = refusal.expect("a 6 MiB disk fills up");
    assert_eq!(code, 56, "KAFKA_STORAGE_ERROR");
    let msg = msg.unwrap_or_default();
    assert!(msg.to_lowercase().contains("space"), "the message says why: {msg}\n{}", l.log_text());
    assert!(acked > 0);
    // Nothing partial landed: the log ends exactly after the acknowledged batches.
    assert_eq!(latest(&mut s, "fill"), acked);
    // Still full: the next attempt is refused the same way, and the broker stays up.
    assert_eq!(produce(&mut s, "fill", batch.clone()).0, 56);
    // Free space by deleting the filled topic; writes elsewhere work again.
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName(name("fill"))))]);
    let r: DeleteTopicsResponse = call(&mut s, ApiKey::DeleteTopics, 6, &req);
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(produce(&mut s, "spare", batch).0, 0);
    assert_eq!(latest(&mut s, "spare"), 64);
    drop(s);
    drop(l);
}

fn create(s: &mut std::net::TcpStream, topic: &str) {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(name(topic)))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(s, ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, 0);
}

/// Produces `batch` to `topic` until the disk is full; returns the records acknowledged.
fn fill(s: &mut std::net::TcpStream, topic: &str, batch: &Bytes) -> usize {
    for i in 0..100_000 {
        match produce(s, topic, batch.clone()) {
            (0, _) => {}
            (56, _) => return i,
            (code, msg) => panic!("produce answered {code}: {msg:?}"),
        }
    }
    panic!("a 6 MiB disk fills up");
}

#[test]
fn a_full_disk_is_logged_once_per_partition_and_a_failed_shutdown_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED full_disk test: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(dir.path().to_path_buf());
    let mut l = Laminar::start_in(dir, &[]);
    let mut s = l.connect();
    for t in ["ballast", "fill"] {
        create(&mut s, t);
    }
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..64 {
        b.append(0, None, Some(&[7u8; 1000]), &[]).unwrap();
    }
    let batch = b.finish().unwrap();
    for _ in 0..20 {
        assert_eq!(produce(&mut s, "ballast", batch.clone()).0, 0);
    }
    fill(&mut s, "fill", &batch);
    for _ in 0..20 {
        assert_eq!(produce(&mut s, "fill", batch.clone()).0, 56);
    }
    let log = l.log_text();
    assert_eq!(log.matches("writes to fill-0 fail").count(), 1, "one line for 21 refused writes:\n{log}");
    assert!(log.contains("No space left on device"), "the OS error is named:\n{log}");
    // Space comes back: the partition's writes work again, said once.
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_name(Some(TopicName(name("ballast"))))]);
    let r: DeleteTopicsResponse = call(&mut s, ApiKey::DeleteTopics, 6, &req);
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(produce(&mut s, "fill", batch.clone()).0, 0);
    assert_eq!(produce(&mut s, "fill", batch.clone()).0, 0);
    assert_eq!(l.log_text().matches("writes to fill-0 succeed again").count(), 1);
    // Full again, to the last byte, and stopped: closing the log (indexes,
    // producer snapshot) cannot be written, and the last line says so.
    fill(&mut s, "fill", &batch);
    for value_bytes in [100, 1] {
        let mut b = BatchBuilder::new(Compression::None);
        b.append(0, None, Some(&vec![7u8; value_bytes]), &[]).unwrap();
        fill(&mut s, "fill", &b.finish().unwrap());
    }
    drop(s);
    let status = l.stop(libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = l.log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(!log.contains("stopped cleanly"), "{log}");
    assert!(last.contains("stopped with errors: 1 logs failed to close"), "last line: {last}\n{log}");
    assert!(!status.success(), "exit status {status:?}");
}

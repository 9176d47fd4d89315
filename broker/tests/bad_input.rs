//! Bad input against the real binary: each gets a Kafka error code or a clean
//! close of that one connection, logged; the broker keeps serving others.

mod common;

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use common::{call, closed_by_broker, frame, read_frame, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

fn still_serves(l: &Laminar) {
    let mut s = l.connect();
    let r: ApiVersionsResponse = call(&mut s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
}

fn create_topic(l: &Laminar, name: &str, partitions: i32) {
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn batch(n: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.append(1_700_000_000_000 + i as i64, None, Some(format!("value-{i}").as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])])
}

fn latest_offset(l: &Laminar, topic: &str, partition: i32) -> i64 {
    let mut s = l.connect();
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 5, &req);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    let l = Laminar::start(&["--socket-request-max-bytes", "1048576"]);
    let mut other = l.connect();
    let mut s = l.connect();
    s.write_all(&(2 * 1024 * 1024i32).to_be_bytes()).unwrap();
    s.write_all(&[0u8; 1024]).unwrap();
    assert!(closed_by_broker(&mut s));
    // The other connection is untouched.
    let r: ApiVersionsResponse = call(&mut other, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = l.log_text();
    assert_eq!(log.matches("exceeds socket.request.max.bytes").count(), 1, "{log}");
}

#[test]
fn garbage_truncated_and_negative_frames_close_cleanly() {
    let l = Laminar::start(&[]);
    // Unknown API key.
    let mut s = l.connect();
    let mut f = BytesMut::new();
    f.put_i32(12);
    f.put_i16(12345);
    f.put_i16(0);
    f.put_i32(1);
    f.put_i16(-1);
    f.put_i16(0);
    s.write_all(&f).unwrap();
    assert!(closed_by_broker(&mut s));
    // Random bytes.
    let mut s = l.connect();
    let junk: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    s.write_all(&60i32.to_be_bytes()).unwrap();
    s.write_all(&junk[..60]).unwrap();
    assert!(closed_by_broker(&mut s));
    // Negative size.
    let mut s = l.connect();
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(closed_by_broker(&mut s));
    // A valid header with a body cut short.
    let mut s = l.connect();
    let full = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default().with_topics(None));
    let mut cut = BytesMut::from(&full[..full.len() - 2]);
    let len = (cut.len() - 4) as i32;
    cut[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&cut).unwrap();
    assert!(closed_by_broker(&mut s));
    // Connection dropped inside a frame.
    let mut s = l.connect();
    s.write_all(&100i32.to_be_bytes()).unwrap();
    s.write_all(&[1, 2, 3]).unwrap();
    drop(s);
    still_serves(&l);
}

#[test]
fn unknown_versions_are_refused_and_api_versions_falls_back() {
    let l = Laminar::start(&[]);
    // ApiVersions at a version we don't know: v0-shaped answer with error 35 (KIP-511).
    let mut s = l.connect();
    s.write_all(&frame(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default())[..]).unwrap();
    let mut f = frame(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default()).to_vec();
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    read_frame(&mut s).unwrap();
    s.write_all(&f).unwrap();
    let resp = read_frame(&mut s).unwrap();
    assert_eq!(&resp[..4], &9i32.to_be_bytes());
    assert_eq!(&resp[4..6], &35i16.to_be_bytes());
    // Metadata v99: closed.
    let mut s = l.connect();
    let mut f = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default()).to_vec();
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&f).unwrap();
    assert!(closed_by_broker(&mut s));
    // Produce v0–v2 are advertised but answered with an error: error_answers.rs.
    still_serves(&l);
}

#[test]
fn corrupt_batches_are_rejected_and_nothing_lands() {
    let l = Laminar::start(&[]);
    create_topic(&l, "crc", 1);
    let mut s = l.connect();
    let good = batch(5);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("crc", 0, good.clone(), -1));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // Flip one byte of a record: the CRC no longer matches.
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 3;
    bad[last] ^= 0xff;
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("crc", 0, bad.freeze(), -1));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2, "CORRUPT_MESSAGE");
    // A torn batch (cut short) is rejected too.
    let cut = good.slice(..good.len() - 7);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("crc", 0, cut, -1));
    assert_ne!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(latest_offset(&l, "crc", 0), 5);
    // Unknown topic and partition.
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("nope", 0, good.clone(), 1));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("crc", 7, good, 1));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
}

#[test]
fn a_thousand_connections_are_served() {
    // This test process holds 1,000 sockets too; lift its own descriptor limit.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on our own process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let l = Laminar::start(&[]);
    let mut conns: Vec<_> = (0..1000).map(|_| l.connect()).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&frame(ApiKey::ApiVersions, 3, i as i32, &ApiVersionsRequest::default())).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let f = read_frame(s).expect("answer");
        assert_eq!(&f[..4], &(i as i32).to_be_bytes());
    }
}

#[test]
fn sigterm_flushes_and_sigkill_keeps_acks_all() {
    let mut l = Laminar::start(&[]);
    create_topic(&l, "d", 2);
    let mut s = l.connect();
    for p in 0..2 {
        for _ in 0..20 {
            let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("d", p, batch(10), -1));
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    drop(s);
    l.restart(libc::SIGKILL);
    assert_eq!(latest_offset(&l, "d", 0), 200);
    assert_eq!(latest_offset(&l, "d", 1), 200);
    // acks=1 is written before the answer; a clean stop must keep it too.
    let mut s = l.connect();
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("d", 0, batch(10), 1));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    drop(s);
    let status = l.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}");
    assert!(l.log_text().contains("stopped cleanly"));
}

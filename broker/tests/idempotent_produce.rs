//! InitProducerId and idempotent Produce in raw frames: ids never repeat across
//! a restart, KIP-360 epoch bumps, transactional ids refused; duplicates,
//! gaps and fenced epochs answered with Kafka's codes, also after a SIGKILL.

mod common;

use bytes::Bytes;
use common::{call, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression, ProducerIdentity};

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn init(s: &mut std::net::TcpStream, version: i16, current: (i64, i16), txn: Option<&str>) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(txn.map(|t| TransactionalId(name(t))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(current.0))
        .with_producer_epoch(current.1);
    call(s, ApiKey::InitProducerId, version, &req)
}

fn batch(pid: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.set_producer(ProducerIdentity { producer_id: pid, producer_epoch: epoch, base_sequence: seq });
    for i in 0..records {
        b.append(1_700_000_000_000, None, Some(format!("v{i}").as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap()
}

/// Produces one batch (acks=all) and returns (error code, base offset).
fn produce(s: &mut std::net::TcpStream, pid: i64, epoch: i16, seq: i32, records: usize) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(name("idem"))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(batch(pid, epoch, seq, records))),
        ]),
    ]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn init_producer_id_allocates_bumps_and_refuses_transactions() {
    let mut l = Laminar::start(&[]);
    let mut s = l.connect();
    let a = init(&mut s, 4, (-1, -1), None);
    let b = init(&mut s, 0, (-1, -1), None);
    assert_eq!((a.error_code, a.producer_epoch, b.error_code, b.producer_epoch), (0, 0, 0, 0));
    assert_ne!(a.producer_id, b.producer_id);
    // Naming an id (KIP-360's bump) gets a fresh id, never the named one at
    // a higher epoch: without a transactional id nothing says the caller owns
    // it, and a bump would fence its real owner (hardening issue, item 14).
    let bumped = init(&mut s, 4, (a.producer_id.0, 0), None);
    assert_eq!((bumped.error_code, bumped.producer_epoch), (0, 0));
    assert!(bumped.producer_id != a.producer_id && bumped.producer_id != b.producer_id);
    let exhausted = init(&mut s, 4, (a.producer_id.0, i16::MAX - 1), None);
    assert_ne!(exhausted.producer_id, a.producer_id);
    assert_eq!(exhausted.producer_epoch, 0);
    // Half a producer identity is malformed; transactions are not supported.
    assert_eq!(init(&mut s, 4, (a.producer_id.0, -1), None).error_code, 42);
    let txn = init(&mut s, 4, (-1, -1), Some("tx-1"));
    assert_eq!((txn.error_code, txn.producer_id.0), (53, -1));

    // Ids handed out before a restart (even by a killed broker) are never reused.
    let before = [a.producer_id.0, b.producer_id.0, exhausted.producer_id.0];
    l.restart(libc::SIGKILL);
    let mut s = l.connect();
    let c = init(&mut s, 4, (-1, -1), None);
    assert!(before.iter().all(|id| c.producer_id.0 > *id), "{c:?} after {before:?}");
}

#[test]
fn duplicates_gaps_and_fenced_epochs_survive_a_sigkill() {
    let mut l = Laminar::start(&[]);
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(name("idem")))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let _: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    let pid = init(&mut s, 4, (-1, -1), None).producer_id.0;

    assert_eq!(produce(&mut s, pid, 0, 0, 3), (0, 0));
    assert_eq!(produce(&mut s, pid, 0, 3, 2), (0, 3));
    assert_eq!(produce(&mut s, pid, 0, 0, 3), (0, 0), "a retry gets the original offset");
    assert_eq!(produce(&mut s, pid, 0, 9, 1).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");

    l.restart(libc::SIGKILL);
    let mut s = l.connect();
    assert_eq!(produce(&mut s, pid, 0, 3, 2), (0, 3), "recognised after recovery");
    assert_eq!(produce(&mut s, pid, 0, 5, 1), (0, 5));
    // A newer epoch of the producer (as a transactional producer's bump makes)
    // starts at sequence 0 and fences the older one.
    let newer = 1;
    assert_eq!(produce(&mut s, pid, newer, 0, 1), (0, 6));
    assert_eq!(produce(&mut s, pid, 0, 6, 1).0, 47, "INVALID_PRODUCER_EPOCH");
    assert_eq!(produce(&mut s, pid, newer, 5, 1).0, 45);

    l.restart(libc::SIGTERM);
    let mut s = l.connect();
    assert_eq!(produce(&mut s, pid, 0, 6, 1).0, 47, "fenced after a clean restart too");
    assert_eq!(produce(&mut s, pid, newer, 0, 1), (0, 6));
    assert_eq!(produce(&mut s, pid, newer, 1, 1), (0, 7));
}

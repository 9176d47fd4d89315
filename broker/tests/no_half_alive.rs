//! No half-alive broker, and no state that clients grow without end
//! (hardening issue, items 7 and 12): a panic on any shard takes the whole
//! process down, loudly and at once; auto-creating topics past the broker's
//! partition budget gets a clear refusal, not a hang.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{call, frame, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

const POLICY_VIOLATION: i16 = 44;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn create(l: &Laminar, topic: &str, partitions: i32) -> i16 {
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    r.topics[0].error_code
}

fn produce_req(topic: &str, partition: i32) -> ProduceRequest {
    let mut b = BatchBuilder::new(Compression::None);
    b.append(1_700_000_000_000, None, Some(b"v"), &[]).unwrap();
    ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(b.finish().unwrap()))])])
}

#[test]
fn a_panic_on_a_shard_ends_the_process_within_a_second_with_the_panic_logged() {
    let mut l = Laminar::start_with_env(&[], &[("LAMINAR_FAILPOINTS", "panic_on_produce_to=boom")]);
    assert_eq!(create(&l, "fine", 2), 0);
    assert_eq!(create(&l, "boom", 2), 0);
    let mut s = l.connect();
    // Other topics are served as usual: the failure point costs nothing else.
    for p in 0..2 {
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("fine", p));
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    s.write_all(&frame(ApiKey::Produce, 9, 7, &produce_req("boom", 1))).unwrap();
    let sent = Instant::now();
    let status = l.wait_exit(Duration::from_secs(1));
    let log = l.log_text();
    let status = status.unwrap_or_else(|| panic!("the broker kept running after a shard panicked:\n{log}"));
    eprintln!("exited after {:?} with {status}", sent.elapsed());
    assert!(!status.success(), "{status}");
    assert!(log.contains("failpoint panic_on_produce_to=boom"), "the panic message is logged:\n{log}");
    assert!(log.contains("ERROR") && log.contains("panic"), "at error level:\n{log}");
    assert!(log.contains("shard-"), "with the thread's name:\n{log}");
    assert!(log.contains("no_half_alive") || log.contains("failpoints.rs"), "and the location:\n{log}");
}

#[test]
fn auto_creating_thousands_of_topics_past_the_partition_budget_is_refused_clearly() {
    let l = Laminar::start(&["--max-partitions", "8"]);
    let names: Vec<String> = (0..2000).map(|i| format!("auto-{i}")).collect();
    let req = MetadataRequest::default()
        .with_topics(Some(
            names.iter().map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(name(n)))).collect(),
        ))
        .with_allow_auto_topic_creation(true);
    let mut s = l.connect();
    let started = Instant::now();
    let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 9, &req);
    let took = started.elapsed();
    eprintln!("Metadata auto-creating 2000 topics with room for 8 took {took:?}");
    assert_eq!(r.topics.len(), 2000);
    let refused = r.topics.iter().filter(|t| t.error_code == POLICY_VIOLATION).count();
    let created = r.topics.iter().filter(|t| t.error_code == 0).count();
    assert_eq!(created, 8, "as many as there is room for");
    assert_eq!(refused, 2000 - 8, "the rest are refused, none left hanging");
    assert!(took < Duration::from_secs(30), "refusals are quick: {took:?}");
    // An explicit create says why, in words.
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(name("one-more"))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);
    assert_eq!(r.topics[0].error_code, POLICY_VIOLATION);
    let msg = r.topics[0].error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(msg.contains("replica slots"), "{msg}");
    // The broker still serves what it holds.
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_req("auto-0", 0));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

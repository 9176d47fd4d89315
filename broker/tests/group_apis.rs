//! Group APIs no client library here exercises directly: OffsetDelete,
//! FindCoordinator for transactions, errors for unknown groups and members.

mod common;

use common::{call, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn commit(s: &mut std::net::TcpStream, group: &str, offset: i64) -> OffsetCommitResponse {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(name("t"))).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(name("meta"))),
            OffsetCommitRequestPartition::default().with_partition_index(9).with_committed_offset(1),
        ])]);
    call(s, ApiKey::OffsetCommit, 8, &req)
}

fn fetch(s: &mut std::net::TcpStream, group: &str) -> i64 {
    let req = OffsetFetchRequest::default().with_group_id(GroupId(name(group))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(name("t"))).with_partition_indexes(vec![0]),
    ]));
    let r: OffsetFetchResponse = call(s, ApiKey::OffsetFetch, 7, &req);
    r.topics[0].partitions[0].committed_offset
}

#[test]
fn simple_commits_fetch_and_offset_delete() {
    let l = Laminar::start(&[]);
    let mut s = l.connect();
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(name("t")))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let _: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &req);

    let r = commit(&mut s, "g", 42);
    let codes: Vec<i16> = r.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![0, 3], "unknown partition refused, the other stored");
    assert_eq!(fetch(&mut s, "g"), 42);
    assert_eq!(fetch(&mut s, "never-committed"), -1);

    let del = |s: &mut std::net::TcpStream, group: &str| -> OffsetDeleteResponse {
        let req = OffsetDeleteRequest::default().with_group_id(GroupId(name(group))).with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(name("t")))
                .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        ]);
        call(s, ApiKey::OffsetDelete, 0, &req)
    };
    let r = del(&mut s, "g");
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(fetch(&mut s, "g"), -1);
    assert_eq!(del(&mut s, "no-such-group").error_code, 69, "GROUP_ID_NOT_FOUND");

    // Heartbeat from a member nobody knows.
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(name("g")))
        .with_member_id(name("ghost"))
        .with_generation_id(1);
    let r: HeartbeatResponse = call(&mut s, ApiKey::Heartbeat, 4, &hb);
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    // Transaction ids find this broker (InitProducerId then refuses them).
    let fc = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![name("txn")]);
    let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, 4, &fc);
    assert_eq!((r.coordinators[0].error_code, r.coordinators[0].node_id.0), (0, 1));
    let fc = FindCoordinatorRequest::default().with_key_type(5).with_coordinator_keys(vec![name("x")]);
    let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, 4, &fc);
    assert_eq!(r.coordinators[0].error_code, 42, "INVALID_REQUEST");
    let fc = FindCoordinatorRequest::default().with_key(name("g"));
    let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, 3, &fc);
    assert_eq!((r.error_code, r.node_id.0), (0, 1));
    // Unknown groups describe as Dead.
    let d = DescribeGroupsRequest::default().with_groups(vec![GroupId(name("nope"))]);
    let r: DescribeGroupsResponse = call(&mut s, ApiKey::DescribeGroups, 5, &d);
    assert_eq!(r.groups[0].group_state.as_str(), "Dead");
}

//! ElectLeaders (43), KIP-460: `kafka-leader-election.sh` and
//! `laminarctl leader rebalance` ask for leadership to move to each
//! partition's preferred (first) replica now, instead of at the
//! controller's next periodic check. Only preferred elections (type 0) are
//! served: an unclean election follows the broker's `--unclean-leader-election`
//! setting or the topic's `unclean.leader.election.enable`, made by the
//! controller, not something a client triggers.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, RequestHeader, TopicName};

use super::{decode, respond, s, HandlerResult};
use crate::context::Ctx;
use crate::errors::{self, KafkaError};
use crate::security::acl::Operation;
use crate::security::authz;

const ELECTION_PREFERRED: i8 = 0;

pub async fn handle(ctx: &Rc<Ctx>, header: &RequestHeader, body: Bytes) -> HandlerResult {
    let req: ElectLeadersRequest = decode(header, body)?;
    // v0 has no election type: always preferred.
    let election_type = if header.request_api_version >= 1 { req.election_type } else { ELECTION_PREFERRED };
    let view = ctx.view();
    // Null: every partition of every topic.
    let asked: Vec<(String, i32)> = match req.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect(),
        None => view
            .topic_names()
            .into_iter()
            .flat_map(|name| {
                let count = view.topic(&name).map_or(0, |t| t.partition_count());
                (0..count).map(move |p| (name.clone(), p))
            })
            .collect(),
    };
    let results: Vec<Result<(), KafkaError>> = if let Err(e) = authz::cluster(ctx, Operation::Alter) {
        asked.iter().map(|_| Err(e.clone())).collect()
    } else if election_type == ELECTION_PREFERRED {
        ctx.admin.elect_preferred(&asked).await
    } else {
        let why = format!(
            "election type {election_type} is not served: only preferred elections (0); unclean elections follow \
             the topic's unclean.leader.election.enable (or the brokers' --unclean-leader-election)"
        );
        asked.iter().map(|_| Err(KafkaError::new(errors::INVALID_REQUEST, why.clone()))).collect()
    };
    // One entry per topic, in the order first asked (a map, not a search per
    // partition: a null request names every partition of the cluster).
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for ((topic, partition), result) in asked.into_iter().zip(results) {
        let r = PartitionResult::default().with_partition_id(partition);
        let r = match result {
            Ok(()) => r,
            Err(e) => r.with_error_code(e.code).with_error_message(Some(s(e.message))),
        };
        match index.get(&topic) {
            Some(&i) => out[i].partition_result.push(r),
            None => {
                index.insert(topic.clone(), out.len());
                out.push(
                    ReplicaElectionResult::default().with_topic(TopicName(s(topic))).with_partition_result(vec![r]),
                );
            }
        }
    }
    respond(header, &ElectLeadersResponse::default().with_replica_election_results(out))
}

//! The brokers through the Kafka protocol (laminar-client): what every
//! Kafka admin tool uses, so these commands work against a single node
//! without etcd as well as against a cluster. Admin requests the client
//! does not wrap are built here with kafka-protocol's types.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, DescribeLogDirsRequest, ElectLeadersRequest,
    FindCoordinatorRequest, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use laminar_client::{
    BrokerConnection, Client, ClientConfig, ClusterMetadata, ConnectionConfig, OffsetSpec, TopicMetadata,
};

use crate::error::{self, CtlError, Exit, Result};

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR:
/// ask again (the coordinator moved or is starting).
pub const COORDINATOR_RETRY_CODES: [i16; 3] = [14, 15, 16];
/// Attempts at a group call that meets a moving coordinator.
const COORDINATOR_ATTEMPTS_MAX: usize = 10;
const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(300);
/// How long a broker may take to apply a reassignment or an election.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// A partition's outcome in an admin answer: `Ok`, or the error code and message.
pub type PartitionOutcome = Result<(), (i16, String)>;

pub struct Kafka {
    client: Client,
    /// As given (or found in etcd), for messages.
    pub bootstrap: String,
}

impl Kafka {
    pub async fn connect(bootstrap: &str, request_timeout_ms: u64) -> Result<Kafka> {
        let mut config = ClientConfig::new(bootstrap);
        config.connection = ConnectionConfig {
            client_id: "laminarctl".into(),
            request_timeout: Duration::from_millis(request_timeout_ms),
            connect_timeout: Duration::from_secs(5),
            ..ConnectionConfig::default()
        };
        let client = Client::connect(config).await.map_err(|e| error::kafka(bootstrap, e))?;
        Ok(Kafka { client, bootstrap: bootstrap.to_string() })
    }

    pub fn err(&self, e: laminar_client::Error) -> CtlError {
        error::kafka(&self.bootstrap, e)
    }

    /// Metadata for `topics` (every topic for `None`), never creating one.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        self.client.metadata(topics).await.map_err(|e| self.err(e))
    }

    /// One topic's metadata; [`Exit::NotFound`] if the cluster does not know it.
    pub async fn topic(&self, name: &str) -> Result<TopicMetadata> {
        let md = self.metadata(Some(&[name])).await?;
        match md.topic(name) {
            Some(t) if t.error_code == 0 => Ok(t.clone()),
            Some(t) if t.error_code != 3 => {
                Err(CtlError::failed(format!("topic {name}: {}", error::code_text(t.error_code, None))))
            }
            _ => Err(unknown_topic(name, &self.bootstrap)),
        }
    }

    pub async fn any(&self) -> Result<Arc<BrokerConnection>> {
        self.client.any_broker().await.map_err(|e| self.err(e))
    }

    pub async fn broker(&self, node: i32) -> Result<Arc<BrokerConnection>> {
        match self.client.broker(node).await {
            Ok(b) => Ok(b),
            // Not in the cached metadata yet: refresh once.
            Err(laminar_client::Error::NoBroker(_)) => {
                self.metadata(Some(&[])).await?;
                self.client.broker(node).await.map_err(|e| self.err(e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Sends `req` at the highest version both `versions` and the broker
    /// allow; returns the answer and the version used.
    pub async fn call<R: Request>(
        &self,
        conn: &BrokerConnection,
        req: &R,
        versions: RangeInclusive<i16>,
    ) -> Result<(R::Response, i16)> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| CtlError::failed(format!("unknown API key {}", R::KEY)))?;
        let version = conn.versions().pick_within(api, versions.clone()).map_err(|_| {
            CtlError::failed(format!(
                "the broker at {} does not offer {api:?} in versions {}..={} (laminarctl needs it)",
                conn.connection().peer(),
                versions.start(),
                versions.end()
            ))
        })?;
        let resp = conn.connection().call(req, version).await.map_err(|e| self.err(e))?;
        Ok((resp, version))
    }

    /// The group's coordinator (FindCoordinator, retried while the
    /// coordinator is being assigned).
    pub async fn coordinator(&self, group: &str) -> Result<Arc<BrokerConnection>> {
        let mut last = String::new();
        for _ in 0..COORDINATOR_ATTEMPTS_MAX {
            let any = self.any().await?;
            let req =
                FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())).with_key_type(0);
            let (resp, _) = self.call(&any, &req, 0..=3).await?;
            if resp.error_code == 0 {
                return self.broker(resp.node_id.0).await;
            }
            last = error::code_text(resp.error_code, resp.error_message.as_deref());
            if !COORDINATOR_RETRY_CODES.contains(&resp.error_code) {
                break;
            }
            tokio::time::sleep(COORDINATOR_RETRY_PAUSE).await;
        }
        Err(CtlError::failed(format!("no coordinator for group {group}: {last}")))
    }

    /// Runs `f` against the group's coordinator, again (after finding the
    /// coordinator anew) while it answers with one of
    /// [`COORDINATOR_RETRY_CODES`].
    pub async fn with_coordinator<T, F, Fut>(&self, group: &str, f: F) -> Result<T>
    where
        F: Fn(Arc<BrokerConnection>) -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, i16>>>,
    {
        let mut code = 0;
        for _ in 0..COORDINATOR_ATTEMPTS_MAX {
            let conn = self.coordinator(group).await?;
            match f(conn).await? {
                Ok(v) => return Ok(v),
                Err(c) if COORDINATOR_RETRY_CODES.contains(&c) => {
                    code = c;
                    tokio::time::sleep(COORDINATOR_RETRY_PAUSE).await;
                }
                Err(c) => {
                    return Err(CtlError::new(
                        error::exit_for_code(c),
                        format!("group {group}: {}", error::code_text(c, None)),
                    ))
                }
            }
        }
        Err(CtlError::failed(format!("group {group}: the coordinator kept moving ({})", error::code_text(code, None))))
    }

    /// One offset per partition of `topic` (ListOffsets to each leader):
    /// the offset, or the error code the leader answered.
    pub async fn list_offsets(
        &self,
        topic: &TopicMetadata,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, Result<i64, i16>>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for &p in partitions {
            match topic.partitions.iter().find(|m| m.partition == p) {
                Some(m) if m.leader >= 0 => by_leader.entry(m.leader).or_default().push(p),
                // LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION
                Some(_) => {
                    out.insert(p, Err(5));
                }
                None => {
                    out.insert(p, Err(3));
                }
            }
        }
        for (leader, parts) in by_leader {
            let answers = match self.broker(leader).await {
                Ok(conn) => conn.list_offsets(&topic.name, &parts, spec).await.map_err(|e| self.err(e)),
                Err(e) => Err(e),
            };
            match answers {
                Ok(answers) => {
                    for a in answers {
                        out.insert(a.partition, if a.error_code == 0 { Ok(a.offset) } else { Err(a.error_code) });
                    }
                }
                // One leader down should not hide the others' answers.
                Err(e) if e.exit == Exit::Unreachable => {
                    for p in parts {
                        out.insert(p, Err(8)); // NETWORK_EXCEPTION
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl Kafka {
    /// Reassignments in progress (ListPartitionReassignments, every topic):
    /// (topic, partition) → (adding, removing).
    pub async fn ongoing_reassignments(&self) -> Result<crate::snapshot::Ongoing> {
        let conn = self.any().await?;
        let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS).with_topics(None);
        let (resp, _) = self.call(&conn, &req, 0..=0).await?;
        if resp.error_code != 0 {
            return Err(CtlError::failed(format!(
                "listing reassignments: {}",
                error::code_text(resp.error_code, resp.error_message.as_deref())
            )));
        }
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    (ids(&p.adding_replicas), ids(&p.removing_replicas)),
                );
            }
        }
        Ok(out)
    }

    /// AlterPartitionReassignments: moves each partition to its target
    /// replicas (`None` cancels the move in progress). One outcome per
    /// partition, keyed by (topic, partition).
    pub async fn alter_reassignments(
        &self,
        moves: &[(String, i32, Option<Vec<i32>>)],
    ) -> Result<BTreeMap<(String, i32), PartitionOutcome>> {
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for (topic, partition, target) in moves {
            let p = ReassignablePartition::default()
                .with_partition_index(*partition)
                .with_replicas(target.as_ref().map(|t| t.iter().map(|&n| BrokerId(n)).collect()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        // v1 with allow_replication_factor_change: a plan may change it, as v0 always allowed.
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_allow_replication_factor_change(true)
            .with_topics(topics);
        let conn = self.any().await?;
        let (resp, _) = self.call(&conn, &req, 0..=1).await?;
        if resp.error_code != 0 {
            return Err(CtlError::failed(format!(
                "the broker refused the reassignment: {}",
                error::code_text(resp.error_code, resp.error_message.as_deref())
            )));
        }
        let mut out = BTreeMap::new();
        for t in resp.responses {
            for p in t.partitions {
                let outcome = if p.error_code == 0 {
                    Ok(())
                } else {
                    Err((p.error_code, error::code_text(p.error_code, p.error_message.as_deref())))
                };
                out.insert((t.name.0.to_string(), p.partition_index), outcome);
            }
        }
        Ok(out)
    }

    /// Whether the broker we talk to serves `api` at all.
    pub async fn offers(&self, api: ApiKey) -> Result<bool> {
        Ok(self.any().await?.versions().range(api).is_some())
    }

    /// ElectLeaders (preferred) for the partitions named. One outcome per
    /// partition; ELECTION_NOT_NEEDED counts as done.
    pub async fn elect_preferred(&self, parts: &[(String, i32)]) -> Result<BTreeMap<(String, i32), PartitionOutcome>> {
        let mut topics: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in parts {
            match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                Some(t) => t.partitions.push(*partition),
                None => topics.push(
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        let conn = self.any().await?;
        let req = ElectLeadersRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS).with_topic_partitions(Some(topics));
        let (resp, version) = self.call(&conn, &req, 0..=2).await.map_err(|e| {
            if e.message.contains("does not offer") {
                CtlError::failed(format!(
                    "{}: this broker predates ElectLeaders; its controller still moves leaders to preferred replicas                      within about 10 s",
                    e.message
                ))
            } else {
                e
            }
        })?;
        if version >= 1 && resp.error_code != 0 {
            return Err(CtlError::failed(format!(
                "the broker refused the election: {}",
                error::code_text(resp.error_code, None)
            )));
        }
        const ELECTION_NOT_NEEDED: i16 = 84;
        let mut out = BTreeMap::new();
        for t in resp.replica_election_results {
            for p in t.partition_result {
                let outcome = match p.error_code {
                    0 | ELECTION_NOT_NEEDED => Ok(()),
                    c => Err((c, error::code_text(c, p.error_message.as_deref()))),
                };
                out.insert((t.topic.0.to_string(), p.partition_id), outcome);
            }
        }
        Ok(out)
    }

    /// DescribeLogDirs of one broker: (topic, partition) → size on disk in bytes.
    pub async fn log_sizes(&self, node: i32) -> Result<BTreeMap<(String, i32), u64>> {
        let conn = self.broker(node).await?;
        let (resp, version) = self.call(&conn, &DescribeLogDirsRequest::default().with_topics(None), 1..=4).await?;
        if version >= 3 && resp.error_code != 0 {
            return Err(CtlError::failed(format!(
                "broker {node} refused DescribeLogDirs: {}",
                error::code_text(resp.error_code, None)
            )));
        }
        let mut out = BTreeMap::new();
        for dir in resp.results.into_iter().filter(|d| d.error_code == 0) {
            for t in dir.topics {
                for p in t.partitions {
                    out.insert((t.name.0.to_string(), p.partition_index), p.partition_size.max(0) as u64);
                }
            }
        }
        Ok(out)
    }
}

pub fn unknown_topic(name: &str, bootstrap: &str) -> CtlError {
    CtlError::not_found(format!("unknown topic {name}: the cluster at {bootstrap} has no topic by that name"))
}

//! The brokers through the Kafka protocol (laminar-client): what every
//! Kafka admin tool uses, so these commands work against a single node
//! without etcd as well as against a cluster. Admin requests the client
//! does not wrap are built here with kafka-protocol's types.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use laminar_client::{BrokerConnection, Client, ClientConfig, ClusterMetadata, ConnectionConfig, OffsetSpec, TopicMetadata};

use crate::error::{self, CtlError, Exit, Result};

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR:
/// ask again (the coordinator moved or is starting).
pub const COORDINATOR_RETRY_CODES: [i16; 3] = [14, 15, 16];
/// Attempts at a group call that meets a moving coordinator.
const COORDINATOR_ATTEMPTS_MAX: usize = 10;
const COORDINATOR_RETRY_PAUSE: Duration = Duration::from_millis(300);

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
            Some(t) if t.error_code != 3 => Err(CtlError::failed(format!(
                "topic {name}: {}",
                error::code_text(t.error_code, None)
            ))),
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
            let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())).with_key_type(0);
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

pub fn unknown_topic(name: &str, bootstrap: &str) -> CtlError {
    CtlError::not_found(format!("unknown topic {name}: the cluster at {bootstrap} has no topic by that name"))
}

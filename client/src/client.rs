//! `Client`: bootstrap servers, a metadata cache and one connection per broker; calls that
//! concern a partition go to its leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::broker_connection::{
    Acks, BrokerConnection, FetchOptions, FetchResult, FetchTarget, ListOffsetsResult, NewTopic, OffsetSpec,
    ProduceResult, TopicResult,
};
use crate::connection::ConnectionConfig;
use crate::error::{Error, Result};
use crate::metadata::ClusterMetadata;

/// Error codes that mean "your metadata is stale": refresh it and try the leader again.
const STALE_METADATA_CODES: [i16; 4] = [
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    74, // FENCED_LEADER_EPOCH
];

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// "host:port" entries tried in order until one answers.
    pub bootstrap_servers: Vec<String>,
    pub connection: ConnectionConfig,
    /// Attempts after the first when a call meets stale metadata or a broken connection.
    /// Retrying a produce can write its batch twice (at-least-once).
    pub retries: u32,
    pub retry_backoff: Duration,
}

impl ClientConfig {
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            connection: ConnectionConfig::default(),
            retries: 3,
            retry_backoff: Duration::from_millis(100),
        }
    }
}

pub struct Client {
    config: ClientConfig,
    metadata: Mutex<ClusterMetadata>,
    /// One connection per broker node id; bounded by the cluster's size.
    brokers: tokio::sync::Mutex<HashMap<i32, Arc<BrokerConnection>>>,
    /// The bootstrap connection, used for cluster-wide calls until broker ids are known.
    bootstrap: tokio::sync::Mutex<Option<Arc<BrokerConnection>>>,
}

impl Client {
    /// Connects to the first bootstrap server that answers and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        if config.bootstrap_servers.is_empty() {
            return Err(Error::Config("no bootstrap servers given".into()));
        }
        let client = Self {
            config,
            metadata: Mutex::new(ClusterMetadata::default()),
            brokers: tokio::sync::Mutex::new(HashMap::new()),
            bootstrap: tokio::sync::Mutex::new(None),
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The metadata learnt so far.
    pub fn cached_metadata(&self) -> ClusterMetadata {
        self.metadata.lock().expect("metadata lock").clone()
    }

    /// Asks a broker for metadata on `topics` (all topics when `None`) and updates the cache.
    pub async fn metadata(&self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let broker = self.any_broker().await?;
        let fresh = match broker.metadata(topics, false).await {
            Ok(m) => m,
            Err(e) => {
                self.forget(&broker).await;
                return Err(e);
            }
        };
        self.metadata.lock().expect("metadata lock").merge(fresh.clone());
        Ok(fresh)
    }

    /// Partition indexes of `topic`, asking the cluster if the cache does not know the topic.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let cached = self.cached_metadata().topic(topic).map(|t| t.partitions.iter().map(|p| p.partition).collect());
        if let Some(parts) = cached.filter(|p: &Vec<i32>| !p.is_empty()) {
            return Ok(parts);
        }
        let fresh = self.metadata(Some(&[topic])).await?;
        let t = fresh.topic(topic).ok_or_else(|| Error::Broker { code: 3, context: topic.to_string() })?;
        if t.error_code != 0 {
            return Err(Error::Broker { code: t.error_code, context: format!("metadata for {topic}") });
        }
        Ok(t.partitions.iter().map(|p| p.partition).collect())
    }

    /// The connection to broker `node_id`, opened on first use.
    pub async fn broker(&self, node_id: i32) -> Result<Arc<BrokerConnection>> {
        // Taken (and released) before the brokers lock: any_broker locks them the other way round.
        let bootstrap = self.bootstrap.lock().await.clone().filter(|b| !b.is_closed());
        let mut brokers = self.brokers.lock().await;
        if let Some(b) = brokers.get(&node_id).filter(|b| !b.is_closed()) {
            return Ok(Arc::clone(b));
        }
        let address = self
            .cached_metadata()
            .broker(node_id)
            .map(|b| b.address())
            .ok_or_else(|| Error::NoBroker(format!("node {node_id} is not in the metadata")))?;
        // The bootstrap connection usually leads to one of the brokers; reuse it rather than
        // holding two connections to the same endpoint.
        if let Some(b) = bootstrap {
            if resolves_to(&address, b.connection().peer()).await {
                brokers.insert(node_id, Arc::clone(&b));
                return Ok(b);
            }
        }
        let conn = Arc::new(BrokerConnection::connect(&address, self.config.connection.clone()).await?);
        brokers.insert(node_id, Arc::clone(&conn));
        Ok(conn)
    }

    /// Any live connection: the bootstrap one, else a broker's, else a new bootstrap connection.
    pub async fn any_broker(&self) -> Result<Arc<BrokerConnection>> {
        let mut bootstrap = self.bootstrap.lock().await;
        if let Some(b) = bootstrap.as_ref().filter(|b| !b.is_closed()) {
            return Ok(Arc::clone(b));
        }
        if let Some(b) = self.brokers.lock().await.values().find(|b| !b.is_closed()) {
            return Ok(Arc::clone(b));
        }
        let mut failures = Vec::new();
        let mut servers = self.config.bootstrap_servers.clone();
        // Known brokers are worth trying once the bootstrap list is exhausted.
        servers.extend(self.cached_metadata().brokers.iter().map(|b| b.address()));
        for address in servers {
            match BrokerConnection::connect(&address, self.config.connection.clone()).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    *bootstrap = Some(Arc::clone(&conn));
                    return Ok(conn);
                }
                Err(e) => failures.push(format!("{address}: {e}")),
            }
        }
        Err(Error::NoBroker(failures.join("; ")))
    }

    /// The connection to the current leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Arc<BrokerConnection>> {
        let known = self.cached_metadata().leader(topic, partition);
        let leader = match known {
            Some(id) => id,
            None => {
                let fresh = self.metadata(Some(&[topic])).await?;
                match fresh.leader(topic, partition) {
                    Some(id) => id,
                    None => {
                        let code = fresh
                            .topic(topic)
                            .map(|t| {
                                let p = t.partitions.iter().find(|p| p.partition == partition);
                                if t.error_code != 0 {
                                    t.error_code
                                } else {
                                    p.map_or(3, |p| if p.error_code != 0 { p.error_code } else { 5 })
                                }
                            })
                            .unwrap_or(3);
                        return Err(Error::Broker { code, context: format!("no leader for {topic}/{partition}") });
                    }
                }
            }
        };
        self.broker(leader).await
    }

    /// Drops a connection that failed so the next call reconnects.
    async fn forget(&self, conn: &Arc<BrokerConnection>) {
        self.brokers.lock().await.retain(|_, b| !Arc::ptr_eq(b, conn));
        let mut bootstrap = self.bootstrap.lock().await;
        if bootstrap.as_ref().is_some_and(|b| Arc::ptr_eq(b, conn)) {
            *bootstrap = None;
        }
    }

    /// Creates topics through the controller (or any broker when the controller is unknown;
    /// current Kafka forwards). Per-topic errors, such as 36 TOPIC_ALREADY_EXISTS, are data.
    pub async fn create_topics(&self, topics: &[NewTopic], timeout_ms: i32) -> Result<Vec<TopicResult>> {
        let broker = self.controller_or_any().await?;
        broker.create_topics(topics, timeout_ms).await
    }

    pub async fn delete_topics(&self, names: &[&str], timeout_ms: i32) -> Result<Vec<TopicResult>> {
        let broker = self.controller_or_any().await?;
        broker.delete_topics(names, timeout_ms).await
    }

    async fn controller_or_any(&self) -> Result<Arc<BrokerConnection>> {
        let controller = self.cached_metadata().controller_id;
        if controller >= 0 {
            if let Ok(b) = self.broker(controller).await {
                return Ok(b);
            }
        }
        self.any_broker().await
    }

    /// Produces one batch to the partition's leader, refreshing metadata and retrying when the
    /// leader moved or the connection broke.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: Acks,
        timeout_ms: i32,
    ) -> Result<ProduceResult> {
        self.with_leader(
            topic,
            partition,
            |b| {
                let records = records.clone();
                async move { b.produce(topic, partition, records, acks, timeout_ms).await }
            },
            |r| r.error_code,
        )
        .await
    }

    /// Fetches from the partition's leader.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        partition_max_bytes: i32,
        options: FetchOptions,
    ) -> Result<FetchResult> {
        self.with_leader(
            topic,
            partition,
            |b| {
                let target =
                    FetchTarget { topic: topic.to_string(), partition, offset, max_bytes: partition_max_bytes };
                async move { b.fetch(target, options).await }
            },
            |r| r.error_code,
        )
        .await
    }

    /// Looks up an offset of one partition at its leader.
    pub async fn list_offset(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<ListOffsetsResult> {
        self.with_leader(
            topic,
            partition,
            |b| async move {
                b.list_offsets(topic, &[partition], spec)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Malformed(format!("ListOffsets response lacks {topic}/{partition}")))
            },
            |r| r.error_code,
        )
        .await
    }

    /// Looks up an offset for every partition of `topic`, each at its leader.
    pub async fn list_offsets(&self, topic: &str, spec: OffsetSpec) -> Result<Vec<ListOffsetsResult>> {
        let mut out = Vec::new();
        for partition in self.partitions(topic).await? {
            out.push(self.list_offset(topic, partition, spec).await?);
        }
        Ok(out)
    }

    /// Runs `call` at the leader; on stale-metadata codes or connection failures refreshes the
    /// metadata and tries again, up to `retries` more times. The last outcome is returned as is.
    async fn with_leader<T, F, Fut>(&self, topic: &str, partition: i32, call: F, code_of: fn(&T) -> i16) -> Result<T>
    where
        F: Fn(Arc<BrokerConnection>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let last = attempt >= self.config.retries;
            attempt += 1;
            let outcome = match self.leader(topic, partition).await {
                Ok(broker) => {
                    let result = call(Arc::clone(&broker)).await;
                    if matches!(result, Err(Error::Io(_) | Error::Closed(_) | Error::Timeout(_))) {
                        self.forget(&broker).await;
                    }
                    result
                }
                Err(e) => Err(e),
            };
            let stale = match &outcome {
                Ok(value) => STALE_METADATA_CODES.contains(&code_of(value)),
                Err(e) => e.is_retriable(),
            };
            if !stale || last {
                return outcome;
            }
            tokio::time::sleep(self.config.retry_backoff).await;
            // A failed refresh is not fatal here: the next attempt reports what goes wrong.
            let _ = self.metadata(Some(&[topic])).await;
        }
    }
}

/// Whether `address` ("host:port") names `peer`. Lookup failures count as "no".
async fn resolves_to(address: &str, peer: std::net::SocketAddr) -> bool {
    match tokio::net::lookup_host(address).await {
        Ok(mut addrs) => addrs.any(|a| a == peer),
        Err(_) => false,
    }
}

//! What every request handler on a shard can reach.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use laminar_coord::cluster::ClusterView;

use crate::cluster::admin::Admin;
use crate::cluster::Cluster;
use crate::router::{route, Pending, Router};
use crate::shard::{Reply, ShardMsg};

/// Broker-wide settings (from the command line), read-only after start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Host and port put in Metadata for clients to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub cluster_id: String,
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub socket_request_max_bytes: usize,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics.
    pub default_partitions: i32,
    /// `default.replication.factor`: replicas of auto-created topics.
    pub default_replication_factor: i16,
    /// fdatasync before acknowledging acks=all (single-node durability).
    pub fsync_on_acks_all: bool,
    /// Broker-level defaults for topic configs (`log.retention.ms` → `retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
    pub limits: ClientLimits,
}

/// What clients can make the broker hold (docs/operations.md, "Limits").
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// Request bytes held per connection, shard and broker (`budget.rs`).
    pub budgets: crate::budget::BudgetConfig,
    /// `connections.max.idle.ms`: a connection with nothing in flight and
    /// nothing read for this long is closed.
    pub connections_max_idle: Duration,
    /// A frame must arrive whole, and a response be taken whole, this long
    /// after it started.
    pub frame_timeout: Duration,
    /// `max.connections` as asked (None: the default); `server::run` fits it
    /// to the descriptor limit.
    pub max_connections: Option<usize>,
    /// `max.connections.per.ip`
    pub max_connections_per_ip: usize,
}

pub struct Ctx {
    pub router: Router,
    pub cluster: Arc<Cluster>,
    pub admin: Arc<Admin>,
    pub config: Arc<BrokerConfig>,
    /// Producer ids for InitProducerId, shared by all shards.
    pub producer_ids: Arc<crate::producer_ids::ProducerIds>,
    /// Request bytes this shard's connections may hold (its own budget and
    /// the broker's).
    pub budgets: crate::budget::RequestBudgets,
    /// Open connections, counted across shards.
    pub conn_caps: Arc<crate::conn_caps::ConnectionCaps>,
    /// SASL mechanisms, failure delays (`security/`).
    pub security: Arc<crate::security::SecurityState>,
}

impl Ctx {
    /// The current cluster view (one per request).
    pub fn view(&self) -> Arc<ClusterView> {
        self.cluster.view()
    }

    /// The shard of this broker holding the partition, or why there is none.
    pub fn route(&self, view: &ClusterView, topic: &str, partition: i32) -> Result<usize, crate::errors::KafkaError> {
        route(view, self.cluster.node_id(), self.router.shards(), topic, partition)
    }

    /// Posts a question to the shard of this broker holding the partition.
    pub fn ask_partition<T>(
        &self,
        view: &ClusterView,
        topic: &str,
        partition: i32,
        msg: impl FnOnce(Reply<T>) -> ShardMsg,
    ) -> Pending<T> {
        let shard = route(view, self.cluster.node_id(), self.router.shards(), topic, partition)?;
        self.router.ask(shard, msg)
    }
}

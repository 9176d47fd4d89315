//! What every request handler on a shard can reach.

use std::collections::BTreeMap;
use std::sync::Arc;

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
}

pub struct Ctx {
    pub router: Router,
    pub cluster: Arc<Cluster>,
    pub admin: Arc<Admin>,
    pub config: Arc<BrokerConfig>,
    /// Producer ids for InitProducerId, shared by all shards.
    pub producer_ids: Arc<crate::producer_ids::ProducerIds>,
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

//! What every request handler on a shard can reach.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::SharedCatalog;
use crate::controller::Controller;
use crate::router::Router;

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
    /// fdatasync before acknowledging acks=all (single-node durability).
    pub fsync_on_acks_all: bool,
    /// Broker-level defaults for topic configs (`log.retention.ms` → `retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
}

pub struct Ctx {
    pub shard_id: usize,
    pub router: Router,
    pub catalog: SharedCatalog,
    pub controller: Arc<Controller>,
    pub config: Arc<BrokerConfig>,
    /// Producer ids for InitProducerId, shared by all shards.
    pub producer_ids: Arc<crate::producer_ids::ProducerIds>,
}

//! Command-line flags. Each stands for one configuration key and overrides
//! the file; a flag not given leaves the file's value (or the default).
//! Integers are taken as i64 here so that a negative or out-of-range value
//! is refused by the key's own check, with the same message as in a file.

use std::path::PathBuf;

use clap::Parser;
use toml::Value;

#[derive(Parser, Debug, Default)]
#[command(
    name = "laminar",
    version,
    allow_negative_numbers = true,
    about = "A Kafka-compatible log broker on io_uring, one shard per core",
    after_help = "Every flag has a configuration key (in brackets); --config reads them from a TOML file \
                  (docs/laminar.example.toml), flags override it, --print-config shows the result."
)]
pub struct Flags {
    /// A TOML configuration file (keys as in docs/laminar.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (file and flags applied) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// [listeners] Address to serve the Kafka protocol on (port 0 picks a free port). Default 127.0.0.1:9092.
    #[arg(long)]
    pub listen: Option<String>,
    /// [log.dirs] Where partition logs and metadata live. Default ./data.
    #[arg(long)]
    pub data_dir: Option<String>,
    /// [num.shards] Shard threads (default: one per CPU core).
    #[arg(long)]
    pub shards: Option<i64>,
    /// [pin.shards = false] Don't pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// [node.id] This broker's id in the cluster (unique among live brokers). Default 1.
    #[arg(long)]
    pub node_id: Option<i64>,
    /// [etcd.endpoints] etcd endpoints (`http://host:port`, comma-separated):
    /// join the cluster they coordinate. Without it the broker is a single
    /// node with its own embedded metadata store.
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// [etcd.prefix] Key prefix of this cluster in etcd (several clusters can share one etcd). Default /laminar.
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// [broker.rack] This broker's rack (replicas of a partition go to different racks).
    #[arg(long)]
    pub rack: Option<String>,
    /// [lease.ttl.ms] How long a broker that stops answering keeps its roles,
    /// and at most how long a broker cut off from etcd keeps acting. Default 2000.
    #[arg(long)]
    pub lease_ttl_ms: Option<i64>,
    /// [controlled.shutdown.timeout.ms] On SIGTERM, how long to wait for the
    /// controller to hand this broker's leaderships to in-sync replicas
    /// before stopping (0: stop at once). Default 30000.
    #[arg(long)]
    pub controlled_shutdown_timeout_ms: Option<i64>,
    /// [unclean.leader.election.enable = true] Elect an out-of-sync replica
    /// when no in-sync one is alive (loses the writes only the others had).
    #[arg(long)]
    pub unclean_leader_election: bool,
    /// [default.replication.factor] For auto-created topics and CreateTopics asking for -1. Default 1.
    #[arg(long)]
    pub default_replication_factor: Option<i64>,
    /// [replica.lag.time.max.ms] A follower that has not caught up for this long leaves the ISR. Default 30000.
    #[arg(long)]
    pub replica_lag_time_max_ms: Option<i64>,
    /// [replica.fetch.wait.max.ms] How long a follower's fetch waits for new data. Default 500.
    #[arg(long)]
    pub replica_fetch_wait_max_ms: Option<i64>,
    /// [advertised.listeners] host:port clients should connect to (default: the listen address).
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// [fsync.acks.all = false] Acknowledge acks=all before fdatasync (faster,
    /// loses the last writes on power loss).
    #[arg(long)]
    pub no_fsync_acks_all: bool,
    /// [auto.create.topics.enable] Default true.
    #[arg(long)]
    pub auto_create_topics: Option<bool>,
    /// [num.partitions] Partitions of auto-created topics and of CreateTopics asking for the default. Default 1.
    #[arg(long)]
    pub num_partitions: Option<i64>,
    /// [socket.request.max.bytes] Larger requests close the connection. Default 104857600.
    #[arg(long)]
    pub socket_request_max_bytes: Option<i64>,
    /// [log.retention.check.interval.ms] How often retention (retention.ms /
    /// retention.bytes) is checked. Default 300000.
    #[arg(long)]
    pub retention_check_interval_ms: Option<i64>,
    /// [group.initial.rebalance.delay.ms] A new group waits this long for more members to join. Default 3000.
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// [group.max.size] Members one consumer group may have (JoinGroup past it
    /// gets GROUP_MAX_SIZE_REACHED). Default 1000.
    #[arg(long)]
    pub group_max_size: Option<i64>,
    /// [offsets.retention.minutes] Committed offsets of a group without
    /// members are deleted this long after its last member left or its last
    /// commit, whichever is later. Default 10080.
    #[arg(long)]
    pub offsets_retention_minutes: Option<i64>,
    /// [max.partitions] Partition replicas this broker will hold at most
    /// (CreateTopics, CreatePartitions and auto-creation past it are
    /// refused). Default: as many as its open-file limit allows.
    #[arg(long)]
    pub max_partitions: Option<i64>,
    /// Broker-wide topic config default, e.g. `--topic-default retention.ms=3600000`
    /// (repeatable; the same as the key log.retention.ms).
    #[arg(long = "topic-default", value_name = "KEY=VALUE")]
    pub topic_defaults: Vec<String>,
    /// [queued.max.request.bytes] Request bytes all connections together may
    /// hold; beyond it the broker stops reading sockets. Default 536870912.
    #[arg(long)]
    pub queued_max_request_bytes: Option<i64>,
    /// [queued.max.request.bytes.per.shard] Request bytes the connections of
    /// one shard may hold (default: half of the above, at least one largest frame).
    #[arg(long)]
    pub queued_max_request_bytes_per_shard: Option<i64>,
    /// [queued.max.request.bytes.per.connection] Request bytes one connection
    /// may hold (default: socket.request.max.bytes).
    #[arg(long)]
    pub queued_max_request_bytes_per_connection: Option<i64>,
    /// [connections.max.idle.ms] Close connections with nothing in flight and
    /// nothing read for this long. Default 600000.
    #[arg(long)]
    pub connections_max_idle_ms: Option<i64>,
    /// [frame.timeout.ms] A request frame must arrive whole, and a response be
    /// taken whole, within this time. Default 60000.
    #[arg(long)]
    pub frame_timeout_ms: Option<i64>,
    /// [max.connections] Open client connections (default 10000; lowered to
    /// fit the file descriptor limit).
    #[arg(long)]
    pub max_connections: Option<i64>,
    /// [max.connections.per.ip] Open client connections from one address. Default 1000.
    #[arg(long)]
    pub max_connections_per_ip: Option<i64>,
    /// [logging.limit.interval.ms] Repeated log lines of one cause: at most 10
    /// per window of this length, then a summary. Default 10000.
    #[arg(long)]
    pub log_limit_interval_ms: Option<i64>,
    /// [logging.format] `text` (default) or `json` (one JSON object per line).
    /// The filter is LAMINAR_LOG, else RUST_LOG, else `info`.
    #[arg(long)]
    pub log_format: Option<String>,
    /// [metrics.listen] Serve Prometheus metrics at http://HOST:PORT/metrics (default: off).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Listeners, TLS, SASL, ACLs (flags only, not in the file yet): `security/args.rs`.
    #[command(flatten)]
    pub security: crate::security::args::SecurityArgs,
}

impl Flags {
    /// (flag, key, value) for every flag given, in a fixed order.
    pub fn overrides(&self) -> Vec<(&'static str, &'static str, Value)> {
        let mut out = Vec::new();
        let mut s = |flag, key, v: &Option<String>| {
            if let Some(v) = v {
                out.push((flag, key, Value::String(v.clone())));
            }
        };
        s("--listen", "listeners", &self.listen);
        s("--data-dir", "log.dirs", &self.data_dir);
        s("--etcd-prefix", "etcd.prefix", &self.etcd_prefix);
        s("--rack", "broker.rack", &self.rack);
        s("--advertised-listener", "advertised.listeners", &self.advertised_listener);
        s("--log-format", "logging.format", &self.log_format);
        s("--metrics-listen", "metrics.listen", &self.metrics_listen);
        for (flag, key, v) in [
            ("--shards", "num.shards", self.shards),
            ("--node-id", "node.id", self.node_id),
            ("--lease-ttl-ms", "lease.ttl.ms", self.lease_ttl_ms),
            ("--controlled-shutdown-timeout-ms", "controlled.shutdown.timeout.ms", self.controlled_shutdown_timeout_ms),
            ("--default-replication-factor", "default.replication.factor", self.default_replication_factor),
            ("--replica-lag-time-max-ms", "replica.lag.time.max.ms", self.replica_lag_time_max_ms),
            ("--replica-fetch-wait-max-ms", "replica.fetch.wait.max.ms", self.replica_fetch_wait_max_ms),
            ("--num-partitions", "num.partitions", self.num_partitions),
            ("--socket-request-max-bytes", "socket.request.max.bytes", self.socket_request_max_bytes),
            ("--retention-check-interval-ms", "log.retention.check.interval.ms", self.retention_check_interval_ms),
            (
                "--group-initial-rebalance-delay-ms",
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms,
            ),
            ("--group-max-size", "group.max.size", self.group_max_size),
            ("--offsets-retention-minutes", "offsets.retention.minutes", self.offsets_retention_minutes),
            ("--max-partitions", "max.partitions", self.max_partitions),
            ("--queued-max-request-bytes", "queued.max.request.bytes", self.queued_max_request_bytes),
            (
                "--queued-max-request-bytes-per-shard",
                "queued.max.request.bytes.per.shard",
                self.queued_max_request_bytes_per_shard,
            ),
            (
                "--queued-max-request-bytes-per-connection",
                "queued.max.request.bytes.per.connection",
                self.queued_max_request_bytes_per_connection,
            ),
            ("--connections-max-idle-ms", "connections.max.idle.ms", self.connections_max_idle_ms),
            ("--frame-timeout-ms", "frame.timeout.ms", self.frame_timeout_ms),
            ("--max-connections", "max.connections", self.max_connections),
            ("--max-connections-per-ip", "max.connections.per.ip", self.max_connections_per_ip),
            ("--log-limit-interval-ms", "logging.limit.interval.ms", self.log_limit_interval_ms),
        ] {
            if let Some(v) = v {
                out.push((flag, key, Value::Integer(v)));
            }
        }
        for (flag, key, given, value) in [
            ("--no-pin", "pin.shards", self.no_pin, false),
            ("--unclean-leader-election", "unclean.leader.election.enable", self.unclean_leader_election, true),
            ("--no-fsync-acks-all", "fsync.acks.all", self.no_fsync_acks_all, false),
        ] {
            if given {
                out.push((flag, key, Value::Boolean(value)));
            }
        }
        if !self.etcd.is_empty() {
            out.push((
                "--etcd",
                "etcd.endpoints",
                Value::Array(self.etcd.iter().cloned().map(Value::String).collect()),
            ));
        }
        if let Some(v) = self.auto_create_topics {
            out.push(("--auto-create-topics", "auto.create.topics.enable", Value::Boolean(v)));
        }
        out
    }

    /// `--topic-default KEY=VALUE` pairs as (key, value), the key as the
    /// broker key it stands for (`retention.ms` and `log.retention.ms` both
    /// → `log.retention.ms`).
    pub fn topic_default_overrides(&self) -> Result<Vec<(&'static str, Value)>, String> {
        let mut out = Vec::new();
        for pair in &self.topic_defaults {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not KEY=VALUE"))?;
            let (k, v) = (k.trim(), v.trim());
            let name = k.strip_prefix("log.").unwrap_or(k);
            let key = super::keys::broker_key_of_topic_config(name)
                .or_else(|| super::keys::TOPIC_DEFAULT_KEYS.iter().find(|(b, _)| *b == k).map(|(b, _)| *b))
                // The broker's own setting is the topics' default (as in Kafka).
                .or_else(|| (name == "unclean.leader.election.enable").then_some("unclean.leader.election.enable"))
                .ok_or_else(|| format!("'{k}' is not a topic config Laminar honours"))?;
            let value = match v {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => v.parse::<i64>().map(Value::Integer).unwrap_or_else(|_| Value::String(v.to_string())),
            };
            out.push((key, value));
        }
        Ok(out)
    }
}

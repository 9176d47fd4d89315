//! `laminar`: the broker. With no arguments it serves 127.0.0.1:9092 with data
//! under `./data`. See docs/operations.md for every flag.

mod api;
mod budget;
mod cluster;
mod conn_caps;
mod connection;
mod context;
mod errors;
mod etcd;
mod failpoints;
#[cfg(test)]
mod fuzz;
mod group;
mod log_limit;
mod partition_dirs;
mod placement;
mod producer_ids;
mod replication;
mod response;
mod router;
mod security;
mod server;
mod shard;
mod topic_config;
mod topic_name;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "laminar", version, about = "A Kafka-compatible log broker on io_uring, one shard per core")]
struct Args {
    /// Address to serve the Kafka protocol on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Where partition logs and metadata live.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Shard threads (default: one per CPU core).
    #[arg(long)]
    shards: Option<usize>,
    /// Don't pin shard threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// This broker's id in the cluster (unique among live brokers).
    #[arg(long, default_value_t = 1)]
    node_id: i32,
    /// etcd endpoints (`http://host:port`, comma-separated): join the cluster
    /// they coordinate. Without it the broker is a single node with its own
    /// embedded metadata store.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix of this cluster in etcd (several clusters can share one etcd).
    #[arg(long, default_value = "/laminar")]
    etcd_prefix: String,
    /// This broker's rack (replicas of a partition go to different racks).
    #[arg(long)]
    rack: Option<String>,
    /// Lease TTL: how long a broker that stops answering keeps its roles,
    /// and at most how long a broker cut off from etcd keeps acting.
    #[arg(long, default_value_t = 2000)]
    lease_ttl_ms: u64,
    /// `controlled.shutdown`: on SIGTERM, how long to wait for the controller
    /// to hand this broker's leaderships to in-sync replicas before stopping
    /// (0: stop at once; the lease's revocation then moves them).
    #[arg(long, default_value_t = 30000)]
    controlled_shutdown_timeout_ms: u64,
    /// `unclean.leader.election.enable`: elect an out-of-sync replica when no
    /// in-sync one is alive (loses the writes only the others had).
    #[arg(long)]
    unclean_leader_election: bool,
    /// `default.replication.factor` for auto-created topics and CreateTopics asking for -1.
    #[arg(long, default_value_t = 1)]
    default_replication_factor: i16,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves the ISR.
    #[arg(long, default_value_t = 30_000)]
    replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for new data.
    #[arg(long, default_value_t = 500)]
    replica_fetch_wait_max_ms: u64,
    /// host:port clients should connect to (default: the listen address).
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Acknowledge acks=all before fdatasync (faster, loses the last writes on power loss).
    #[arg(long)]
    no_fsync_acks_all: bool,
    /// `auto.create.topics.enable`
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics asking for the default.
    #[arg(long, default_value_t = 1)]
    num_partitions: i32,
    /// `socket.request.max.bytes`: larger requests close the connection.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    socket_request_max_bytes: usize,
    /// How often retention (retention.ms / retention.bytes) is checked.
    #[arg(long, default_value_t = 300_000)]
    retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members to join.
    #[arg(long, default_value_t = 3000)]
    group_initial_rebalance_delay_ms: u64,
    /// `group.max.size`: members one consumer group may have (JoinGroup past
    /// it gets GROUP_MAX_SIZE_REACHED).
    #[arg(long, default_value_t = group::state::MAX_MEMBERS_DEFAULT)]
    group_max_size: usize,
    /// `offsets.retention.minutes`: committed offsets of a group without
    /// members are deleted this long after its last member left or its last
    /// commit, whichever is later.
    #[arg(long, default_value_t = 10080)]
    offsets_retention_minutes: u64,
    /// Partition replicas this broker will hold at most (CreateTopics,
    /// CreatePartitions and auto-creation past it are refused). Default: as
    /// many as its open-file limit allows. About 7 KiB of memory each.
    #[arg(long)]
    max_partitions: Option<u32>,
    /// Broker-wide topic config default, e.g. `--topic-default retention.ms=3600000` (repeatable).
    #[arg(long = "topic-default", value_name = "KEY=VALUE")]
    topic_defaults: Vec<String>,
    /// `queued.max.request.bytes`: request bytes all connections together may
    /// hold; beyond it the broker stops reading sockets. Larger frames are refused.
    #[arg(long, default_value_t = budget::QUEUED_MAX_REQUEST_BYTES_DEFAULT)]
    queued_max_request_bytes: u64,
    /// Request bytes the connections of one shard may hold (default: half of
    /// --queued-max-request-bytes, at least one largest frame).
    #[arg(long)]
    queued_max_request_bytes_per_shard: Option<u64>,
    /// Request bytes one connection may hold (default: --socket-request-max-bytes).
    #[arg(long)]
    queued_max_request_bytes_per_connection: Option<u64>,
    /// `connections.max.idle.ms`: close connections with nothing in flight and nothing read for this long.
    #[arg(long, default_value_t = 600_000)]
    connections_max_idle_ms: u64,
    /// A request frame must arrive whole, and a response be taken whole, within this time.
    #[arg(long, default_value_t = 60_000)]
    frame_timeout_ms: u64,
    /// `max.connections`: open client connections (default 10000; lowered to
    /// fit the file descriptor limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// `max.connections.per.ip`: open client connections from one address.
    #[arg(long, default_value_t = conn_caps::MAX_CONNECTIONS_PER_IP_DEFAULT)]
    max_connections_per_ip: usize,
    /// Repeated log lines of one cause: at most 10 per window of this length, then a summary.
    #[arg(long, default_value_t = log_limit::INTERVAL_MS_DEFAULT)]
    log_limit_interval_ms: u64,
    /// Listeners, TLS, SASL, ACLs: `security/args.rs`.
    #[command(flatten)]
    security: security::args::SecurityArgs,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LAMINAR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    install_panic_hook();
    if let Err(e) = failpoints::init_from_env().and_then(|()| run(Args::parse())) {
        eprintln!("laminar: {e:#}");
        std::process::exit(1);
    }
}

/// A panic anywhere ends the process, loudly. Shards, the group ticker and
/// log writers are tasks whose panics tokio would catch and drop, leaving a
/// broker half alive: holding its lease and leadership of partitions and
/// groups it can no longer serve. Dead, its lease expires and others take
/// over. The hook runs before any unwinding, so nothing catches the panic
/// first (the engine's own writer guard included).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string panic payload>");
        // Captured only when RUST_BACKTRACE / RUST_LIB_BACKTRACE ask for it.
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(thread, %location, %backtrace, "panic: {message}; aborting");
        } else {
            tracing::error!(thread, %location, "panic: {message}; aborting (RUST_BACKTRACE=1 for a backtrace)");
        }
        // Plain stderr too: the panic may have come from inside the logger.
        eprintln!("laminar: thread '{thread}' panicked at {location}: {message}; aborting");
        std::process::abort();
    }));
}

fn run(args: Args) -> anyhow::Result<()> {
    let shards = args.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    anyhow::ensure!((1..=1024).contains(&shards), "--shards must be in [1, 1024]");
    anyhow::ensure!(args.num_partitions >= 1, "--num-partitions must be ≥ 1");
    anyhow::ensure!(args.group_max_size >= 1, "--group-max-size must be ≥ 1");
    anyhow::ensure!(args.offsets_retention_minutes >= 1, "--offsets-retention-minutes must be ≥ 1");
    let security = args.security.resolve(args.listen, args.advertised_listener.as_deref())?;
    anyhow::ensure!(args.node_id >= 0, "--node-id must be ≥ 0");
    anyhow::ensure!(args.lease_ttl_ms >= 1000, "--lease-ttl-ms must be ≥ 1000 (etcd's minimum TTL is about a second)");
    anyhow::ensure!(args.default_replication_factor >= 1, "--default-replication-factor must be ≥ 1");
    let frame_min = connection::FRAME_MIN_BYTES as u64;
    for (flag, bytes) in [
        ("--queued-max-request-bytes", Some(args.queued_max_request_bytes)),
        ("--queued-max-request-bytes-per-shard", args.queued_max_request_bytes_per_shard),
        ("--queued-max-request-bytes-per-connection", args.queued_max_request_bytes_per_connection),
    ] {
        anyhow::ensure!(bytes.is_none_or(|b| b >= frame_min), "{flag} must be ≥ {frame_min} (the smallest frame)");
    }
    anyhow::ensure!(args.max_connections != Some(0) && args.max_connections_per_ip >= 1, "connection caps must be ≥ 1");
    anyhow::ensure!(
        args.connections_max_idle_ms >= 1 && args.frame_timeout_ms >= 1 && args.log_limit_interval_ms >= 1,
        "timeouts and intervals must be ≥ 1 ms"
    );
    let config = context::BrokerConfig {
        node_id: args.node_id,
        // The inter-broker listener's, set once it is bound.
        advertised_host: String::new(),
        advertised_port: 0,
        cluster_id: String::new(),
        socket_request_max_bytes: args.socket_request_max_bytes,
        auto_create_topics: args.auto_create_topics,
        default_partitions: args.num_partitions,
        default_replication_factor: args.default_replication_factor,
        fsync_on_acks_all: !args.no_fsync_acks_all,
        topic_defaults: server::parse_topic_defaults(&args.topic_defaults)?,
        limits: context::ClientLimits {
            budgets: budget::BudgetConfig::new(
                args.queued_max_request_bytes,
                args.queued_max_request_bytes_per_shard,
                args.queued_max_request_bytes_per_connection,
                args.socket_request_max_bytes as u64,
            ),
            connections_max_idle: Duration::from_millis(args.connections_max_idle_ms),
            frame_timeout: Duration::from_millis(args.frame_timeout_ms),
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
        },
    };
    let store = if args.etcd.is_empty() {
        server::StoreChoice::Embedded
    } else {
        server::StoreChoice::Etcd { endpoints: args.etcd.clone(), prefix: args.etcd_prefix.clone() }
    };
    let cluster = cluster::ClusterConfig {
        node_id: args.node_id,
        rack: args.rack.clone(),
        lease_ttl: Duration::from_millis(args.lease_ttl_ms),
        unclean_leader_election: args.unclean_leader_election,
        startup_wait: Duration::from_millis(args.lease_ttl_ms * 3),
        controlled_shutdown: Duration::from_millis(args.controlled_shutdown_timeout_ms),
    };
    let replication = replication::ReplicationConfig {
        replica_lag_time_max: Duration::from_millis(args.replica_lag_time_max_ms),
        fetch_wait_max: Duration::from_millis(args.replica_fetch_wait_max_ms),
        // Durable acks=all means on disk on every in-sync replica.
        fsync_followers: !args.no_fsync_acks_all,
        ..Default::default()
    };
    server::run(server::ServerOptions {
        security,
        data_dir: args.data_dir,
        shards,
        pin: !args.no_pin,
        retention_check_interval: Duration::from_millis(args.retention_check_interval_ms),
        max_partitions: args.max_partitions,
        group_timing: group::state::GroupTiming {
            initial_rebalance_delay: Duration::from_millis(args.group_initial_rebalance_delay_ms),
            max_members: args.group_max_size,
            offsets_retention: Duration::from_secs(args.offsets_retention_minutes.saturating_mul(60)),
            ..Default::default()
        },
        config,
        store,
        cluster,
        replication,
        log_limit_interval: Duration::from_millis(args.log_limit_interval_ms),
    })
}

//! laminarctl: the operator's tool for Laminar. Cluster state comes from
//! etcd (the source of truth, readable with every broker down); what the
//! brokers own (topics, offsets, groups, reassignments) goes through the
//! Kafka admin API, so those commands work against a single node too.
//!
//! Layout: `main.rs` flags and dispatch; `ctx.rs` connections; `store.rs`
//! (etcd, or a stopped single node's embedded store) and `kafka.rs` the two
//! ways in; `snapshot.rs` who holds and leads what, from either; one file
//! per command family (`status`, `topic`, `group`, `leader`, `reassign`,
//! `metadata`); `output.rs` tables and JSON; `error.rs` messages and exit
//! statuses; `time.rs` timestamps.

mod ctx;
mod error;
mod group;
mod kafka;
mod leader;
mod metadata;
mod output;
mod reassign;
mod snapshot;
mod status;
mod store;
mod time;
mod topic;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::ctx::{Ctx, Globals};
use crate::error::Result;
use crate::output::{Format, Report};

/// Where the Kafka-protocol commands go without --bootstrap-server or --etcd.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Parser, Debug)]
#[command(
    name = "laminarctl",
    version,
    about = "Operate a Laminar cluster: status from etcd, topics, groups, leaders, reassignments, metadata backups",
    after_help = "Exit status: 0 ok, 1 failed or refused, 2 bad usage, 3 etcd or brokers unreachable, \
                  4 not found, 5 the checked condition does not hold."
)]
struct Cli {
    /// etcd endpoints of the cluster (`http://host:port`, comma-separated).
    #[arg(long, global = true, help_heading = "Global options", value_delimiter = ',', value_name = "URLS")]
    etcd: Vec<String>,
    /// The cluster's key prefix in etcd (the brokers' --etcd-prefix; default
    /// /laminar, none in a single node's embedded store).
    #[arg(long, global = true, help_heading = "Global options", value_name = "PREFIX")]
    etcd_prefix: Option<String>,
    /// A stopped single node's data directory (its --data-dir): commands
    /// that read the cluster's records read its embedded store instead of etcd.
    #[arg(long, global = true, help_heading = "Global options", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A broker to talk the Kafka protocol to (`host:port`, comma-separated
    /// for several); found in etcd when only --etcd is given; 127.0.0.1:9092
    /// when neither is.
    #[arg(long, global = true, help_heading = "Global options", value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Aligned tables for people, or one JSON document for scripts.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Longest wait for one answer from etcd or a broker.
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 10_000, value_name = "MS")]
    request_timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Topics: create, list, describe, delete, configs, partitions.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Consumer groups: list, describe (lag), reset offsets, delete.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Partition leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// Moving partition replicas between brokers.
    #[command(subcommand)]
    Partition(PartitionCmd),
    /// Brokers.
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// Laminar's keys in etcd (or a stopped single node's store): backup, restore, consistency check.
    #[command(subcommand)]
    Metadata(MetadataCmd),
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Brokers (lease state, listener, shards), controller and epoch,
    /// leaders and replicas per broker and shard, under-replicated and
    /// offline partitions. From etcd with --etcd (works with every broker
    /// down); from Metadata with only --bootstrap-server.
    Status,
}

#[derive(Subcommand, Debug)]
enum TopicCmd {
    /// Creates a topic.
    Create(topic::CreateArgs),
    /// Lists topics with their partition count and replication factor.
    List,
    /// Per partition: leader, leader epoch, replicas, ISR, log start offset,
    /// high watermark, size on disk (every topic when none is named).
    Describe {
        /// Topics to describe.
        topics: Vec<String>,
    },
    /// Deletes topics.
    Delete {
        /// Topics to delete.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Sets or removes topic configs (IncrementalAlterConfigs).
    AlterConfig(topic::AlterConfigArgs),
    /// Raises a topic's partition count.
    AddPartitions {
        /// The topic.
        topic: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: i32,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCmd {
    /// Lists consumer groups and their states.
    List,
    /// Members and their assignment; per partition the committed offset,
    /// the end offset and the lag.
    Describe {
        /// The group id.
        group: String,
    },
    /// Moves a group's committed offsets (only while the group has no
    /// active members). Shows the plan unless --execute.
    ResetOffsets(group::ResetArgs),
    /// Deletes groups (their committed offsets); refused while active.
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum LeaderCmd {
    /// Moves leadership to preferred replicas, then evens leaders out across
    /// brokers and across the shards (cores) of each broker. Shows the
    /// per-shard balance before and after; writes only with --execute.
    Rebalance(leader::RebalanceArgs),
}

#[derive(Subcommand, Debug)]
enum PartitionCmd {
    /// Partition reassignment (KIP-455): plan, execute, verify, cancel, list.
    #[command(subcommand)]
    Reassign(ReassignCmd),
}

#[derive(Subcommand, Debug)]
enum ReassignCmd {
    /// Proposes a balanced placement of the topics' replicas on the given
    /// brokers, moving as few replicas as it can (Kafka's reassignment JSON).
    Plan(reassign::PlanArgs),
    /// Starts the moves in a reassignment JSON file.
    Execute(reassign::ExecuteArgs),
    /// Whether each move of the file has completed (exit 5 while not).
    Verify {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Cancels the moves of the file still in progress.
    Cancel {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Lists reassignments in progress.
    List,
}

#[derive(Subcommand, Debug)]
enum BrokerCmd {
    /// Moves every replica off a broker and waits until nothing is
    /// under-replicated; then it can be stopped. Shows the plan unless --execute.
    Decommission(reassign::DecommissionArgs),
}

#[derive(Subcommand, Debug)]
enum MetadataCmd {
    /// Writes a versioned JSON snapshot of every key under the prefix.
    Export {
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Restores a snapshot under the prefix (refused into a non-empty
    /// prefix unless --force, and always while brokers are registered).
    Import {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Replace whatever the prefix holds.
        #[arg(long)]
        force: bool,
    },
    /// Checks invariants: every partition has a live leader in its ISR,
    /// replicas on live brokers, no orphan or unreadable keys.
    Check,
}

/// Shared by commands that change things: show the plan, or do it.
#[derive(Args, Debug, Clone, Copy)]
#[command(group(ArgGroup::new("mode").args(["dry_run", "execute"])))]
pub struct Mode {
    /// Show what would change (the default).
    #[arg(long)]
    pub dry_run: bool,
    /// Make the change.
    #[arg(long)]
    pub execute: bool,
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<Report> {
    match command {
        Command::Cluster(ClusterCmd::Status) => status::run(ctx).await,
        Command::Topic(c) => match c {
            TopicCmd::Create(a) => topic::create(ctx, a).await,
            TopicCmd::List => topic::list(ctx).await,
            TopicCmd::Describe { topics } => topic::describe(ctx, &topics).await,
            TopicCmd::Delete { topics } => topic::delete(ctx, &topics).await,
            TopicCmd::AlterConfig(a) => topic::alter_config(ctx, a).await,
            TopicCmd::AddPartitions { topic, partitions } => topic::add_partitions(ctx, &topic, partitions).await,
        },
        Command::Group(c) => match c {
            GroupCmd::List => group::list(ctx).await,
            GroupCmd::Describe { group } => group::describe(ctx, &group).await,
            GroupCmd::ResetOffsets(a) => group::reset_offsets(ctx, a).await,
            GroupCmd::Delete { groups } => group::delete(ctx, &groups).await,
        },
        Command::Leader(LeaderCmd::Rebalance(a)) => leader::rebalance(ctx, a).await,
        Command::Partition(PartitionCmd::Reassign(c)) => match c {
            ReassignCmd::Plan(a) => reassign::plan(ctx, a).await,
            ReassignCmd::Execute(a) => reassign::execute(ctx, a).await,
            ReassignCmd::Verify { file } => reassign::verify(ctx, &file).await,
            ReassignCmd::Cancel { file } => reassign::cancel(ctx, &file).await,
            ReassignCmd::List => reassign::list(ctx).await,
        },
        Command::Broker(BrokerCmd::Decommission(a)) => reassign::decommission(ctx, a).await,
        Command::Metadata(c) => match c {
            MetadataCmd::Export { out } => metadata::export(ctx, out.as_deref()).await,
            MetadataCmd::Import { file, force } => metadata::import(ctx, &file, force).await,
            MetadataCmd::Check => metadata::check(ctx).await,
        },
    }
}

fn main() {
    // A bug should still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("laminarctl: internal error (a bug; please report it): {info}");
        std::process::exit(1);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0; parse errors 2, with clap's message.
        Err(e) => e.exit(),
    };
    let globals = Globals {
        etcd: cli.etcd.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        etcd_prefix: cli.etcd_prefix.clone(),
        data_dir: cli.data_dir.clone(),
        bootstrap: cli.bootstrap_server.clone().filter(|s| !s.trim().is_empty()),
        output: cli.output,
        request_timeout_ms: cli.request_timeout_ms.max(1),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("laminarctl: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let format = globals.output;
    let ctx = Ctx::new(globals);
    let outcome = runtime.block_on(dispatch(&ctx, cli.command));
    let code = finish(outcome, format);
    // The etcd client's thread and the broker connections end with the process.
    std::process::exit(code);
}

/// Prints the report (stdout) and any error (stderr); says the exit
/// status. A report can carry a failure of its own: a command that printed
/// what it found and then failed its check (`metadata check`, `reassign verify`).
fn finish(outcome: Result<Report>, format: Format) -> i32 {
    match outcome {
        Ok(report) => {
            print!("{}", report.render(format));
            match report.failure {
                Some(e) => {
                    eprintln!("laminarctl: {}", e.message);
                    e.code()
                }
                None => 0,
            }
        }
        Err(e) => {
            eprintln!("laminarctl: {}", e.message);
            e.code()
        }
    }
}

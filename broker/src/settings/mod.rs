//! The broker's configuration: defaults, then a TOML file (`--config`), then
//! flags, each later source overriding the earlier. Keys carry Kafka's
//! property names where Kafka has one (`listeners`, `log.dirs`,
//! `num.partitions`, `log.retention.ms`, …) and Laminar's own otherwise
//! (`num.shards`, `etcd.endpoints`, `metrics.listen`). Every key, its type,
//! range and default is in one table (`keys.rs`); the file and the flags both
//! go through it, so a value is checked the same way wherever it comes from,
//! and an unknown key, a wrong type or a value out of range stops the broker
//! at start with the key, the value and the reason.
//!
//! `laminar --print-config` prints the effective configuration in the file's
//! own format; fed back with `--config` it gives the same configuration.

mod flags;
mod keys;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use flags::Flags;
pub use keys::KEYS;
use toml::Value;

use crate::{budget, conn_caps, context, group, log_limit, replication, server};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// The effective configuration. Field names follow their keys (`keys.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub node_id: i32,
    pub listeners: SocketAddr,
    /// `host:port`, checked.
    pub advertised_listeners: Option<String>,
    pub log_dirs: PathBuf,
    pub num_shards: Option<usize>,
    pub pin_shards: bool,
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: String,
    pub broker_rack: Option<String>,
    pub lease_ttl_ms: u64,
    pub controlled_shutdown_timeout_ms: u64,
    pub unclean_leader_election_enable: bool,
    pub default_replication_factor: i16,
    pub replica_lag_time_max_ms: u64,
    pub replica_fetch_wait_max_ms: u64,
    pub fsync_acks_all: bool,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: u64,
    pub log_retention_check_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_max_size: usize,
    pub offsets_retention_minutes: u64,
    pub max_partitions: Option<u32>,
    /// Broker-wide topic config defaults, by topic config name
    /// (`retention.ms`), set through Kafka's broker keys (`log.retention.ms`).
    pub topic_defaults: BTreeMap<String, String>,
    pub queued_max_request_bytes: u64,
    pub queued_max_request_bytes_per_shard: Option<u64>,
    pub queued_max_request_bytes_per_connection: Option<u64>,
    pub connections_max_idle_ms: u64,
    pub frame_timeout_ms: u64,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: usize,
    pub logging_limit_interval_ms: u64,
    pub logging_format: LogFormat,
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_id: 1,
            listeners: "127.0.0.1:9092".parse().expect("a valid address"),
            advertised_listeners: None,
            log_dirs: PathBuf::from("./data"),
            num_shards: None,
            pin_shards: true,
            etcd_endpoints: Vec::new(),
            etcd_prefix: "/laminar".into(),
            broker_rack: None,
            lease_ttl_ms: 2000,
            controlled_shutdown_timeout_ms: 30_000,
            unclean_leader_election_enable: false,
            default_replication_factor: 1,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            fsync_acks_all: true,
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            log_retention_check_interval_ms: 300_000,
            group_initial_rebalance_delay_ms: 3000,
            group_max_size: group::state::MAX_MEMBERS_DEFAULT,
            offsets_retention_minutes: 10080,
            max_partitions: None,
            topic_defaults: BTreeMap::new(),
            queued_max_request_bytes: budget::QUEUED_MAX_REQUEST_BYTES_DEFAULT,
            queued_max_request_bytes_per_shard: None,
            queued_max_request_bytes_per_connection: None,
            connections_max_idle_ms: 600_000,
            frame_timeout_ms: 60_000,
            max_connections: None,
            max_connections_per_ip: conn_caps::MAX_CONNECTIONS_PER_IP_DEFAULT,
            logging_limit_interval_ms: log_limit::INTERVAL_MS_DEFAULT,
            logging_format: LogFormat::Text,
            metrics_listen: None,
        }
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A refused configuration: which key, which value, from where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({origin}): {what}")]
pub struct SettingsError {
    pub origin: Source,
    /// `key = value: reason`, or a message about the file as a whole.
    pub what: String,
}

impl SettingsError {
    fn new(source: &Source, what: impl Into<String>) -> Self {
        SettingsError { origin: source.clone(), what: what.into() }
    }
}

impl Settings {
    /// Defaults, then the file `flags.config` names (if any), then the flags.
    pub fn load(flags: &Flags) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        if let Some(path) = &flags.config {
            let source = Source::File(path.clone());
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError::new(&source, format!("cannot read the file: {e}")))?;
            s.apply_toml(&text, &source)?;
        }
        for (flag, key, value) in flags.overrides() {
            s.apply(&Source::Flag(flag), key, &value)?;
        }
        let source = Source::Flag("--topic-default");
        for (key, value) in flags.topic_default_overrides().map_err(|e| SettingsError::new(&source, e))? {
            s.apply(&source, key, &value)?;
        }
        s.check_whole(&Source::Flag("(all sources)"))?;
        Ok(s)
    }

    /// Applies a TOML document: every key known, of the right type, in range.
    pub fn apply_toml(&mut self, text: &str, source: &Source) -> Result<(), SettingsError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let mut msg = format!("not valid TOML: {}", e.message());
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                msg = format!("line {line}: {msg}");
            }
            if msg.contains("duplicate key") || msg.contains("dotted key") {
                // `max.connections = 1` makes `max.connections` a value, so
                // `max.connections.per.ip` cannot also be a dotted key.
                msg.push_str(" (a key that extends another, e.g. \"max.connections.per.ip\", must be quoted)");
            }
            SettingsError::new(source, msg)
        })?;
        let mut flat = Vec::new();
        flatten("", &Value::Table(table), &mut flat);
        let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
        for (key, value) in &flat {
            let def = keys::find(key).ok_or_else(|| {
                let hint = keys::closest(key).map(|k| format!(" (did you mean '{k}'?)")).unwrap_or_default();
                SettingsError::new(source, format!("unknown key '{key}'{hint}"))
            })?;
            // `broker.id` and `node.id`, or `log.retention.hours` and
            // `log.retention.ms`, in one file: which one wins would be a guess.
            if let Some(other) = seen.insert(def.group, key.clone()) {
                return Err(SettingsError::new(
                    source,
                    format!("'{other}' and '{key}' both set the same thing: keep one"),
                ));
            }
            self.apply(source, key, value)?;
        }
        Ok(())
    }

    /// Sets one key (or alias) from a value, checking type and range.
    pub fn apply(&mut self, source: &Source, key: &str, value: &Value) -> Result<(), SettingsError> {
        let def = keys::find(key).ok_or_else(|| SettingsError::new(source, format!("unknown key '{key}'")))?;
        (def.set)(self, value).map_err(|reason| SettingsError::new(source, format!("{key} = {value}: {reason}")))
    }

    /// Checks that need several keys at once.
    fn check_whole(&self, source: &Source) -> Result<(), SettingsError> {
        crate::topic_config::log_config(&BTreeMap::new(), &self.topic_defaults)
            .map_err(|e| SettingsError::new(source, format!("topic defaults: {e}")))?;
        Ok(())
    }

    /// The configuration as a TOML document that `--config` reads back to
    /// the same settings. Keys that are unset (their default is computed at
    /// start, e.g. `num.shards`) are comments saying what applies.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# laminar's effective configuration (laminar --print-config).\n\
             # Keys are quoted: some extend others (max.connections, max.connections.per.ip).\n",
        );
        for def in KEYS {
            if def.unset.is_empty() && (def.get)(self).is_none() {
                continue; // A spelling of another key (log.retention.hours).
            }
            let name = toml_key(def.name);
            match (def.get)(self) {
                Some(v) => out.push_str(&format!("{name} = {v}\n")),
                None => match keys::TOPIC_DEFAULT_KEYS.iter().find(|(k, _)| *k == def.name) {
                    Some((_, topic)) => out.push_str(&format!(
                        "# {name} is unset: topics default to {topic} = {}\n",
                        crate::topic_config::default_of(topic).unwrap_or("?")
                    )),
                    None => out.push_str(&format!("# {name} is unset: {}\n", def.unset)),
                },
            }
        }
        out
    }

    /// What `server::run` takes.
    pub fn server_options(
        &self,
        security: &crate::security::args::SecurityArgs,
    ) -> anyhow::Result<server::ServerOptions> {
        let shards = self.num_shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if let Some(l) = &self.advertised_listeners {
            keys::host_port(l).map_err(|e| anyhow::anyhow!("advertised.listeners: {e}"))?;
        }
        let security = security.resolve(self.listeners, self.advertised_listeners.as_deref())?;
        let config = context::BrokerConfig {
            node_id: self.node_id,
            // The inter-broker listener's, set once it is bound.
            advertised_host: String::new(),
            advertised_port: 0,
            cluster_id: String::new(),
            socket_request_max_bytes: self.socket_request_max_bytes as usize,
            auto_create_topics: self.auto_create_topics_enable,
            default_partitions: self.num_partitions,
            default_replication_factor: self.default_replication_factor,
            fsync_on_acks_all: self.fsync_acks_all,
            topic_defaults: self.topic_defaults.clone(),
            limits: context::ClientLimits {
                budgets: budget::BudgetConfig::new(
                    self.queued_max_request_bytes,
                    self.queued_max_request_bytes_per_shard,
                    self.queued_max_request_bytes_per_connection,
                    self.socket_request_max_bytes,
                ),
                connections_max_idle: Duration::from_millis(self.connections_max_idle_ms),
                frame_timeout: Duration::from_millis(self.frame_timeout_ms),
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
            },
        };
        let store = if self.etcd_endpoints.is_empty() {
            server::StoreChoice::Embedded
        } else {
            server::StoreChoice::Etcd { endpoints: self.etcd_endpoints.clone(), prefix: self.etcd_prefix.clone() }
        };
        let cluster = crate::cluster::ClusterConfig {
            node_id: self.node_id,
            rack: self.broker_rack.clone(),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            unclean_leader_election: self.unclean_leader_election_enable,
            startup_wait: Duration::from_millis(self.lease_ttl_ms * 3),
            controlled_shutdown: Duration::from_millis(self.controlled_shutdown_timeout_ms),
        };
        let replication = replication::ReplicationConfig {
            replica_lag_time_max: Duration::from_millis(self.replica_lag_time_max_ms),
            fetch_wait_max: Duration::from_millis(self.replica_fetch_wait_max_ms),
            // Durable acks=all means on disk on every in-sync replica.
            fsync_followers: self.fsync_acks_all,
            ..Default::default()
        };
        Ok(server::ServerOptions {
            security,
            data_dir: self.log_dirs.clone(),
            shards,
            pin: self.pin_shards,
            retention_check_interval: Duration::from_millis(self.log_retention_check_interval_ms),
            max_partitions: self.max_partitions,
            group_timing: group::state::GroupTiming {
                initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
                max_members: self.group_max_size,
                offsets_retention: Duration::from_secs(self.offsets_retention_minutes.saturating_mul(60)),
                ..Default::default()
            },
            config,
            store,
            cluster,
            replication,
            log_limit_interval: Duration::from_millis(self.logging_limit_interval_ms),
            metrics_listen: self.metrics_listen,
        })
    }
}

/// Nested tables (`[log]` + `dirs = …`, or the dotted key `log.dirs = …`,
/// which TOML reads as a table) back to Kafka's flat dotted names.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        v => out.push((prefix.to_string(), v.clone())),
    }
}

fn toml_key(name: &str) -> String {
    format!("\"{name}\"")
}

/// Reads a configuration file the way `--config` does (for tests and tools).
#[cfg(test)]
pub fn from_file(path: &std::path::Path) -> Result<Settings, SettingsError> {
    let mut s = Settings::default();
    let text =
        std::fs::read_to_string(path).map_err(|e| SettingsError::new(&Source::File(path.into()), e.to_string()))?;
    s.apply_toml(&text, &Source::File(path.into()))?;
    s.check_whole(&Source::File(path.into()))?;
    Ok(s)
}

#[cfg(test)]
mod tests;

//! Every configuration key: its name (Kafka's where Kafka has one), how a
//! value is checked and stored, and how it is printed back. Flags and the
//! file both go through `set`, so the checks live here only.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Value;

use super::{LogFormat, Settings};

pub struct Key {
    pub name: &'static str,
    /// Keys that set the same thing (`broker.id` for `node.id`): a file may
    /// hold only one key of a group.
    pub group: &'static str,
    /// What applies while unset (`get` gives `None`); empty for a key that
    /// is another's spelling and is never printed (`log.retention.hours`).
    pub unset: &'static str,
    pub set: fn(&mut Settings, &Value) -> Result<(), String>,
    pub get: fn(&Settings) -> Option<Value>,
}

pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The known key nearest to a misspelt one, if any is near.
pub fn closest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(name, k.name), k.name))
        .filter(|&(d, k)| d <= 3.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_integer().ok_or_else(|| format!("expected an integer, got {}", type_name(v)))
}

/// An integer in `[lo, hi]`, converted to the field's type.
fn ranged<T: TryFrom<i64>>(v: &Value, lo: i64, hi: i64) -> Result<T, String> {
    let n = int(v)?;
    if n < lo || n > hi {
        // A bound that is only the type's is not worth reading.
        let open_ended = n < lo && hi >= i32::MAX as i64;
        return Err(if open_ended { format!("must be ≥ {lo}") } else { format!("must be in [{lo}, {hi}]") });
    }
    T::try_from(n).map_err(|_| "out of range".to_string())
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("expected true or false, got {}", type_name(v)))
}

fn string(v: &Value) -> Result<String, String> {
    v.as_str().map(str::to_string).ok_or_else(|| format!("expected a string, got {}", type_name(v)))
}

fn non_empty(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s)
}

/// `host:port` as Kafka's listeners take it: `PLAINTEXT://host:port` or plain.
fn listener(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    let mut parts: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.len() != 1 {
        return Err("exactly one listener (Laminar serves one PLAINTEXT listener)".into());
    }
    let one = parts.remove(0);
    let addr = match one.split_once("://") {
        Some((proto, rest)) if proto.eq_ignore_ascii_case("PLAINTEXT") => rest,
        Some((proto, _)) => return Err(format!("security protocol {proto} is not supported (only PLAINTEXT)")),
        None => one,
    };
    host_port(addr)?;
    Ok(addr.to_string())
}

/// Splits and checks `host:port` (`[::1]:9092` for IPv6).
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (h, p) = s.rsplit_once(':').ok_or_else(|| format!("'{s}' is not host:port"))?;
    let port: u16 = p.parse().map_err(|_| format!("'{p}' is not a port"))?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{s}' has no host"));
    }
    Ok((host.to_string(), port))
}

fn socket_addr(v: &Value) -> Result<SocketAddr, String> {
    let s = listener(v)?;
    s.parse().map_err(|_| format!("'{s}' is not an IP address and port (a name cannot be bound)"))
}

/// A list as an array of strings or a comma-separated string (Kafka's form).
fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let items: Vec<String> = match v {
        Value::Array(a) => a.iter().map(string).collect::<Result<_, _>>()?,
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
        other => return Err(format!("expected an array of strings, got {}", type_name(other))),
    };
    Ok(items)
}

fn int_val(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

/// A topic config default set through its Kafka broker key, checked with the
/// topic config's own rules (`topic_config.rs`).
fn topic_default(s: &mut Settings, name: &str, value: String) -> Result<(), String> {
    let mut one = std::collections::BTreeMap::new();
    one.insert(name.to_string(), value.clone());
    crate::topic_config::log_config(&std::collections::BTreeMap::new(), &one)?;
    crate::topic_config::min_insync_replicas(&std::collections::BTreeMap::new(), &one)?;
    s.topic_defaults.insert(name.to_string(), value);
    Ok(())
}

fn topic_default_int(s: &mut Settings, name: &str, v: &Value) -> Result<(), String> {
    topic_default(s, name, int(v)?.to_string())
}

fn get_topic_default(s: &Settings, name: &str) -> Option<Value> {
    let v = s.topic_defaults.get(name)?;
    Some(v.parse::<i64>().map(Value::Integer).unwrap_or_else(|_| Value::String(v.clone())))
}

/// `log.retention.hours` etc.: Kafka's coarser spellings, stored in ms.
fn scaled_ms(s: &mut Settings, name: &str, v: &Value, unit_ms: i64) -> Result<(), String> {
    let n = int(v)?;
    let ms = if n < 0 { -1 } else { n.checked_mul(unit_ms).ok_or("too large")? };
    topic_default(s, name, ms.to_string())
}

/// The broker key → topic config name of every topic default Kafka's broker
/// configuration has (docs/operations.md, "Configuration").
pub const TOPIC_DEFAULT_KEYS: &[(&str, &str)] = &[
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
];

/// The broker key of a topic config (`retention.ms` → `log.retention.ms`),
/// for `--topic-default`.
pub fn broker_key_of_topic_config(name: &str) -> Option<&'static str> {
    TOPIC_DEFAULT_KEYS.iter().find(|(_, t)| *t == name).map(|(k, _)| *k)
}

const U64_MAX: i64 = i64::MAX;

macro_rules! key {
    ($name:literal, $unset:literal, $set:expr, $get:expr) => {
        Key { name: $name, group: $name, unset: $unset, set: $set, get: $get }
    };
    ($name:literal as $group:literal, $unset:literal, $set:expr, $get:expr) => {
        Key { name: $name, group: $group, unset: $unset, set: $set, get: $get }
    };
}

macro_rules! topic_key {
    ($name:literal, $topic:literal) => {
        key!($name, "the topic config's default", |s, v| topic_default_int(s, $topic, v), |s| get_topic_default(
            s, $topic
        ))
    };
}

/// Every key, in the order `--print-config` prints them.
pub static KEYS: &[Key] = &[
    // Identity and addresses.
    key!(
        "node.id",
        "",
        |s, v| {
            s.node_id = ranged(v, 0, i32::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.node_id))
    ),
    key!("broker.id" as "node.id", "", |s, v| { s.node_id = ranged(v, 0, i32::MAX as i64)?; Ok(()) }, |_| None),
    key!(
        "listeners",
        "",
        |s, v| {
            s.listeners = socket_addr(v)?;
            Ok(())
        },
        |s| Some(Value::String(s.listeners.to_string()))
    ),
    key!(
        "advertised.listeners",
        "the listen address",
        |s, v| {
            s.advertised_listeners = Some(listener(v)?);
            Ok(())
        },
        |s| s.advertised_listeners.clone().map(Value::String)
    ),
    key!(
        "log.dirs",
        "",
        |s, v| {
            let dirs = string_list(v)?;
            if dirs.len() != 1 {
                return Err("exactly one directory (Laminar keeps all partitions in one)".into());
            }
            {
                s.log_dirs = PathBuf::from(&dirs[0]);
                Ok(())
            }
        },
        |s| Some(Value::String(s.log_dirs.display().to_string()))
    ),
    key!("log.dir" as "log.dirs", "", |s, v| { s.log_dirs = PathBuf::from(non_empty(v)?); Ok(()) }, |_| None),
    key!(
        "broker.rack",
        "no rack",
        |s, v| {
            s.broker_rack = Some(non_empty(v)?);
            Ok(())
        },
        |s| s.broker_rack.clone().map(Value::String)
    ),
    // Shards.
    key!(
        "num.shards",
        "one shard per CPU core",
        |s, v| {
            s.num_shards = Some(ranged(v, 1, 1024)?);
            Ok(())
        },
        |s| s.num_shards.map(int_val)
    ),
    key!(
        "pin.shards",
        "",
        |s, v| {
            s.pin_shards = boolean(v)?;
            Ok(())
        },
        |s| Some(Value::Boolean(s.pin_shards))
    ),
    // Cluster.
    key!(
        "etcd.endpoints",
        "",
        |s, v| {
            s.etcd_endpoints = string_list(v)?;
            Ok(())
        },
        |s| Some(Value::Array(s.etcd_endpoints.iter().cloned().map(Value::String).collect()))
    ),
    key!(
        "etcd.prefix",
        "",
        |s, v| {
            let p = non_empty(v)?;
            if !p.starts_with('/') {
                return Err("must start with '/'".into());
            }
            {
                s.etcd_prefix = p;
                Ok(())
            }
        },
        |s| Some(Value::String(s.etcd_prefix.clone()))
    ),
    key!(
        "lease.ttl.ms",
        "",
        |s, v| {
            s.lease_ttl_ms =
                ranged(v, 1000, 3_600_000).map_err(|e| format!("{e} (etcd's shortest TTL is about a second)"))?;
            Ok(())
        },
        |s| Some(int_val(s.lease_ttl_ms))
    ),
    key!(
        "controlled.shutdown.timeout.ms",
        "",
        |s, v| {
            s.controlled_shutdown_timeout_ms = ranged(v, 0, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.controlled_shutdown_timeout_ms))
    ),
    key!(
        "unclean.leader.election.enable",
        "",
        |s, v| {
            s.unclean_leader_election_enable = boolean(v)?;
            Ok(())
        },
        |s| Some(Value::Boolean(s.unclean_leader_election_enable))
    ),
    key!(
        "default.replication.factor",
        "",
        |s, v| {
            s.default_replication_factor = ranged(v, 1, i16::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.default_replication_factor))
    ),
    key!(
        "replica.lag.time.max.ms",
        "",
        |s, v| {
            s.replica_lag_time_max_ms = ranged(v, 1, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.replica_lag_time_max_ms))
    ),
    key!(
        "replica.fetch.wait.max.ms",
        "",
        |s, v| {
            s.replica_fetch_wait_max_ms = ranged(v, 0, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.replica_fetch_wait_max_ms))
    ),
    key!(
        "fsync.acks.all",
        "",
        |s, v| {
            s.fsync_acks_all = boolean(v)?;
            Ok(())
        },
        |s| Some(Value::Boolean(s.fsync_acks_all))
    ),
    // Topics.
    key!(
        "auto.create.topics.enable",
        "",
        |s, v| {
            s.auto_create_topics_enable = boolean(v)?;
            Ok(())
        },
        |s| Some(Value::Boolean(s.auto_create_topics_enable))
    ),
    key!(
        "num.partitions",
        "",
        |s, v| {
            s.num_partitions = ranged(v, 1, i32::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.num_partitions))
    ),
    key!(
        "max.partitions",
        "as many as the open-file limit allows",
        |s, v| {
            s.max_partitions = Some(ranged(v, 0, u32::MAX as i64)?);
            Ok(())
        },
        |s| s.max_partitions.map(int_val)
    ),
    key!(
        "log.retention.check.interval.ms",
        "",
        |s, v| {
            s.log_retention_check_interval_ms = ranged(v, 1, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.log_retention_check_interval_ms))
    ),
    key!(
        "log.cleanup.policy",
        "the topic config's default",
        |s, v| topic_default(s, "cleanup.policy", string(v)?),
        |s| get_topic_default(s, "cleanup.policy")
    ),
    topic_key!("log.retention.ms", "retention.ms"),
    key!("log.retention.minutes" as "log.retention.ms", "", |s, v| scaled_ms(s, "retention.ms", v, 60_000), |_| None),
    key!("log.retention.hours" as "log.retention.ms", "", |s, v| scaled_ms(s, "retention.ms", v, 3_600_000), |_| None),
    topic_key!("log.retention.bytes", "retention.bytes"),
    topic_key!("log.segment.bytes", "segment.bytes"),
    topic_key!("log.roll.ms", "segment.ms"),
    key!("log.roll.hours" as "log.roll.ms", "", |s, v| scaled_ms(s, "segment.ms", v, 3_600_000), |_| None),
    topic_key!("message.max.bytes", "max.message.bytes"),
    topic_key!("log.flush.interval.messages", "flush.messages"),
    topic_key!("log.flush.interval.ms", "flush.ms"),
    topic_key!("log.index.interval.bytes", "index.interval.bytes"),
    topic_key!("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    topic_key!("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    topic_key!("min.insync.replicas", "min.insync.replicas"),
    // Consumer groups.
    key!(
        "group.initial.rebalance.delay.ms",
        "",
        |s, v| {
            s.group_initial_rebalance_delay_ms = ranged(v, 0, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.group_initial_rebalance_delay_ms))
    ),
    key!(
        "group.max.size",
        "",
        |s, v| {
            s.group_max_size = ranged(v, 1, i32::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.group_max_size))
    ),
    key!(
        "offsets.retention.minutes",
        "",
        |s, v| {
            s.offsets_retention_minutes = ranged(v, 1, U64_MAX / 60_000)?;
            Ok(())
        },
        |s| Some(int_val(s.offsets_retention_minutes))
    ),
    // Client limits (docs/operations.md, "Limits").
    key!(
        "socket.request.max.bytes",
        "",
        |s, v| {
            s.socket_request_max_bytes = ranged(v, FRAME_MIN, i32::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.socket_request_max_bytes))
    ),
    key!(
        "queued.max.request.bytes",
        "",
        |s, v| {
            s.queued_max_request_bytes = ranged(v, FRAME_MIN, U64_MAX)?;
            Ok(())
        },
        |s| { Some(int_val(s.queued_max_request_bytes)) }
    ),
    key!(
        "queued.max.request.bytes.per.shard",
        "half of queued.max.request.bytes, at least one largest frame",
        |s, v| {
            s.queued_max_request_bytes_per_shard = Some(ranged(v, FRAME_MIN, U64_MAX)?);
            Ok(())
        },
        |s| s.queued_max_request_bytes_per_shard.map(int_val)
    ),
    key!(
        "queued.max.request.bytes.per.connection",
        "socket.request.max.bytes",
        |s, v| {
            s.queued_max_request_bytes_per_connection = Some(ranged(v, FRAME_MIN, U64_MAX)?);
            Ok(())
        },
        |s| s.queued_max_request_bytes_per_connection.map(int_val)
    ),
    key!(
        "connections.max.idle.ms",
        "",
        |s, v| {
            s.connections_max_idle_ms = ranged(v, 1, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.connections_max_idle_ms))
    ),
    key!(
        "frame.timeout.ms",
        "",
        |s, v| {
            s.frame_timeout_ms = ranged(v, 1, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.frame_timeout_ms))
    ),
    key!(
        "max.connections",
        "10000, lowered to fit the open-file limit",
        |s, v| {
            s.max_connections = Some(ranged(v, 1, i32::MAX as i64)?);
            Ok(())
        },
        |s| s.max_connections.map(int_val)
    ),
    key!(
        "max.connections.per.ip",
        "",
        |s, v| {
            s.max_connections_per_ip = ranged(v, 1, i32::MAX as i64)?;
            Ok(())
        },
        |s| Some(int_val(s.max_connections_per_ip))
    ),
    // Logging and metrics.
    key!(
        "logging.format",
        "",
        |s, v| {
            s.logging_format = match string(v)?.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err("expected \"text\" or \"json\"".into()),
            };
            Ok(())
        },
        |s| Some(Value::String(if s.logging_format == LogFormat::Json { "json" } else { "text" }.into()))
    ),
    key!(
        "logging.limit.interval.ms",
        "",
        |s, v| {
            s.logging_limit_interval_ms = ranged(v, 1, U64_MAX)?;
            Ok(())
        },
        |s| Some(int_val(s.logging_limit_interval_ms))
    ),
    key!(
        "metrics.listen",
        "no metrics endpoint",
        |s, v| {
            s.metrics_listen = Some(socket_addr(v)?);
            Ok(())
        },
        |s| s.metrics_listen.map(|a| Value::String(a.to_string()))
    ),
];

/// The smallest request frame: byte limits below it would refuse every request.
const FRAME_MIN: i64 = crate::connection::FRAME_MIN_BYTES as i64;

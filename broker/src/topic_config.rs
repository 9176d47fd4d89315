//! Topic configurations as Kafka names them, and their translation into the
//! engine's `LogConfig`. Every config Kafka 4.x documents is in
//! `topic_config_table` (honoured, accepted without effect, or accepted only
//! at Laminar's one value); anything else is INVALID_CONFIG naming it, so a
//! user never believes a setting took effect when it did not.

use std::collections::BTreeMap;

use laminar_engine::{LogConfig, TimestampType};

pub use crate::topic_config_table::{check, def, describe, Kind};

/// Kafka's default of a topic config.
pub fn default_of(name: &str) -> Option<&'static str> {
    def(name).map(|d| d.default)
}

/// `compression.type` values Kafka knows.
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

fn parse_i64(name: &str, v: &str) -> Result<i64, String> {
    v.trim().parse::<i64>().map_err(|_| format!("{name}: '{v}' is not an integer"))
}

/// `min.insync.replicas` (a broker-level setting, not the engine's): the
/// fewest in-sync replicas an acks=all write needs.
pub fn min_insync_replicas(
    overrides: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> Result<i32, String> {
    match overrides.get("min.insync.replicas").or_else(|| defaults.get("min.insync.replicas")) {
        None => Ok(1),
        Some(v) => {
            let n = parse_i64("min.insync.replicas", v)?;
            if !(1..=i16::MAX as i64).contains(&n) {
                return Err("min.insync.replicas must be ≥ 1".into());
            }
            Ok(n as i32)
        }
    }
}

/// `unclean.leader.election.enable` for one topic: its override, else the
/// broker's setting (`--unclean-leader-election`). Read by the controller.
pub fn unclean_leader_election(overrides: &BTreeMap<String, String>, broker_default: bool) -> Result<bool, String> {
    match overrides.get("unclean.leader.election.enable") {
        None => Ok(broker_default),
        Some(v) => parse_bool("unclean.leader.election.enable", v),
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{name}: '{v}' is not true or false")),
    }
}

/// Builds the engine config from topic overrides over broker defaults.
/// Errors name the offending config, for INVALID_CONFIG's message.
pub fn log_config(
    overrides: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut cfg = LogConfig::default();
    let get = |name: &str| -> Option<&String> { overrides.get(name).or_else(|| defaults.get(name)) };
    for (name, value) in overrides.iter().chain(defaults) {
        check(name, value)?;
    }
    if let Some(v) = get("cleanup.policy") {
        if v != "delete" {
            return Err(format!("cleanup.policy '{v}' is not supported (only 'delete')"));
        }
    }
    let optional_ms = |name: &str, v: i64| -> Result<Option<u64>, String> {
        match v {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as u64)),
            _ => Err(format!("{name} must be -1 or ≥ 0")),
        }
    };
    if let Some(v) = get("retention.ms") {
        cfg.retention_ms = optional_ms("retention.ms", parse_i64("retention.ms", v)?)?;
    }
    if let Some(v) = get("retention.bytes") {
        cfg.retention_bytes = optional_ms("retention.bytes", parse_i64("retention.bytes", v)?)?;
    }
    if let Some(v) = get("segment.bytes") {
        let n = parse_i64("segment.bytes", v)?;
        if n < LogConfig::SEGMENT_BYTES_MIN as i64 || n > LogConfig::SEGMENT_BYTES_MAX as i64 {
            return Err(format!(
                "segment.bytes must be in [{}, {}]",
                LogConfig::SEGMENT_BYTES_MIN,
                LogConfig::SEGMENT_BYTES_MAX
            ));
        }
        cfg.segment_bytes = n as u64;
    }
    if let Some(v) = get("segment.ms") {
        let n = parse_i64("segment.ms", v)?;
        if n < 1 {
            return Err("segment.ms must be ≥ 1".into());
        }
        cfg.segment_ms = n as u64;
    }
    if let Some(v) = get("max.message.bytes") {
        let n = parse_i64("max.message.bytes", v)?;
        if !(1..=i32::MAX as i64).contains(&n) {
            return Err("max.message.bytes must be in [1, 2147483647]".into());
        }
        cfg.max_message_bytes = n as usize;
    }
    if let Some(v) = get("flush.messages") {
        let n = parse_i64("flush.messages", v)?;
        if n < 1 {
            return Err("flush.messages must be ≥ 1".into());
        }
        cfg.flush_messages = (n != i64::MAX).then_some(n as u64);
    }
    if let Some(v) = get("flush.ms") {
        let n = parse_i64("flush.ms", v)?;
        if n < 0 {
            return Err("flush.ms must be ≥ 0".into());
        }
        cfg.flush_ms = (n != i64::MAX).then_some(n as u64);
    }
    if let Some(v) = get("message.timestamp.type") {
        cfg.timestamp_type = match v.as_str() {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => return Err(format!("message.timestamp.type '{v}' is not one of CreateTime, LogAppendTime")),
        };
    }
    for (name, field) in [
        ("message.timestamp.before.max.ms", &mut cfg.message_timestamp_before_max_ms),
        ("message.timestamp.after.max.ms", &mut cfg.message_timestamp_after_max_ms),
    ] {
        if let Some(v) = get(name) {
            let n = parse_i64(name, v)?;
            if n < 0 {
                return Err(format!("{name} must be ≥ 0"));
            }
            *field = if n == i64::MAX { u64::MAX } else { n as u64 };
        }
    }
    if let Some(v) = get("compression.type") {
        compression_type(v)?;
    }
    if let Some(v) = get("index.interval.bytes") {
        let n = parse_i64("index.interval.bytes", v)?;
        if n < 1 {
            return Err("index.interval.bytes must be ≥ 1".into());
        }
        cfg.index_interval_bytes = n as u64;
    }
    if let Some(v) = get("unclean.leader.election.enable") {
        // The controller's setting, not the engine's: validated here with the rest.
        parse_bool("unclean.leader.election.enable", v)?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Only `producer` (batches kept as the producer compressed them) is
/// honoured. Any other codec means recompressing every batch on the broker:
/// decompressing producers' data (a decompression bomb to bound), re-encoding
/// the records, a new CRC and a batch no longer stored as received, and the
/// codecs in the broker; Laminar refuses it rather than pretending.
fn compression_type(v: &str) -> Result<(), String> {
    if !COMPRESSION_TYPES.contains(&v) {
        return Err(format!("compression.type '{v}' is not one of {}", COMPRESSION_TYPES.join(", ")));
    }
    if v != "producer" {
        return Err(format!(
            "compression.type '{v}' is not supported: Laminar stores batches as the producer compressed them \
             (only 'producer'); it does not recompress on the broker"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_beat_defaults_and_map_to_engine_units() {
        let cfg = log_config(
            &m(&[("retention.ms", "1000"), ("segment.bytes", "1048576"), ("flush.messages", "1")]),
            &m(&[("retention.ms", "5"), ("retention.bytes", "4096")]),
        )
        .unwrap();
        assert_eq!(cfg.retention_ms, Some(1000));
        assert_eq!(cfg.retention_bytes, Some(4096));
        assert_eq!(cfg.segment_bytes, 1 << 20);
        assert_eq!(cfg.flush_messages, Some(1));
        let d = log_config(&m(&[]), &m(&[])).unwrap();
        assert_eq!(d, LogConfig::default());
        assert_eq!(log_config(&m(&[("retention.ms", "-1")]), &m(&[])).unwrap().retention_ms, None);
    }

    #[test]
    fn message_timestamp_type_picks_whose_clock() {
        let cfg = log_config(&m(&[("message.timestamp.type", "LogAppendTime")]), &m(&[])).unwrap();
        assert_eq!(cfg.timestamp_type, TimestampType::LogAppendTime);
        let cfg = log_config(&m(&[]), &m(&[("message.timestamp.type", "LogAppendTime")])).unwrap();
        assert_eq!(cfg.timestamp_type, TimestampType::LogAppendTime, "a broker default");
        let e = log_config(&m(&[("message.timestamp.type", "logappendtime")]), &m(&[])).unwrap_err();
        assert!(e.contains("message.timestamp.type"), "{e}");
    }

    #[test]
    fn compression_producer_and_any_message_format_version_are_accepted() {
        let d = LogConfig::default();
        assert_eq!(log_config(&m(&[("compression.type", "producer")]), &m(&[])).unwrap(), d);
        for v in ["0.10.0", "0.10.0.0", "2.8", "3.0-IV1"] {
            assert_eq!(log_config(&m(&[("message.format.version", v)]), &m(&[])).unwrap(), d, "{v}");
        }
        let e = log_config(&m(&[("compression.type", "zstd")]), &m(&[])).unwrap_err();
        assert!(e.contains("does not recompress"), "{e}");
    }

    #[test]
    fn unknown_and_bad_values_are_rejected_with_the_name() {
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("compression.type", "gzip"),
            ("compression.type", "brotli"),
            ("message.format.version", "latest"),
            ("retention.ms", "abc"),
            ("retention.ms", "-7"),
            ("segment.bytes", "10"),
            ("max.message.bytes", "0"),
            ("no.such.config", "1"),
            ("unclean.leader.election.enable", "maybe"),
        ] {
            let e = log_config(&m(&[(k, v)]), &m(&[])).unwrap_err();
            assert!(e.contains(k.split('.').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn unclean_election_is_per_topic_over_the_broker_setting() {
        assert!(!unclean_leader_election(&m(&[]), false).unwrap());
        assert!(unclean_leader_election(&m(&[]), true).unwrap());
        assert!(unclean_leader_election(&m(&[("unclean.leader.election.enable", "true")]), false).unwrap());
        assert!(!unclean_leader_election(&m(&[("unclean.leader.election.enable", "FALSE")]), true).unwrap());
    }
}

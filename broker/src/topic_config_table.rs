//! Every topic config Kafka 4.x documents, with its type, Kafka's default,
//! the broker config that sets its default (Kafka's first synonym, with that
//! config's own default) and what Laminar does with it: honours it, accepts
//! it without effect (where Kafka's effect cannot arise here), or accepts only
//! the value that is Laminar's behaviour. A name not in the table is refused.
//! DescribeConfigs lists all of them as Kafka does (`describe`).

use std::collections::BTreeMap;

/// DescribeConfigs' `config_type` codes (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// What Laminar does with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured: `topic_config::log_config` (or the replication and election
    /// code) turns it into behaviour.
    Honoured,
    /// Accepted when valid, without effect: what it governs does not arise
    /// in Laminar (as in Kafka on a topic without it). Says why.
    Ignored(&'static str),
    /// Accepted only at this value, Laminar's behaviour; anything else is
    /// INVALID_CONFIG saying why.
    OnlyValue(&'static str, &'static str),
}

pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    /// Kafka 4.x's default for the topic config.
    pub default: &'static str,
    /// The broker config that sets the default (Kafka's
    /// `ServerTopicConfigSynonyms`, first entry) and that config's own
    /// default, when it has one.
    pub broker: Option<(&'static str, Option<&'static str>)>,
    pub support: Support,
    /// Checks a value's form and range, as Kafka's validator for it does.
    pub check: fn(&str) -> Result<(), String>,
}

const I64_MAX: &str = "9223372036854775807";

const COMPACTION: &str =
    "it tunes log compaction, which Laminar does not do (cleanup.policy=delete only), as Kafka ignores it on such topics";
const RECOMPRESSION: &str =
    "it applies when the broker recompresses (compression.type other than producer), which Laminar does not do";
const THROTTLE: &str = "Laminar has no replication throttle";
const TIERED: &str = "Laminar has no tiered storage";

use Kind::{Boolean, Double, Int, List, Long};
use Support::*;

/// Kafka 4.x's topic configs, by name.
pub const DEFS: &[Def] = &[
    Def { name: "cleanup.policy", kind: List, default: "delete", broker: Some(("log.cleanup.policy", Some("delete"))), support: Honoured, check: any },
    Def { name: "compression.gzip.level", kind: Int, default: "-1", broker: Some(("compression.gzip.level", Some("-1"))), support: Ignored(RECOMPRESSION), check: gzip_level },
    Def { name: "compression.lz4.level", kind: Int, default: "9", broker: Some(("compression.lz4.level", Some("9"))), support: Ignored(RECOMPRESSION), check: lz4_level },
    Def { name: "compression.type", kind: Kind::String, default: "producer", broker: Some(("compression.type", Some("producer"))), support: Honoured, check: any },
    Def { name: "compression.zstd.level", kind: Int, default: "3", broker: Some(("compression.zstd.level", Some("3"))), support: Ignored(RECOMPRESSION), check: zstd_level },
    Def { name: "delete.retention.ms", kind: Long, default: "86400000", broker: Some(("log.cleaner.delete.retention.ms", Some("86400000"))), support: Ignored(COMPACTION), check: long_at_least_0 },
    Def {
        name: "file.delete.delay.ms",
        kind: Long,
        default: "60000",
        broker: Some(("log.segment.delete.delay.ms", Some("60000"))),
        support: Ignored("Laminar deletes a segment at once: a fetch in flight holds its file open, which is what Kafka's delay protects"),
        check: long_at_least_0,
    },
    Def { name: "flush.messages", kind: Long, default: I64_MAX, broker: Some(("log.flush.interval.messages", Some(I64_MAX))), support: Honoured, check: any },
    Def { name: "flush.ms", kind: Long, default: I64_MAX, broker: Some(("log.flush.interval.ms", None)), support: Honoured, check: any },
    Def { name: "follower.replication.throttled.replicas", kind: List, default: "", broker: None, support: OnlyValue("", THROTTLE), check: any },
    Def { name: "index.interval.bytes", kind: Int, default: "4096", broker: Some(("log.index.interval.bytes", Some("4096"))), support: Honoured, check: any },
    Def { name: "leader.replication.throttled.replicas", kind: List, default: "", broker: None, support: OnlyValue("", THROTTLE), check: any },
    Def { name: "local.retention.bytes", kind: Long, default: "-2", broker: Some(("log.local.retention.bytes", Some("-2"))), support: OnlyValue("-2", TIERED), check: any },
    Def { name: "local.retention.ms", kind: Long, default: "-2", broker: Some(("log.local.retention.ms", Some("-2"))), support: OnlyValue("-2", TIERED), check: any },
    Def { name: "max.compaction.lag.ms", kind: Long, default: I64_MAX, broker: Some(("log.cleaner.max.compaction.lag.ms", Some(I64_MAX))), support: Ignored(COMPACTION), check: long_at_least_1 },
    Def { name: "max.message.bytes", kind: Int, default: "1048588", broker: Some(("message.max.bytes", Some("1048588"))), support: Honoured, check: any },
    Def {
        name: "message.downconversion.enable",
        kind: Boolean,
        default: "true",
        broker: Some(("log.message.downconversion.enable", Some("true"))),
        support: Ignored("deprecated: there is one message format (v2) and no down-conversion, as in Kafka 4"),
        check: boolean,
    },
    Def {
        name: "message.format.version",
        kind: Kind::String,
        default: "3.0-IV1",
        broker: Some(("log.message.format.version", Some("3.0-IV1"))),
        support: Ignored("deprecated: there is one message format (v2), as in Kafka 4"),
        check: kafka_version,
    },
    Def { name: "message.timestamp.after.max.ms", kind: Long, default: "3600000", broker: Some(("log.message.timestamp.after.max.ms", Some("3600000"))), support: Honoured, check: any },
    Def { name: "message.timestamp.before.max.ms", kind: Long, default: I64_MAX, broker: Some(("log.message.timestamp.before.max.ms", Some(I64_MAX))), support: Honoured, check: any },
    Def { name: "message.timestamp.type", kind: Kind::String, default: "CreateTime", broker: Some(("log.message.timestamp.type", Some("CreateTime"))), support: Honoured, check: any },
    Def { name: "min.cleanable.dirty.ratio", kind: Double, default: "0.5", broker: Some(("log.cleaner.min.cleanable.ratio", Some("0.5"))), support: Ignored(COMPACTION), check: ratio },
    Def { name: "min.compaction.lag.ms", kind: Long, default: "0", broker: Some(("log.cleaner.min.compaction.lag.ms", Some("0"))), support: Ignored(COMPACTION), check: long_at_least_0 },
    Def { name: "min.insync.replicas", kind: Int, default: "1", broker: Some(("min.insync.replicas", Some("1"))), support: Honoured, check: any },
    Def { name: "preallocate", kind: Boolean, default: "false", broker: Some(("log.preallocate", Some("false"))), support: OnlyValue("false", "Laminar does not preallocate segment files"), check: boolean },
    Def { name: "remote.log.copy.disable", kind: Boolean, default: "false", broker: None, support: OnlyValue("false", TIERED), check: boolean },
    Def { name: "remote.log.delete.on.disable", kind: Boolean, default: "false", broker: None, support: OnlyValue("false", TIERED), check: boolean },
    Def { name: "remote.storage.enable", kind: Boolean, default: "false", broker: None, support: OnlyValue("false", TIERED), check: boolean },
    Def { name: "retention.bytes", kind: Long, default: "-1", broker: Some(("log.retention.bytes", Some("-1"))), support: Honoured, check: any },
    Def { name: "retention.ms", kind: Long, default: "604800000", broker: Some(("log.retention.ms", None)), support: Honoured, check: any },
    Def { name: "segment.bytes", kind: Int, default: "1073741824", broker: Some(("log.segment.bytes", Some("1073741824"))), support: Honoured, check: any },
    Def {
        name: "segment.index.bytes",
        kind: Int,
        default: "10485760",
        broker: Some(("log.index.size.max.bytes", Some("10485760"))),
        support: OnlyValue("10485760", "Laminar's indexes live in memory and do not roll segments; bound segments with segment.bytes"),
        check: any,
    },
    Def { name: "segment.jitter.ms", kind: Long, default: "0", broker: Some(("log.roll.jitter.ms", None)), support: OnlyValue("0", "segments roll at segment.ms exactly"), check: any },
    Def { name: "segment.ms", kind: Long, default: "604800000", broker: Some(("log.roll.ms", None)), support: Honoured, check: any },
    Def { name: "unclean.leader.election.enable", kind: Boolean, default: "false", broker: Some(("unclean.leader.election.enable", Some("false"))), support: Honoured, check: boolean },
];

/// Names Kafka once had and 4.x removed, with what replaces them.
const REMOVED: &[(&str, &str)] = &[(
    "message.timestamp.difference.max.ms",
    "removed in Kafka 4.0; use message.timestamp.before.max.ms and message.timestamp.after.max.ms",
)];

pub fn def(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name == name)
}

/// Checks one topic config and value: a known name, a valid value, and for
/// a config Laminar only accepts at one value, that value. Honoured configs'
/// values are checked where they are turned into behaviour.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = def(name) else {
        return Err(match REMOVED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => format!("topic config '{name}' was {why}"),
            None => format!("unknown topic config '{name}'"),
        });
    };
    (d.check)(value).map_err(|e| format!("{name}: {e}"))?;
    match d.support {
        OnlyValue(only, why) if !value.trim().eq_ignore_ascii_case(only) => {
            Err(format!("{name}={value} is not supported: {why} (only {name}={only:?})"))
        }
        _ => Ok(()),
    }
}

/// DescribeConfigs' `config_source` codes.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One config as DescribeConfigs (and CreateTopics v5+) show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub kind: Kind,
    /// (name, value, source), highest precedence first, as Kafka lists them.
    pub synonyms: Vec<(String, String, i8)>,
    /// What Laminar does differently, for configs it does not honour.
    pub note: Option<String>,
}

/// Every topic config with its value and where it comes from, as Kafka's
/// DescribeConfigs answers: the topic's override (DYNAMIC_TOPIC_CONFIG), else
/// the broker's default from the command line (STATIC_BROKER_CONFIG, under
/// the broker config's name), else Kafka's default (DEFAULT_CONFIG). The
/// synonyms are those three in that order, where they exist; Kafka's
/// default shows as a synonym only for broker configs that have one (so
/// `retention.ms`, whose broker synonym `log.retention.ms` has no default,
/// has none: Kafka answers the same).
pub fn describe(overrides: &BTreeMap<String, String>, defaults: &BTreeMap<String, String>) -> Vec<Described> {
    DEFS.iter()
        .map(|d| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(d.name) {
                synonyms.push((d.name.to_string(), v.clone(), SOURCE_TOPIC));
            }
            if let Some((broker, broker_default)) = d.broker {
                if let Some(v) = defaults.get(d.name) {
                    synonyms.push((broker.to_string(), v.clone(), SOURCE_STATIC_BROKER));
                }
                if let Some(v) = broker_default {
                    synonyms.push((broker.to_string(), v.to_string(), SOURCE_DEFAULT));
                }
            }
            let (value, source) = match synonyms.first() {
                Some((_, v, s)) if *s != SOURCE_DEFAULT => (v.clone(), *s),
                _ => (d.default.to_string(), SOURCE_DEFAULT),
            };
            let note = match d.support {
                Honoured => None,
                Ignored(why) => Some(format!("accepted without effect: {why}")),
                OnlyValue(only, why) => Some(format!("only {only:?} is accepted: {why}")),
            };
            Described { name: d.name, value, source, kind: d.kind, synonyms, note }
        })
        .collect()
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn boolean(v: &str) -> Result<(), String> {
    // Kafka's ConfigDef parses booleans case-insensitively.
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!("'{v}' is not a boolean (true or false)")),
    }
}

fn int_in(v: &str, lo: i64, hi: i64) -> Result<i64, String> {
    let n = v.trim().parse::<i64>().map_err(|_| format!("'{v}' is not an integer"))?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is outside [{lo}, {hi}]"))
    }
}

fn long_at_least_0(v: &str) -> Result<(), String> {
    int_in(v, 0, i64::MAX).map(drop)
}

fn long_at_least_1(v: &str) -> Result<(), String> {
    int_in(v, 1, i64::MAX).map(drop)
}

fn gzip_level(v: &str) -> Result<(), String> {
    match int_in(v, -1, 9)? {
        0 => Err("0 is not a gzip level (1 to 9, or -1)".into()),
        _ => Ok(()),
    }
}

fn lz4_level(v: &str) -> Result<(), String> {
    int_in(v, 1, 17).map(drop)
}

fn zstd_level(v: &str) -> Result<(), String> {
    int_in(v, -131_072, 22).map(drop)
}

fn ratio(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
        _ => Err(format!("'{v}' is not a ratio in [0, 1]")),
    }
}

/// A Kafka version such as `0.10.0`, `2.8` or `3.0-IV1` (Kafka 4 accepts
/// `message.format.version` only in that form, and ignores it).
fn kafka_version(v: &str) -> Result<(), String> {
    let (numbers, iv) = v.split_once("-IV").map_or((v, None), |(n, iv)| (n, Some(iv)));
    let parts: Vec<&str> = numbers.split('.').collect();
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if (2..=4).contains(&parts.len()) && parts.iter().all(|p| digits(p)) && iv.is_none_or(digits) {
        Ok(())
    } else {
        Err(format!("'{v}' is not a Kafka version (such as 0.10.0 or 3.0-IV1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_are_unique_and_every_kafka_default_passes_its_own_check() {
        for d in DEFS {
            assert_eq!(DEFS.iter().filter(|x| x.name == d.name).count(), 1, "{}", d.name);
            if d.support != Honoured {
                check(d.name, d.default).unwrap_or_else(|e| panic!("{}: {e}", d.name));
            }
        }
        assert_eq!(DEFS.len(), 35, "Kafka 4.x documents 35 topic configs");
    }

    #[test]
    fn refusals_name_the_config_and_why() {
        let e = check("preallocate", "true").unwrap_err();
        assert!(e.contains("preallocate") && e.contains("does not preallocate"), "{e}");
        let e = check("remote.storage.enable", "true").unwrap_err();
        assert!(e.contains("tiered storage"), "{e}");
        let e = check("message.timestamp.difference.max.ms", "1000").unwrap_err();
        assert!(e.contains("removed in Kafka 4.0"), "{e}");
        let e = check("no.such.config", "1").unwrap_err();
        assert!(e.contains("'no.such.config'"), "{e}");
        assert!(check("compression.gzip.level", "0").unwrap_err().contains("compression.gzip.level"));
        assert!(check("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(check("message.downconversion.enable", "yes").is_err());
        for (k, v) in [
            ("preallocate", "FALSE"),
            ("segment.jitter.ms", "0"),
            ("min.compaction.lag.ms", "1000"),
            ("compression.zstd.level", "-5"),
            ("message.format.version", "0.10.0"),
            ("follower.replication.throttled.replicas", ""),
        ] {
            check(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    /// Kafka's answers: an override is DYNAMIC_TOPIC_CONFIG with the broker's
    /// synonyms after it; a broker default from the command line is
    /// STATIC_BROKER_CONFIG under the broker's name; otherwise
    /// DEFAULT_CONFIG, with the broker config's default as a synonym when it
    /// has one.
    #[test]
    fn sources_and_synonyms_are_kafkas() {
        let all = describe(&m(&[("segment.bytes", "1048576")]), &m(&[("max.message.bytes", "2000000")]));
        assert_eq!(all.len(), DEFS.len());
        let get = |n: &str| all.iter().find(|d| d.name == n).unwrap().clone();
        let seg = get("segment.bytes");
        assert_eq!((seg.value.as_str(), seg.source), ("1048576", SOURCE_TOPIC));
        assert_eq!(
            seg.synonyms,
            vec![
                ("segment.bytes".into(), "1048576".into(), SOURCE_TOPIC),
                ("log.segment.bytes".into(), "1073741824".into(), SOURCE_DEFAULT)
            ]
        );
        let max = get("max.message.bytes");
        assert_eq!((max.value.as_str(), max.source), ("2000000", SOURCE_STATIC_BROKER));
        assert_eq!(max.synonyms[0], ("message.max.bytes".into(), "2000000".into(), SOURCE_STATIC_BROKER));
        let ret = get("retention.ms");
        assert_eq!((ret.value.as_str(), ret.source, ret.synonyms.len()), ("604800000", SOURCE_DEFAULT, 0));
        let pre = get("preallocate");
        assert_eq!((pre.value.as_str(), pre.source, pre.kind), ("false", SOURCE_DEFAULT, Boolean));
        assert!(pre.note.unwrap().contains("does not preallocate"));
    }
}

use std::path::PathBuf;

use clap::Parser;

use super::*;

fn file(text: &str) -> Result<Settings, SettingsError> {
    let mut s = Settings::default();
    let source = Source::File(PathBuf::from("laminar.toml"));
    s.apply_toml(text, &source)?;
    s.check_whole(&source)?;
    Ok(s)
}

fn err(text: &str) -> String {
    file(text).unwrap_err().to_string()
}

#[test]
fn the_example_config_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/laminar.example.toml");
    let s = from_file(&path).unwrap();
    assert_eq!(s.node_id, 1);
    assert_eq!(s.listeners, "0.0.0.0:9092".parse().unwrap());
    assert_eq!(s.advertised_listeners.as_deref(), Some("kafka1.example:9092"));
    assert_eq!(s.log_dirs, PathBuf::from("/var/lib/laminar"));
    assert_eq!(s.etcd_endpoints.len(), 3);
    assert_eq!(s.num_partitions, 6);
    assert_eq!(s.default_replication_factor, 3);
    assert_eq!(s.topic_defaults["min.insync.replicas"], "2");
    assert_eq!(s.topic_defaults["retention.ms"], "604800000");
    assert_eq!(s.max_connections, Some(10000));
    assert_eq!(s.max_connections_per_ip, 1000);
    assert_eq!(s.logging_format, LogFormat::Json);
    assert_eq!(s.metrics_listen, Some("0.0.0.0:9644".parse().unwrap()));
    s.server_options(&Default::default()).unwrap();
}

#[test]
fn tables_quoted_and_dotted_keys_are_the_same_key() {
    let a = file("log.dirs = \"/d\"\nnum.partitions = 3").unwrap();
    let b = file("\"log.dirs\" = \"/d\"\n\"num.partitions\" = 3").unwrap();
    let c = file("[log]\ndirs = \"/d\"\n[num]\npartitions = 3").unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.num_partitions, 3);
}

#[test]
fn print_config_round_trips() {
    let mut s = file("num.partitions = 4\nmetrics.listen = \"127.0.0.1:0\"\nlog.retention.hours = 2").unwrap();
    s.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
    let printed = s.to_toml();
    assert!(printed.contains("\"num.partitions\" = 4"), "{printed}");
    assert!(printed.contains("\"log.retention.ms\" = 7200000"), "{printed}");
    // Unset keys are comments saying what applies.
    assert!(printed.contains("# \"num.shards\" is unset: one shard per CPU core"), "{printed}");
    assert_eq!(file(&printed).unwrap(), s);
    // Defaults too.
    assert_eq!(file(&Settings::default().to_toml()).unwrap(), Settings::default());
}

#[test]
fn every_key_is_printed_or_is_a_spelling_of_another() {
    let printed = Settings::default().to_toml();
    for k in KEYS {
        let shown = printed.contains(&format!("\"{}\"", k.name));
        assert_eq!(shown, k.group == k.name, "{}", k.name);
    }
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let e = err("num.partition = 3");
    assert!(e.contains("laminar.toml"), "{e}");
    assert!(e.contains("unknown key 'num.partition'"), "{e}");
    assert!(e.contains("did you mean 'num.partitions'"), "{e}");
    let e = err("[whatever]\nx = 1");
    assert!(e.contains("unknown key 'whatever.x'"), "{e}");
}

#[test]
fn wrong_types_and_ranges_name_key_value_and_reason() {
    for (text, want) in [
        ("num.partitions = \"three\"", "num.partitions = \"three\": expected an integer, got a string"),
        ("num.partitions = 0", "num.partitions = 0: must be ≥ 1"),
        ("lease.ttl.ms = 10", "lease.ttl.ms = 10: must be in [1000, 3600000]"),
        ("default.replication.factor = 40000", "default.replication.factor = 40000: must be in [1, 32767]"),
        ("pin.shards = 1", "pin.shards = 1: expected true or false, got an integer"),
        ("listeners = \"SSL://0.0.0.0:9093\"", "security protocol SSL is not supported"),
        ("listeners = \"a:1,b:2\"", "exactly one listener"),
        ("listeners = \"kafka1:9092\"", "is not an IP address and port"),
        ("log.dirs = [\"/a\", \"/b\"]", "exactly one directory"),
        ("log.segment.bytes = 10", "log.segment.bytes = 10: segment.bytes must be in [1024, 2147483647]"),
        ("log.cleanup.policy = \"compact\"", "cleanup.policy 'compact' is not supported"),
        ("min.insync.replicas = 0", "min.insync.replicas = 0: min.insync.replicas must be ≥ 1"),
        ("logging.format = \"xml\"", "logging.format = \"xml\": expected \"text\" or \"json\""),
        ("etcd.prefix = \"laminar\"", "etcd.prefix = \"laminar\": must start with '/'"),
        ("max.connections.per.ip = 0", "max.connections.per.ip = 0: must be ≥ 1"),
        ("node.id = 1\nbroker.id = 2", "'broker.id' and 'node.id' both set the same thing"),
        ("log.retention.ms = 1\nlog.retention.hours = 1", "both set the same thing"),
        ("num.partitions = 1\nnum.partitions = 2", "line 2"),
    ] {
        let e = err(text);
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.starts_with("invalid configuration (laminar.toml)"), "{e}");
    }
}

#[test]
fn a_key_extending_another_needs_quotes_and_says_so() {
    let e = err("max.connections = 5\nmax.connections.per.ip = 2");
    assert!(e.contains("must be quoted"), "{e}");
    let s = file("max.connections = 5\n\"max.connections.per.ip\" = 2").unwrap();
    assert_eq!((s.max_connections, s.max_connections_per_ip), (Some(5), 2));
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.toml");
    std::fs::write(&path, "num.partitions = 3\nnode.id = 7\nlog.retention.ms = 1000\npin.shards = true\n").unwrap();
    let flags = Flags::try_parse_from([
        "laminar",
        "--config",
        path.to_str().unwrap(),
        "--num-partitions",
        "5",
        "--no-pin",
        "--topic-default",
        "retention.ms=2000",
        "--etcd",
        "http://a:1,http://b:2",
    ])
    .unwrap();
    let s = Settings::load(&flags).unwrap();
    assert_eq!(s.num_partitions, 5);
    assert_eq!(s.node_id, 7);
    assert!(!s.pin_shards);
    assert_eq!(s.topic_defaults["retention.ms"], "2000");
    assert_eq!(s.etcd_endpoints, vec!["http://a:1".to_string(), "http://b:2".to_string()]);
}

#[test]
fn bad_flags_are_refused_like_bad_keys() {
    let flags = Flags::try_parse_from(["laminar", "--num-partitions", "-2"]).unwrap();
    let e = Settings::load(&flags).unwrap_err().to_string();
    assert_eq!(e, "invalid configuration (flag --num-partitions): num.partitions = -2: must be ≥ 1");
    let flags = Flags::try_parse_from(["laminar", "--topic-default", "unclean.leader.election.enable=true"]).unwrap();
    assert!(Settings::load(&flags).unwrap().unclean_leader_election_enable);
    let flags = Flags::try_parse_from(["laminar", "--topic-default", "no.such=1"]).unwrap();
    let e = Settings::load(&flags).unwrap_err().to_string();
    assert!(e.contains("'no.such' is not a topic config"), "{e}");
    let flags = Flags::try_parse_from(["laminar", "--config", "/nonexistent/laminar.toml"]).unwrap();
    let e = Settings::load(&flags).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/laminar.toml") && e.contains("cannot read"), "{e}");
}

#[test]
fn no_flags_no_file_is_the_old_default() {
    let s = Settings::load(&Flags::try_parse_from(["laminar"]).unwrap()).unwrap();
    assert_eq!(s, Settings::default());
    let o = s.server_options(&Default::default()).unwrap();
    assert_eq!(o.security.listeners.len(), 1);
    assert_eq!(o.security.listeners[0].bind, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(o.security.listeners[0].advertised, None, "its bound address");
    assert!(o.config.fsync_on_acks_all && o.pin && o.metrics_listen.is_none());
    assert!(matches!(o.store, crate::server::StoreChoice::Embedded));
}

#[test]
fn every_key_accepts_what_it_prints() {
    // Each key's printed default, applied alone, is accepted.
    let d = Settings::default();
    for k in KEYS {
        if let Some(v) = (k.get)(&d) {
            let mut s = Settings::default();
            s.apply(&Source::Flag("test"), k.name, &v).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            assert_eq!(s, d, "{}", k.name);
        }
    }
}

#[test]
fn every_key_is_documented() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for k in KEYS.iter().filter(|k| k.group == k.name) {
        assert!(doc.contains(&format!("`{}`", k.name)), "docs/operations.md does not mention `{}`", k.name);
    }
}

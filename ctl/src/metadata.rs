//! `metadata export|import|check`: Laminar's keys under the cluster's
//! prefix (etcd, or a stopped single node's embedded store) as a versioned
//! JSON snapshot for backup and disaster recovery, and the invariants an
//! operator wants to hold.
//!
//! The snapshot keeps keys relative to the prefix, so it can be restored
//! under another one. Keys bound to a lease (broker registrations, the
//! controller's seat) are exported for the record but never imported:
//! their leases died with the processes that held them, and brokers
//! register anew when they start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use laminar_coord::cluster::{ClusterView, Keys, MetaKey, PartitionRecord, GROUP_SLOTS};
use laminar_coord::{Compare, Op, TXN_BYTES_MAX, TXN_OPS_MAX};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{CtlError, Result};
use crate::output::{Report, Table};
use crate::status::leader_live;
use crate::store::Store;
use crate::time;

/// What the `format` field of an export says.
pub const EXPORT_FORMAT: &str = "laminar-metadata-export";
/// The export layout this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub version: u32,
    /// The prefix exported from (informational: keys are relative to it).
    pub prefix: String,
    /// The store revision the keys were read at.
    pub revision: u64,
    pub exported_ms: i64,
    pub exported_at: String,
    pub keys: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the prefix, starting with `/`.
    pub key: String,
    /// The value as text when it is UTF-8 (every value Laminar writes is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Otherwise its bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
    /// Bound to a lease when exported: not imported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leased: bool,
}

impl Entry {
    pub fn new(key: String, bytes: &[u8], leased: bool) -> Entry {
        match std::str::from_utf8(bytes) {
            Ok(s) => Entry { key, value: Some(s.to_string()), value_hex: None, leased },
            Err(_) => Entry { key, value: None, value_hex: Some(hex(bytes)), leased },
        }
    }

    pub fn bytes(&self) -> std::result::Result<Vec<u8>, String> {
        match (&self.value, &self.value_hex) {
            (Some(v), None) => Ok(v.as_bytes().to_vec()),
            (None, Some(h)) => unhex(h).ok_or_else(|| format!("{}: value_hex is not hex", self.key)),
            _ => Err(format!("{}: needs exactly one of value and value_hex", self.key)),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl Export {
    /// Parses and checks a snapshot: its format and version, and keys that
    /// can be written (relative, unique, values decodable).
    pub fn parse(text: &str) -> std::result::Result<Export, String> {
        let e: Export = serde_json::from_str(text).map_err(|e| format!("not a laminarctl metadata export: {e}"))?;
        if e.format != EXPORT_FORMAT {
            return Err(format!("format is '{}', not '{EXPORT_FORMAT}'", e.format));
        }
        if e.version > EXPORT_VERSION {
            return Err(format!("export version {} is newer than this laminarctl reads ({EXPORT_VERSION})", e.version));
        }
        let mut seen = BTreeSet::new();
        for k in &e.keys {
            if !k.key.starts_with('/') {
                return Err(format!("key '{}' does not start with '/'", k.key));
            }
            if !seen.insert(&k.key) {
                return Err(format!("key '{}' appears twice", k.key));
            }
            k.bytes()?;
        }
        if !e.keys.iter().any(|k| k.key == "/format") {
            return Err("it has no /format key: not a Laminar cluster's export".into());
        }
        Ok(e)
    }
}

pub async fn export(ctx: &Ctx, out: Option<&Path>) -> Result<Report> {
    let store = ctx.store("metadata export").await?;
    store.require_cluster().await?;
    let (entries, revision) = store.list_all().await?;
    let prefix = store.keys.prefix().to_string();
    let now = time::now_ms();
    let keys: Vec<Entry> =
        entries.iter().map(|(k, v)| Entry::new(k[prefix.len()..].to_string(), &v.value, v.lease != 0)).collect();
    let leased = keys.iter().filter(|k| k.leased).count();
    let snapshot = Export {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        prefix: store.prefix_shown(),
        revision,
        exported_ms: now,
        exported_at: time::format_utc(now),
        keys,
    };
    let text = serde_json::to_string_pretty(&snapshot).expect("exports serialize") + "\n";
    match out {
        None => {
            // The snapshot is the output, whatever --output says.
            let mut r = Report::new(&snapshot);
            r.raw(text);
            Ok(r)
        }
        Some(path) => {
            write_atomically(path, &text)?;
            let summary = serde_json::json!({
                "file": path.display().to_string(),
                "keys": snapshot.keys.len(),
                "leased": leased,
                "revision": revision,
            });
            let mut r = Report::new(summary);
            r.line(format!(
                "exported {} keys under {} from {} at revision {revision} to {} ({leased} leased: not restored by import)",
                snapshot.keys.len(),
                store.prefix_shown(),
                store.source(),
                path.display()
            ));
            Ok(r)
        }
    }
}

/// Writes `path` whole or not at all (a backup cut short must not look complete).
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-laminarctl");
    let fail = |e: std::io::Error| CtlError::failed(format!("cannot write {}: {e}", path.display()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The writes that restore `snapshot` under `keys`' prefix: batches within
/// the store's txn limits, the format key alone in the last one (brokers
/// take a prefix without it for an empty one).
pub fn import_batches(keys: &Keys, snapshot: &Export) -> Vec<Vec<Op>> {
    let mut batches: Vec<Vec<Op>> = Vec::new();
    let mut current: Vec<Op> = Vec::new();
    let mut bytes = 0;
    let mut format_op = None;
    for e in snapshot.keys.iter().filter(|e| !e.leased) {
        let key = format!("{}{}", keys.prefix(), e.key);
        let value = e.bytes().expect("checked by parse");
        if e.key == "/format" {
            format_op = Some(Op::put(key, value));
            continue;
        }
        let size = key.len() + value.len();
        if !current.is_empty() && (current.len() + 1 > TXN_OPS_MAX || bytes + size > TXN_BYTES_MAX) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(Op::put(key, value));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches.extend(format_op.map(|op| vec![op]));
    batches
}

pub async fn import(ctx: &Ctx, file: &Path, force: bool) -> Result<Report> {
    let text =
        std::fs::read_to_string(file).map_err(|e| CtlError::usage(format!("cannot read {}: {e}", file.display())))?;
    let snapshot = Export::parse(&text).map_err(|e| CtlError::usage(format!("{}: {e}", file.display())))?;
    let store = ctx.store_with("metadata import", true).await?;
    let brokers = store.list(&store.keys.brokers()).await?;
    if !brokers.is_empty() {
        let ids: Vec<String> = brokers
            .iter()
            .filter_map(|(k, _)| match store.keys.parse_meta(k) {
                MetaKey::Broker(n) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        return Err(CtlError::failed(format!(
            "brokers are registered under {} ({}): stop every broker of the cluster before importing",
            store.prefix_shown(),
            ids.join(",")
        )));
    }
    let (existing, _) = store.list_all().await?;
    if !existing.is_empty() && !force {
        return Err(CtlError::failed(format!(
            "prefix {} in {} holds {} keys: import only into an empty prefix, or pass --force to replace them",
            store.prefix_shown(),
            store.source(),
            existing.len()
        )));
    }
    let all = format!("{}/", store.keys.prefix());
    if !existing.is_empty() {
        // Every broker is stopped (checked above). One write: the prefix is
        // either what it was or empty, never half-deleted.
        store.txn(vec![], vec![Op::delete_prefix(all)]).await?;
    }
    let batches = import_batches(&store.keys, &snapshot);
    let last = batches.len();
    let mut written = 0;
    for (i, ops) in batches.into_iter().enumerate() {
        let n = ops.len();
        // The format key, last, only if nobody created one meanwhile.
        let guards = if i + 1 == last { vec![Compare::absent(store.keys.format())] } else { vec![] };
        if !store.txn(guards, ops).await? {
            return Err(CtlError::failed(format!(
                "a format key appeared under {} while importing (a broker started?): {written} keys were written; \
                 stop every broker and import again with --force",
                store.prefix_shown()
            )));
        }
        written += n;
    }
    let leased = snapshot.keys.iter().filter(|k| k.leased).count();
    let mut r = Report::new(serde_json::json!({
        "imported": written,
        "skipped_leased": leased,
        "replaced": existing.len(),
        "from_revision": snapshot.revision,
        "exported_at": snapshot.exported_at,
    }));
    r.line(format!(
        "imported {written} keys under {} in {} (export of {} taken at {}, revision {}){}; {leased} leased key(s) \
         skipped: brokers register anew when they start",
        store.prefix_shown(),
        store.source(),
        snapshot.prefix,
        snapshot.exported_at,
        snapshot.revision,
        if existing.is_empty() { String::new() } else { format!("; replaced {} existing keys", existing.len()) }
    ));
    Ok(r)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `error` (an invariant does not hold) or `warning` (worth a look).
    pub severity: &'static str,
    pub key: String,
    pub problem: String,
}

/// What `metadata check` finds in the keys under the prefix (`raw`) and
/// the view built from them. `liveness`: whether registrations mean
/// anything (not in a stopped single node's store, whose leases ended
/// with the broker).
pub fn check_invariants(keys: &Keys, raw: &[(String, Vec<u8>)], view: &ClusterView, liveness: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut err = |key: &str, problem: String| out.push(Problem { severity: "error", key: key.to_string(), problem });
    let present: BTreeSet<&str> = raw.iter().map(|(k, _)| k.as_str()).collect();
    if !present.contains(keys.cluster_id().as_str()) {
        err(&keys.cluster_id(), "no cluster id: brokers with data refuse this store".into());
    }
    for (k, why) in &view.unreadable {
        err(k, format!("unreadable record: {why}"));
    }
    // Keys outside the layout, and partition records no topic owns.
    for (k, value) in raw {
        let rel = &k[keys.prefix().len()..];
        let known = match keys.parse_meta(k) {
            MetaKey::Partition(topic, p) => {
                let rec: Option<PartitionRecord> = serde_json::from_slice(value).ok();
                match (view.topic(&topic), rec) {
                    (None, _) => {
                        err(k, format!("orphan: partition record of topic {topic}, which has no topic record"));
                    }
                    (Some(t), Some(r)) if r.topic_id != t.id() => {
                        err(k, format!("orphan: partition record of an earlier topic {topic} (id {})", r.topic_id));
                    }
                    (Some(t), _) if p >= t.partition_count() => {
                        err(k, format!("orphan: partition {p}, but topic {topic} has {}", t.partition_count()));
                    }
                    _ => {}
                }
                true
            }
            MetaKey::Other => {
                rel == "/format"
                    || rel == "/cluster/id"
                    || rel == "/producer-ids/next-block"
                    || (rel.starts_with("/offsets/") && keys.parse_offset(k).is_some())
                    || (rel.starts_with("/groups/") && keys.parse_group(k).is_some())
            }
            _ => true,
        };
        if !known {
            err(k, "orphan: not a key of Laminar's layout (docs/architecture.md, \"etcd key layout\")".into());
        }
    }
    let mut warn = Vec::new();
    for name in view.topic_names() {
        let t = &view.topics[&name];
        for p in 0..t.partition_count() {
            let key = keys.partition(&name, p);
            let Some(stored) = t.partition(p) else {
                warn.push(Problem {
                    severity: "warning",
                    key,
                    problem: "not placed yet (the controller places partitions on live brokers)".into(),
                });
                continue;
            };
            let r = &stored.record;
            let unique: BTreeSet<i32> = r.replicas.iter().copied().collect();
            if r.replicas.is_empty() || unique.len() != r.replicas.len() {
                err(&key, format!("replicas {:?} are empty or list a broker twice", r.replicas));
            }
            if r.shards.len() != r.replicas.len() {
                err(&key, format!("{} shards for {} replicas", r.shards.len(), r.replicas.len()));
            }
            if let Some(m) = r.isr.iter().find(|m| !r.replicas.contains(&m.node)) {
                err(&key, format!("ISR member {} is not a replica", m.node));
            }
            if let Some(x) = r.adding.iter().chain(&r.removing).find(|x| !r.replicas.contains(x)) {
                err(&key, format!("broker {x} is being added or removed but is not a replica"));
            }
            if r.leader < 0 {
                err(&key, "no leader (offline: no in-sync replica is alive)".into());
            } else if !r.in_isr(r.leader) {
                err(&key, format!("leader {} is not in the ISR {:?}", r.leader, r.isr_nodes()));
            } else if liveness && !leader_live(r, view) {
                err(&key, format!("leader {} is not alive in the incarnation it was elected in", r.leader));
            }
            if liveness {
                let down: Vec<i32> = r.replicas.iter().copied().filter(|n| !view.brokers.contains_key(n)).collect();
                if !down.is_empty() {
                    err(&key, format!("replica(s) on broker(s) {down:?}, which are not registered (down?)"));
                }
            }
            for (i, n) in r.replicas.iter().enumerate() {
                let (Some(b), Some(s)) = (view.broker(*n), r.shards.get(i)) else { continue };
                if *s >= b.record.shards {
                    warn.push(Problem {
                        severity: "warning",
                        key: key.clone(),
                        problem: format!("broker {n} keeps it on shard {s} but runs {} shards", b.record.shards),
                    });
                }
            }
        }
    }
    if liveness {
        if !view.brokers.is_empty() && view.controller.is_none() {
            warn.push(Problem {
                severity: "warning",
                key: keys.controller(),
                problem: "brokers are registered but none is the controller (an election is due)".into(),
            });
        }
        let unowned = (0..GROUP_SLOTS)
            .filter(|&s| {
                view.coordinator(s).is_none_or(|c| view.incarnation(c.record.node_id) != Some(c.record.incarnation))
            })
            .count();
        if unowned > 0 && !view.brokers.is_empty() {
            warn.push(Problem {
                severity: "warning",
                key: keys.coordinators(),
                problem: format!(
                    "{unowned} group coordinator slot(s) have no live owner (the controller assigns them)"
                ),
            });
        }
    }
    let mut offsets_of_gone: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _) in raw {
        if let Some((_, topic, _)) = keys.parse_offset(k) {
            if view.topic(&topic).is_none() {
                *offsets_of_gone.entry(topic).or_default() += 1;
            }
        }
    }
    for (topic, n) in offsets_of_gone {
        warn.push(Problem {
            severity: "warning",
            key: keys.offsets(),
            problem: format!("{n} committed offset(s) of topic {topic}, which does not exist (deleted?)"),
        });
    }
    out.extend(warn);
    out
}

pub async fn check(ctx: &Ctx) -> Result<Report> {
    let store: &Store = ctx.store("metadata check").await?;
    let view = store.view().await?;
    let (entries, revision) = store.list_all().await?;
    let raw: Vec<(String, Vec<u8>)> = entries.into_iter().map(|(k, v)| (k, v.value)).collect();
    let liveness = store.is_etcd();
    let problems = check_invariants(&store.keys, &raw, &view, liveness);
    let errors = problems.iter().filter(|p| p.severity == "error").count();
    let partitions: i32 = view.topics.values().map(|t| t.partition_count()).sum();
    let mut r = Report::new(serde_json::json!({
        "revision": revision,
        "keys": raw.len(),
        "topics": view.topics.len(),
        "partitions": partitions,
        "brokers": view.brokers.len(),
        "errors": errors,
        "problems": problems,
    }));
    r.line(format!(
        "checked {} keys under {} in {} at revision {revision}: {} topics, {partitions} partitions, {} registered brokers",
        raw.len(),
        store.prefix_shown(),
        store.source(),
        view.topics.len(),
        view.brokers.len()
    ));
    if !liveness {
        r.line("(a stopped broker's store: leaders and replicas are not checked for being alive)");
    }
    if problems.is_empty() {
        r.line(if liveness {
            "no problems: every partition has a live leader in its ISR, replicas are on live brokers, no orphan keys"
        } else {
            "no problems: every partition has a leader in its ISR, no orphan keys"
        });
        return Ok(r);
    }
    let mut t = Table::new(&["SEVERITY", "KEY", "PROBLEM"]);
    for p in &problems {
        t.row(vec![p.severity.to_string(), p.key.clone(), p.problem.clone()]);
    }
    r.table(t);
    if errors > 0 {
        let msg = format!("{errors} invariant(s) do not hold");
        return Ok(r.fail(CtlError::condition(msg)));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use laminar_coord::cluster::records::{to_json, TopicRecord};
    use laminar_coord::{Versioned, WatchItem};

    use super::*;
    use crate::status::tests::{part, view};

    #[test]
    fn exports_round_trip_and_bad_ones_are_refused() {
        let e = Export {
            format: EXPORT_FORMAT.into(),
            version: 1,
            prefix: "/laminar".into(),
            revision: 9,
            exported_ms: 0,
            exported_at: time::format_utc(0),
            keys: vec![
                Entry::new("/format".into(), b"{\"version\":1}", false),
                Entry::new("/meta/brokers/0000000001".into(), b"{}", true),
                Entry::new("/odd".into(), &[0xff, 0x00], false),
            ],
        };
        assert_eq!(e.keys[2].value_hex.as_deref(), Some("ff00"));
        let text = serde_json::to_string(&e).unwrap();
        let back = Export::parse(&text).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.keys[2].bytes().unwrap(), vec![0xff, 0x00]);
        let keys = Keys::new("/restored");
        let batches = import_batches(&keys, &back);
        // The leased key is skipped; the format key comes alone, last.
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0], vec![Op::put("/restored/odd", vec![0xff, 0x00])]);
        assert_eq!(batches[1], vec![Op::put("/restored/format", b"{\"version\":1}".to_vec())]);
        assert!(Export::parse("{}").is_err());
        assert!(Export::parse(&text.replace(EXPORT_FORMAT, "other")).is_err());
        assert!(Export::parse(&text.replace("\"version\":1,\"prefix\"", "\"version\":2,\"prefix\"")).is_err());
        assert!(Export::parse(&text.replace("/odd", "odd")).is_err());
        assert_eq!(unhex("0g"), None);
    }

    #[test]
    fn many_keys_are_split_within_txn_limits() {
        let mut keys = vec![Entry::new("/format".into(), b"{\"version\":1}", false)];
        for i in 0..300 {
            keys.push(Entry::new(format!("/offsets/g/t/{i}"), b"{}", false));
        }
        let e = Export {
            format: EXPORT_FORMAT.into(),
            version: 1,
            prefix: "/".into(),
            revision: 1,
            exported_ms: 0,
            exported_at: String::new(),
            keys,
        };
        let batches = import_batches(&Keys::new(""), &e);
        assert!(batches.iter().all(|b| b.len() <= TXN_OPS_MAX));
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 301);
        assert_eq!(batches.last().unwrap()[0].key(), "/format");
    }

    #[test]
    fn invariants_find_leaderless_dead_and_orphan_records() {
        let k = Keys::new("/laminar");
        let id = uuid::Uuid::new_v4();
        let healthy = part(id, &[1, 2], &[0, 0], 1, &[(1, 10), (2, 20)]);
        let mut no_leader = part(id, &[1, 2], &[0, 0], -1, &[(1, 10)]);
        no_leader.leader = -1;
        let on_dead = part(id, &[1, 3], &[0, 0], 1, &[(1, 10)]);
        let v = view(&[(1, 10, 1), (2, 20, 1)], &[("t", vec![healthy.clone(), no_leader.clone(), on_dead.clone()])]);
        let topic = TopicRecord {
            id,
            partitions: 3,
            replication_factor: 2,
            configs: Default::default(),
            assignments: Default::default(),
        };
        let other = uuid::Uuid::new_v4();
        let raw = vec![
            (k.format(), b"{\"version\":1}".to_vec()),
            (k.cluster_id(), b"abc".to_vec()),
            (k.topic("t"), to_json(&topic)),
            (k.partition("t", 0), to_json(&healthy)),
            (k.partition("t", 1), to_json(&no_leader)),
            (k.partition("t", 2), to_json(&on_dead)),
            (k.partition("gone", 0), to_json(&part(other, &[1], &[0], 1, &[(1, 10)]))),
            ("/laminar/stray".to_string(), b"x".to_vec()),
            (k.offset("g", "deleted-topic", 0), b"{}".to_vec()),
        ];
        let problems = check_invariants(&k, &raw, &v, true);
        let errors: Vec<(&str, &str)> =
            problems.iter().filter(|p| p.severity == "error").map(|p| (p.key.as_str(), p.problem.as_str())).collect();
        let has = |key: &str, word: &str| errors.iter().any(|(k, p)| *k == key && p.contains(word));
        assert!(has(&k.partition("t", 1), "no leader"), "{errors:?}");
        assert!(has(&k.partition("t", 2), "not registered"), "{errors:?}");
        assert!(has(&k.partition("gone", 0), "orphan"), "{errors:?}");
        assert!(has("/laminar/stray", "orphan"), "{errors:?}");
        assert!(!errors.iter().any(|(k2, _)| *k2 == k.partition("t", 0)), "healthy: {errors:?}");
        assert!(problems.iter().any(|p| p.severity == "warning" && p.problem.contains("deleted-topic")));
        // A stopped single node's store: no liveness, so only the leaderless one fails.
        let quiet = check_invariants(&k, &raw, &v, false);
        assert!(!quiet.iter().any(|p| p.problem.contains("not registered")));
        // Built the same way as `metadata check` builds it.
        let entries: Vec<(String, Versioned)> = raw
            .iter()
            .filter(|(key, _)| key.contains("/meta/"))
            .map(|(key, val)| (key.clone(), Versioned::new(val.clone(), 1)))
            .collect();
        let rebuilt = ClusterView::empty().apply(&k, &WatchItem::Reset { revision: 2, entries });
        assert_eq!(rebuilt.topic("t").unwrap().partition_count(), 3);
    }
}

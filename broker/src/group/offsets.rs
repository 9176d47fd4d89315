//! Committed offsets: kept in memory by the group's shard, made durable in the
//! metadata store (`coord`) under `/offsets/<group>/<topic>/<partition>` — in
//! a cluster that store is etcd. Commits that arrive while a store write is in
//! flight are coalesced into the next single transaction (group commit), so a
//! busy group does not turn into one store write per commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use laminar_coord::{MetaStore, Op};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

pub const OFFSETS_PREFIX: &str = "/offsets/";
/// Most ops in one store transaction (etcd's default limit, which the embedded store enforces too).
const OPS_PER_TXN_MAX: usize = laminar_coord::TXN_OPS_MAX;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: u64,
}

/// Group ids are arbitrary strings; keep `/` (the key separator) and `%` out.
fn escape(group: &str) -> String {
    let mut out = String::with_capacity(group.len());
    for b in group.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

pub fn group_prefix(group: &str) -> String {
    format!("{OFFSETS_PREFIX}{}/", escape(group))
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> String {
    format!("{}{topic}/{partition}", group_prefix(group))
}

fn parse_key(key: &str) -> Option<(String, String, i32)> {
    let rest = key.strip_prefix(OFFSETS_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let group = unescape(parts.next()?)?;
    let topic = parts.next()?.to_string();
    let partition = parts.next()?.parse().ok()?;
    Some((group, topic, partition))
}

pub type GroupOffsets = HashMap<(String, i32), Committed>;

/// Everything committed, by group (read once at start).
pub async fn load_all(store: &Arc<dyn MetaStore>) -> anyhow::Result<HashMap<String, GroupOffsets>> {
    let mut out: HashMap<String, GroupOffsets> = HashMap::new();
    for (key, v) in store.list(OFFSETS_PREFIX).await? {
        let Some((group, topic, partition)) = parse_key(&key) else {
            tracing::warn!(key, "ignoring malformed committed-offset key");
            continue;
        };
        let committed: Committed = serde_json::from_slice(&v.value)?;
        out.entry(group).or_default().insert((topic, partition), committed);
    }
    Ok(out)
}

struct Pending {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), String>>,
}

/// One per shard: batches the shard's commits into store transactions.
#[derive(Clone)]
pub struct OffsetWriter {
    store: Arc<dyn MetaStore>,
    queue: Rc<RefCell<Vec<Pending>>>,
    wake: Rc<Notify>,
}

impl OffsetWriter {
    pub fn new(store: Arc<dyn MetaStore>) -> Self {
        OffsetWriter { store, queue: Rc::default(), wake: Rc::default() }
    }

    pub fn put_ops(group: &str, offsets: &[(String, i32, Committed)]) -> Vec<Op> {
        offsets
            .iter()
            .map(|(t, p, c)| {
                Op::put(offset_key(group, t, *p), serde_json::to_vec(c).expect("committed offset serializes"))
            })
            .collect()
    }

    /// Queues ops; the receiver resolves once they are durable.
    pub fn submit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        self.queue.borrow_mut().push(Pending { ops, done: tx });
        self.wake.notify_one();
        rx
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, String> {
        self.store.delete_prefix(prefix).await.map_err(|e| e.to_string())
    }

    /// The writer loop: everything queued during one store write goes in the next.
    pub async fn run(self) {
        loop {
            self.wake.notified().await;
            loop {
                let batch: Vec<Pending> = std::mem::take(&mut *self.queue.borrow_mut());
                if batch.is_empty() {
                    break;
                }
                // Later commits of the same key win; BTreeMap keeps it to one op each.
                let mut latest: BTreeMap<String, Op> = BTreeMap::new();
                for p in &batch {
                    for op in &p.ops {
                        latest.insert(op.key().to_string(), op.clone());
                    }
                }
                let ops: Vec<Op> = latest.into_values().collect();
                let mut result = Ok(());
                for chunk in ops.chunks(OPS_PER_TXN_MAX) {
                    if let Err(e) = self.store.txn(Vec::new(), chunk.to_vec()).await {
                        result = Err(format!("storing committed offsets: {e}"));
                        break;
                    }
                }
                for p in batch {
                    let _ = p.done.send(result.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_coord::{Compare, CoordError, EmbeddedStore, Lease, LeaseId, TxnResult, Versioned, WatchStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts transactions on top of the real embedded store.
    struct Counting {
        inner: EmbeddedStore,
        txns: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl MetaStore for Counting {
        async fn get(&self, key: &str) -> Result<Option<Versioned>, CoordError> {
            self.inner.get(key).await
        }
        async fn list_with_revision(&self, prefix: &str) -> Result<(Vec<(String, Versioned)>, u64), CoordError> {
            self.inner.list_with_revision(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<bool, CoordError> {
            self.inner.delete(key).await
        }
        async fn delete_prefix(&self, prefix: &str) -> Result<usize, CoordError> {
            self.inner.delete_prefix(prefix).await
        }
        async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult, CoordError> {
            self.txns.fetch_add(1, Ordering::SeqCst);
            self.inner.txn(compares, ops).await
        }
        fn watch(&self, prefix: &str) -> WatchStream {
            self.inner.watch(prefix)
        }
        async fn lease_grant(&self, ttl: std::time::Duration) -> Result<Lease, CoordError> {
            self.inner.lease_grant(ttl).await
        }
        async fn lease_keep_alive(&self, id: LeaseId) -> Result<Option<std::time::Duration>, CoordError> {
            self.inner.lease_keep_alive(id).await
        }
        async fn lease_revoke(&self, id: LeaseId) -> Result<(), CoordError> {
            self.inner.lease_revoke(id).await
        }
    }

    #[test]
    fn commits_queued_together_are_one_store_write_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let counting =
            Arc::new(Counting { inner: EmbeddedStore::open(dir.path()).unwrap(), txns: AtomicUsize::new(0) });
        let store: Arc<dyn MetaStore> = counting.clone();
        tokio_uring::start(async {
            let writer = OffsetWriter::new(store.clone());
            let mut waits = Vec::new();
            // 200 commits of 4 partitions by one busy group, all queued before the writer runs.
            for i in 0..200 {
                let offsets: Vec<(String, i32, Committed)> = (0..4)
                    .map(|p| {
                        let c = Committed { offset: i, leader_epoch: 0, metadata: Some(format!("m{i}")), commit_ms: 1 };
                        ("orders".to_string(), p, c)
                    })
                    .collect();
                waits.push(writer.submit(OffsetWriter::put_ops("busy/group", &offsets)));
            }
            tokio_uring::spawn(writer.clone().run());
            for w in waits {
                w.await.unwrap().unwrap();
            }
            assert_eq!(counting.txns.load(Ordering::SeqCst), 1, "one transaction for 200 commits");
            let all = load_all(&store).await.unwrap();
            let g = &all["busy/group"];
            assert_eq!(g.len(), 4);
            assert_eq!(g[&("orders".to_string(), 3)].offset, 199, "the latest commit wins");
            assert_eq!(g[&("orders".to_string(), 3)].metadata.as_deref(), Some("m199"));
        });
    }

    #[test]
    fn keys_round_trip_any_group_id() {
        for g in ["simple", "with/slash", "per%cent", "ünï code", ""] {
            let key = offset_key(g, "orders", 7);
            assert_eq!(parse_key(&key), Some((g.to_string(), "orders".to_string(), 7)), "{key}");
            assert!(key.starts_with(&group_prefix(g)));
        }
        // Prefixes of different groups never nest.
        assert!(
            !group_prefix("a").starts_with(&group_prefix("a%2F"))
                && !group_prefix("a/b").starts_with(&group_prefix("a"))
        );
    }
}

//! Before a broker joins: the store's format version (a newer one is refused,
//! never half-understood), the cluster id, the one-time move of a single
//! node's older layout, and the data directory's identity file, which ties a
//! directory to one cluster and one node id so a broker pointed at the wrong
//! etcd prefix or given the wrong `--node-id` refuses to start instead of
//! sweeping away data it does not recognise.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _};
use laminar_coord::cluster::{FormatRecord, Keys, FORMAT_VERSION};
use laminar_coord::{Compare, MetaStore, Op};

/// Where topics lived before the cluster layout (single node, empty prefix).
const LEGACY_TOPICS_PREFIX: &str = "/topics/";
/// The data directory's identity file (Kafka's name for the same thing).
pub const IDENTITY_FILE: &str = "meta.properties";

pub struct Prepared {
    pub cluster_id: String,
    /// Identifies this data directory across restarts (see `BrokerRecord`).
    pub data_dir_id: String,
}

/// Checks or sets up the store's format and cluster id, migrating a legacy
/// single-node layout, then checks or writes the data directory's identity.
pub async fn prepare(store: &dyn MetaStore, keys: &Keys, data_dir: &Path, node_id: i32) -> anyhow::Result<Prepared> {
    match store.get(&keys.format()).await? {
        Some(v) => {
            let f: FormatRecord = serde_json::from_slice(&v.value).with_context(|| {
                format!("{} holds {:?}, not a format record", keys.format(), String::from_utf8_lossy(&v.value))
            })?;
            if f.version > FORMAT_VERSION {
                bail!(
                    "the metadata store holds format {} (written by a newer Laminar); this build reads up to format {FORMAT_VERSION}",
                    f.version
                );
            }
        }
        None => {
            if keys.prefix().is_empty() {
                migrate_legacy_topics(store, keys).await?;
            }
            let format = serde_json::to_vec(&FormatRecord { version: FORMAT_VERSION })?;
            store.txn(vec![Compare::absent(keys.format())], vec![Op::put(keys.format(), format)]).await?;
        }
    }
    let cluster_id = cluster_id(store, keys).await?;
    let data_dir_id = check_identity(data_dir, &cluster_id, node_id)?;
    Ok(Prepared { cluster_id, data_dir_id })
}

/// Single-node builds kept topics at `/topics/<name>`; they move under
/// `/meta/topics/` (same record), and the controller places their partitions
/// on this node as for any topic without placement. Committed offsets and
/// producer-id blocks already sit where the cluster layout wants them.
async fn migrate_legacy_topics(store: &dyn MetaStore, keys: &Keys) -> anyhow::Result<()> {
    let legacy = store.list(LEGACY_TOPICS_PREFIX).await?;
    for (old, v) in &legacy {
        let name = old.trim_start_matches(LEGACY_TOPICS_PREFIX);
        let new = keys.topic(name);
        let r = store
            .txn(
                vec![Compare::version(old.clone(), v.version), Compare::absent(new.clone())],
                vec![Op::put(new, v.value.clone()), Op::delete(old.clone())],
            )
            .await?;
        if !r.applied {
            bail!("migrating topic {name}: {old} or its new key changed during the migration");
        }
    }
    if !legacy.is_empty() {
        tracing::info!(topics = legacy.len(), "moved topics to the cluster layout (format {FORMAT_VERSION})");
    }
    Ok(())
}

/// The cluster id is made once, by whichever broker gets there first.
async fn cluster_id(store: &dyn MetaStore, keys: &Keys) -> anyhow::Result<String> {
    let key = keys.cluster_id();
    if let Some(v) = store.get(&key).await? {
        return Ok(String::from_utf8(v.value)?);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    store.txn(vec![Compare::absent(key.clone())], vec![Op::put(key.clone(), id.clone())]).await?;
    // Another broker may have won the race: read back what stuck.
    let v = store.get(&key).await?.context("cluster id vanished right after it was written")?;
    Ok(String::from_utf8(v.value)?)
}

/// Reads (or writes, for a fresh directory) `meta.properties`: the cluster
/// and node the directory belongs to, and the directory's own id.
fn check_identity(dir: &Path, cluster_id: &str, node_id: i32) -> anyhow::Result<String> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props: BTreeMap<&str, &str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let (Some(cluster), Some(node), Some(dir_id)) =
                (props.get("cluster.id"), props.get("node.id"), props.get("directory.id"))
            else {
                bail!("{} is missing cluster.id, node.id or directory.id", path.display());
            };
            if *cluster != cluster_id {
                bail!(
                    "data directory {} belongs to cluster {cluster}, but the metadata store is cluster {cluster_id} \
                     (wrong --etcd or --etcd-prefix?)",
                    dir.display()
                );
            }
            if *node != node_id.to_string() {
                bail!("data directory {} belongs to node {node}, not --node-id {node_id}", dir.display());
            }
            Ok(dir_id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir_id = uuid::Uuid::new_v4().simple().to_string();
            let text = format!(
                "# Written by laminar at first start; ties this directory to its cluster and node.\n\
                 version=1\ncluster.id={cluster_id}\nnode.id={node_id}\ndirectory.id={dir_id}\n"
            );
            write_synced(dir, IDENTITY_FILE, text.as_bytes())?;
            Ok(dir_id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// tmp file + fsync + rename + directory fsync.
pub fn write_synced(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use laminar_coord::EmbeddedStore;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn legacy_topics_move_and_newer_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let store = EmbeddedStore::open(&dir.path().join("meta")).unwrap();
            store
                .put(
                    "/topics/orders",
                    br#"{"id":"3f1f4f1c-8f7e-4a55-9d0e-1c9b1f6a2b3c","partitions":2,"configs":{}}"#.to_vec(),
                )
                .await
                .unwrap();
            store.put("/cluster/id", b"c1".to_vec()).await.unwrap();
            let keys = Keys::new("");
            let p = prepare(&store, &keys, dir.path(), 1).await.unwrap();
            assert_eq!(p.cluster_id, "c1");
            assert!(store.get("/topics/orders").await.unwrap().is_none());
            assert!(store.get(&keys.topic("orders")).await.unwrap().is_some());
            // Idempotent on the next start; the identity file is kept.
            let again = prepare(&store, &keys, dir.path(), 1).await.unwrap();
            assert_eq!(again.data_dir_id, p.data_dir_id);
            // Another node id on this directory is refused.
            let err = prepare(&store, &keys, dir.path(), 2).await.err().unwrap().to_string();
            assert!(err.contains("belongs to node 1"), "{err}");
            store.put(&keys.format(), br#"{"version":99}"#.to_vec()).await.unwrap();
            let err = prepare(&store, &keys, dir.path(), 1).await.err().unwrap().to_string();
            assert!(err.contains("newer Laminar"), "{err}");
        });
    }

    #[test]
    fn a_directory_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let a = EmbeddedStore::open(&dir.path().join("a")).unwrap();
            prepare(&a, &Keys::new("/x"), dir.path(), 1).await.unwrap();
            let b = EmbeddedStore::open(&dir.path().join("b")).unwrap();
            let err = prepare(&b, &Keys::new("/x"), dir.path(), 1).await.err().unwrap().to_string();
            assert!(err.contains("belongs to cluster"), "{err}");
        });
    }
}

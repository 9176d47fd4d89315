//! Keeps [`Cluster::view`] current: one watch on `<P>/meta/`, every item
//! applied in order, the new view published for every thread. Items that
//! arrive together are applied together and published once, so a burst of
//! changes (a 10,000-partition create) costs one publish, not thousands.
//!
//! A view that would drop topics (a re-list, or deletions) is published
//! only while the store still holds this cluster's id: an etcd wiped or
//! replaced under a running cluster would otherwise read as "every topic
//! deleted", and every broker would delete its data. Then the broker stops,
//! loudly, and deletes nothing.

use std::sync::Arc;

use laminar_coord::WatchItem;

use super::Cluster;

/// Returns if the store holds `cluster_id`; ends the process if it holds
/// another id or none (retrying while the store cannot be read).
async fn still_ours(cluster: &Cluster, cluster_id: &str) {
    loop {
        match cluster.store.get(&cluster.keys.cluster_id()).await {
            Ok(Some(v)) if v.value == cluster_id.as_bytes() => return,
            Ok(found) => {
                let found = found.map(|v| String::from_utf8_lossy(&v.value).into_owned());
                tracing::error!(
                    expected = cluster_id,
                    found = ?found,
                    "the metadata store no longer holds this cluster (wiped or replaced?): stopping without \
                     applying it, so no partition is deleted; restore the store or start this broker on a new \
                     data directory"
                );
                std::process::exit(3);
            }
            Err(e) => {
                tracing::warn!("checking the cluster id failed (retrying): {e}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs until the store ends the watch (it is closed at shutdown).
pub async fn follow(cluster: Arc<Cluster>, cluster_id: String) {
    let mut watch = cluster.store.watch(&cluster.keys.meta());
    while let Some(first) = watch.next().await {
        let current = cluster.view();
        let mut reset = matches!(first, WatchItem::Reset { .. });
        let mut view = current.apply(&cluster.keys, &first);
        let mut items = 1;
        while let Some(more) = watch.try_next() {
            reset |= matches!(more, WatchItem::Reset { .. });
            view = view.apply(&cluster.keys, &more);
            items += 1;
        }
        let drops_topics = current.topics.keys().any(|t| !view.topics.contains_key(t));
        if (reset || drops_topics) && !current.topics.is_empty() {
            still_ours(&cluster, &cluster_id).await;
        }
        for (key, why) in &view.unreadable {
            tracing::error!(key, "ignoring a cluster record this build cannot read: {why}");
        }
        tracing::trace!(revision = view.revision, items, "cluster view updated");
        cluster.publish(view);
    }
    tracing::info!("cluster metadata watch ended");
}

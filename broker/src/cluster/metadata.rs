//! Keeps [`Cluster::view`] current: one watch on `<P>/meta/`, every item
//! applied in order, the new view published for every thread. Items that
//! arrive together are applied together and published once, so a burst of
//! changes (a 10,000-partition create) costs one publish, not thousands.

use std::sync::Arc;

use super::Cluster;

/// Runs until the store ends the watch (it is closed at shutdown).
pub async fn follow(cluster: Arc<Cluster>) {
    let mut watch = cluster.store.watch(&cluster.keys.meta());
    while let Some(first) = watch.next().await {
        let mut view = cluster.view().apply(&cluster.keys, &first);
        let mut items = 1;
        while let Some(more) = watch.try_next() {
            view = view.apply(&cluster.keys, &more);
            items += 1;
        }
        for (key, why) in &view.unreadable {
            tracing::error!(key, "ignoring a cluster record this build cannot read: {why}");
        }
        tracing::trace!(revision = view.revision, items, "cluster view updated");
        cluster.publish(view);
    }
    tracing::info!("cluster metadata watch ended");
}

//! Turns each published view into what this broker's shards hold: which
//! replicas, on which shard, in which role (from the partition record), with
//! which config; which group-coordinator slots, with their groups' committed
//! offsets. Only differences are sent. Each round's effects (logs opened,
//! slots loaded) complete in the background, rounds in order, and then the
//! round's revision counts as applied ([`Cluster::applied`]): requests that
//! changed the cluster wait for it before answering.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use laminar_coord::cluster::{ClusterView, GROUP_SLOTS};
use laminar_engine::LogConfig;
use tokio::sync::{oneshot, watch};

use super::Cluster;
use crate::group::state::snapshot::GroupSnapshot;
use crate::group::{GroupMsg, GroupOffsets};
use crate::router::Router;
use crate::shard::{Assignment, ShardMsg};
use crate::{partition_dirs, placement, topic_config};

/// What this broker holds of one partition, as last sent to a shard.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    topic_id: uuid::Uuid,
    shard: usize,
    record_version: u64,
    config: LogConfig,
    min_insync_replicas: i32,
}

pub struct Reconciler {
    cluster: Arc<Cluster>,
    router: Router,
    data_dir: PathBuf,
    topic_defaults: BTreeMap<String, String>,
    held: HashMap<(Arc<str>, i32), Held>,
    /// Coordinator slots owned, with the version of their record (the fence
    /// of offset writes).
    slots: BTreeMap<u32, u64>,
    /// Completion of the previous round: rounds complete in order.
    previous_round: Option<oneshot::Receiver<()>>,
}

impl Reconciler {
    pub fn new(
        cluster: Arc<Cluster>,
        router: Router,
        data_dir: PathBuf,
        topic_defaults: BTreeMap<String, String>,
    ) -> Self {
        Reconciler {
            cluster,
            router,
            data_dir,
            topic_defaults,
            held: HashMap::new(),
            slots: BTreeMap::new(),
            previous_round: None,
        }
    }

    /// Follows the view until shutdown. `ready` is sent once the first view's
    /// replicas are open, leftover directories swept, and (bounded by the
    /// configured startup wait) the controller has taken note of this
    /// incarnation: what this broker led before, it leads again.
    pub async fn run(mut self, ready: oneshot::Sender<()>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.cluster.subscribe();
        // The first view comes from the watch's first reset.
        if changes.wait_for(|r| *r > 0).await.is_err() {
            return;
        }
        let view = self.cluster.view();
        let done = self.round(&view).await;
        let _ = done.await;
        self.sweep(&view);
        let mut ready = Some(ready);
        let startup_deadline = tokio::time::Instant::now() + self.cluster.config.startup_wait;
        loop {
            changes.borrow_and_update();
            let view = self.cluster.view();
            let done = self.round(&view).await;
            if let Some(r) = ready.take() {
                if self.settled(&view) || tokio::time::Instant::now() >= startup_deadline {
                    let _ = done.await;
                    if !self.settled(&view) {
                        tracing::warn!(
                            "starting before the controller placed this broker's partitions and coordinators"
                        );
                    }
                    let _ = r.send(());
                } else {
                    ready = Some(r);
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)), if ready.is_some() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The controller has caught up with this incarnation: no partition names
    /// an older incarnation of ours as leader, and every coordinator slot is
    /// assigned (the ones of ours are loaded).
    fn settled(&self, view: &ClusterView) -> bool {
        let me = self.cluster.node_id();
        let inc = self.cluster.incarnation();
        let stale = view.topics.values().flat_map(|t| t.partitions.iter().flatten()).any(|p| {
            let r = &p.record;
            (r.leader == me && r.leader_incarnation != inc) || (r.leader < 0 && r.in_isr(me))
        });
        let slots_assigned = view
            .coordinators
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| view.incarnation(c.record.node_id) == Some(c.record.incarnation)));
        let mine_loaded = self.slots == self.owned_slots(view);
        !stale && slots_assigned && mine_loaded && view.controller.is_some()
    }

    /// Sends this view's differences to the shards; the receiver completes
    /// when their effects are done, and then marks the revision applied.
    async fn round(&mut self, view: &Arc<ClusterView>) -> oneshot::Receiver<()> {
        let mut waits = self.replicas(view).await;
        waits.extend(self.coordinator_slots(view).await);
        let previous = self.previous_round.take();
        let (tx, rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        self.previous_round = Some(rx);
        let cluster = self.cluster.clone();
        let revision = view.revision;
        tokio::spawn(async move {
            if let Some(p) = previous {
                let _ = p.await;
            }
            for w in waits {
                let _ = w.await;
            }
            cluster.set_applied(revision);
            let _ = tx.send(());
            let _ = done_tx.send(());
        });
        done_rx
    }

    fn log_config(&self, configs: &BTreeMap<String, String>) -> LogConfig {
        topic_config::log_config(configs, &self.topic_defaults).unwrap_or_else(|e| {
            // Validated when written; a store edited by hand falls back to defaults.
            tracing::error!("stored topic config is invalid ({e}); using defaults");
            LogConfig::default()
        })
    }

    async fn replicas(&mut self, view: &ClusterView) -> Vec<oneshot::Receiver<()>> {
        let me = self.cluster.node_id();
        let shards = self.cluster.shards;
        let mut waits = Vec::new();
        let mut wanted: HashSet<(Arc<str>, i32)> = HashSet::new();
        for (name, t) in &view.topics {
            let topic: Arc<str> = Arc::from(name.as_str());
            let config = self.log_config(&t.topic.record.configs);
            let min_insync_replicas =
                topic_config::min_insync_replicas(&t.topic.record.configs, &self.topic_defaults).unwrap_or(1);
            for (p, stored) in t.partitions.iter().enumerate() {
                let Some(stored) = stored else { continue };
                let Some(shard) = placement::local_shard(&stored.record, me, shards) else { continue };
                let key = (topic.clone(), p as i32);
                wanted.insert(key.clone());
                let next = Held {
                    topic_id: t.id(),
                    shard,
                    record_version: stored.version,
                    config: config.clone(),
                    min_insync_replicas,
                };
                if self.held.get(&key) == Some(&next) {
                    continue;
                }
                if let Some(old) = self.held.get(&key).filter(|h| h.shard != shard && h.topic_id == next.topic_id) {
                    // Moving between this broker's shards: close on the old one first.
                    let (tx, rx) = oneshot::channel();
                    let msg =
                        ShardMsg::Unassign { topic: topic.clone(), partition: p as i32, delete: false, reply: tx };
                    if self.router.send(old.shard, msg).is_ok() {
                        let _ = rx.await;
                    }
                }
                let assignment = Assignment {
                    topic: topic.clone(),
                    partition: p as i32,
                    record: stored.clone(),
                    config: config.clone(),
                    min_insync_replicas,
                };
                let (tx, rx) = oneshot::channel();
                if self.router.send(shard, ShardMsg::Assign { assignment, reply: tx }).is_ok() {
                    waits.push(rx);
                }
                self.held.insert(key, next);
            }
        }
        let gone: Vec<(Arc<str>, i32)> = self.held.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
        for key in gone {
            let held = self.held.remove(&key).expect("listed");
            let (tx, rx) = oneshot::channel();
            let msg = ShardMsg::Unassign { topic: key.0.clone(), partition: key.1, delete: true, reply: tx };
            if self.router.send(held.shard, msg).is_ok() {
                waits.push(rx);
            }
        }
        waits
    }

    /// Slots this broker coordinates (in this incarnation) and their versions.
    fn owned_slots(&self, view: &ClusterView) -> BTreeMap<u32, u64> {
        let (me, inc) = (self.cluster.node_id(), self.cluster.incarnation());
        (0..GROUP_SLOTS)
            .filter_map(|s| {
                let c = view.coordinator(s)?;
                (c.record.node_id == me && c.record.incarnation == inc).then_some((s, c.version))
            })
            .collect()
    }

    async fn coordinator_slots(&mut self, view: &ClusterView) -> Vec<oneshot::Receiver<()>> {
        let owned = self.owned_slots(view);
        if owned == self.slots {
            return Vec::new();
        }
        let gained: HashSet<u32> =
            owned.iter().filter(|(s, v)| self.slots.get(s) != Some(v)).map(|(s, _)| *s).collect();
        // The committed offsets of the groups of gained slots, read once.
        let mut loaded: Vec<HashMap<String, GroupOffsets>> = vec![HashMap::new(); self.cluster.shards];
        let mut snapshots: Vec<HashMap<String, GroupSnapshot>> = vec![HashMap::new(); self.cluster.shards];
        if !gained.is_empty() {
            let loading = async {
                let offsets = crate::group::offsets::load_slots(&self.cluster, &gained).await?;
                let groups = crate::group::offsets::load_snapshots(&self.cluster, &gained).await?;
                anyhow::Ok((offsets, groups))
            };
            match loading.await {
                Ok((offsets, groups)) => {
                    for (group, offsets) in offsets {
                        loaded[placement::group_shard(&group, self.cluster.shards)].insert(group, offsets);
                    }
                    for (group, snapshot) in groups {
                        snapshots[placement::group_shard(&group, self.cluster.shards)].insert(group, snapshot);
                    }
                }
                Err(e) => {
                    // Retried on the next round: the slots stay unowned here meanwhile.
                    tracing::warn!("loading committed offsets of gained coordinator slots failed: {e}");
                    return Vec::new();
                }
            }
        }
        self.slots = owned.clone();
        let mut waits = Vec::new();
        for (shard, (offsets, snapshots)) in loaded.into_iter().zip(snapshots).enumerate() {
            let (tx, rx) = oneshot::channel();
            let msg = GroupMsg::Slots { owned: owned.clone(), gained: gained.clone(), offsets, snapshots, reply: tx };
            if self.router.send(shard, ShardMsg::Group(msg)).is_ok() {
                waits.push(rx);
            }
        }
        tracing::info!(slots = owned.len(), gained = gained.len(), "group coordinator slots of this broker changed");
        waits
    }

    /// Removes partition directories nobody assigns to this broker (deleted
    /// while it was down, moved away) and leftovers of interrupted removals.
    fn sweep(&self, _view: &ClusterView) {
        let keep: HashSet<(String, i32)> = self.held.keys().map(|(t, p)| (t.to_string(), *p)).collect();
        let dir = self.data_dir.clone();
        match partition_dirs::sweep(&dir, &keep) {
            Ok(removed) => {
                for p in removed {
                    tracing::info!(dir = %p.display(), "removed a partition directory this broker no longer holds");
                }
            }
            Err(e) => tracing::warn!(dir = %dir.display(), "sweeping partition directories failed: {e}"),
        }
    }
}

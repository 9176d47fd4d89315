//! Prometheus metrics (`--metrics-listen HOST:PORT`, `GET /metrics`).
//!
//! The request path never takes a lock for a metric. What a shard counts is
//! the shard's own:
//! - fixed-shape counters (requests, latency and in-flight per API, mailbox
//!   depth) are atomics in the shard's `ShardCounters`, written only by that
//!   shard's thread with plain loads and stores (`Relaxed`, no locked
//!   read-modify-write) and read by the scraping thread;
//! - counters whose shape changes (bytes per topic, ISR changes) are plain
//!   `Cell`s and maps in a thread-local of the shard, handed over when the
//!   scraper asks the shard for its report (`ShardMsg::Metrics`, one message
//!   per shard per scrape) together with what only the shard knows: its
//!   replicas' roles and ISRs, high watermarks and its groups' committed
//!   offsets.
//!
//! What is not per shard (fsync latency: `laminar_engine::stats`; metadata
//! store requests and lease renewals: `store.rs`) is counted in shared
//! atomics, on operations that cost microseconds to milliseconds. Per-shard
//! CPU time and io_uring counts are read from /proc at scrape time
//! (`procfs.rs`) and cost the shards nothing.
//!
//! The HTTP side (`http.rs`) is one thread serving one connection at a time.
//! Everything is encoded by the `prometheus-client` crate (`collect.rs`).

mod collect;
mod http;
mod procfs;
pub mod store;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use laminar_engine::stats::Histogram;

pub use http::{bind, serve};

/// API keys counted: every Kafka API key is below this.
const API_KEYS: usize = 128;

/// One API's counters on one shard.
#[derive(Default)]
pub struct ApiCounters {
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub latency: Histogram,
}

/// A shard's fixed-shape counters. Aligned so two shards' counters never
/// share a cache line.
#[repr(align(128))]
pub struct ShardCounters {
    pub apis: [ApiCounters; API_KEYS],
    /// Messages waiting in the shard's mailbox, as last seen by the shard.
    pub mailbox_depth: AtomicU64,
    /// The shard thread's Linux thread id (0 until it starts), for its CPU time.
    pub tid: AtomicI32,
    /// The shard's io_uring descriptor (-1 if not found), for its counts.
    pub ring_fd: AtomicI32,
}

impl ShardCounters {
    fn new() -> Self {
        ShardCounters {
            apis: std::array::from_fn(|_| ApiCounters::default()),
            mailbox_depth: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            ring_fd: AtomicI32::new(-1),
        }
    }
}

/// Adds on a counter this thread alone writes.
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

static SHARDS: OnceLock<Vec<Arc<ShardCounters>>> = OnceLock::new();

/// Makes the counters of `shards` shards (once per process).
pub fn init(shards: usize) {
    let _ = SHARDS.set((0..shards).map(|_| Arc::new(ShardCounters::new())).collect());
}

pub(crate) fn shard_counters() -> &'static [Arc<ShardCounters>] {
    SHARDS.get().map_or(&[], Vec::as_slice)
}

/// Bytes moved for one topic by one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicIo {
    /// Record batches received in Produce requests.
    pub bytes_in: u64,
    /// Record bytes sent in Fetch responses to consumers.
    pub bytes_out_consumer: u64,
    /// Record bytes sent in Fetch responses to followers (replication).
    pub bytes_out_follower: u64,
}

/// The metrics a shard's thread keeps for itself.
struct Local {
    counters: &'static ShardCounters,
    /// Bounded by the topics of the cluster view: entries of topics no
    /// longer in it are dropped at each report.
    topics: RefCell<HashMap<Arc<str>, TopicIo>>,
    isr_shrinks: Cell<u64>,
    isr_expands: Cell<u64>,
}

thread_local! {
    static LOCAL: OnceCell<Local> = const { OnceCell::new() };
}

fn with_local(f: impl FnOnce(&Local)) {
    LOCAL.with(|l| {
        if let Some(l) = l.get() {
            f(l)
        }
    });
}

/// Called on shard `id`'s thread as it starts: from now on what this thread
/// counts is that shard's. Threads that never call it count nothing.
pub fn enter_shard(id: usize) {
    let Some(counters) = shard_counters().get(id) else { return };
    let counters: &'static ShardCounters = counters;
    // SAFETY: gettid has no preconditions.
    counters.tid.store(unsafe { libc::gettid() }, Relaxed);
    LOCAL.with(|l| {
        let _ = l.set(Local {
            counters,
            topics: RefCell::new(HashMap::new()),
            isr_shrinks: Cell::new(0),
            isr_expands: Cell::new(0),
        });
    });
}

/// Notes the io_uring descriptor of shard `id` (`procfs::claim_ring`).
pub fn set_ring_fd(id: usize, fd: Option<i32>) {
    if let (Some(c), Some(fd)) = (shard_counters().get(id), fd) {
        c.ring_fd.store(fd, Relaxed);
    }
}

pub use procfs::{claim_ring, ring_start_lock};

/// One request being handled, from its whole frame read to its response
/// ready: counted in flight until dropped, and in the latency histogram
/// when finished.
pub struct RequestTimer {
    api: Option<&'static ApiCounters>,
    started: Instant,
}

impl RequestTimer {
    /// `frame` starts with the request's API key (the connection checked it
    /// holds at least a header's worth).
    pub fn start(frame: &[u8]) -> RequestTimer {
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let mut api = None;
        if (0..API_KEYS as i16).contains(&key) {
            with_local(|l| {
                let a = &l.counters.apis[key as usize];
                bump(&a.in_flight, 1);
                api = Some(a);
            });
        }
        RequestTimer { api, started: Instant::now() }
    }

    pub fn finish(self) {
        if let Some(a) = self.api {
            bump(&a.requests, 1);
            a.latency.record_owned(self.started.elapsed());
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if let Some(a) = self.api {
            a.in_flight.store(a.in_flight.load(Relaxed).saturating_sub(1), Relaxed);
        }
    }
}

fn topic_io(topic: &Arc<str>, f: impl FnOnce(&mut TopicIo)) {
    with_local(|l| {
        let mut topics = l.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => f(t),
            None => f(topics.entry(topic.clone()).or_default()),
        }
    });
}

/// Record bytes a Produce request brought for `topic`.
pub fn bytes_in(topic: &Arc<str>, bytes: u64) {
    topic_io(topic, |t| t.bytes_in += bytes);
}

/// Record bytes a Fetch response carries for `topic`.
pub fn bytes_out(topic: &Arc<str>, bytes: u64, follower: bool) {
    if bytes > 0 {
        topic_io(topic, |t| if follower { t.bytes_out_follower += bytes } else { t.bytes_out_consumer += bytes });
    }
}

/// An ISR change this broker (as leader) wrote.
pub fn isr_changed(shrunk: bool) {
    with_local(|l| {
        let c = if shrunk { &l.isr_shrinks } else { &l.isr_expands };
        c.set(c.get() + 1);
    });
}

/// The shard's mailbox holds `depth` messages.
pub fn mailbox_depth(depth: usize) {
    with_local(|l| l.counters.mailbox_depth.store(depth as u64, Relaxed));
}

/// Replicas a shard holds, by what they are doing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplicaCounts {
    pub leader: u64,
    pub follower: u64,
    pub waiting: u64,
    pub opening: u64,
    pub offline: u64,
    /// Led here, with fewer in-sync replicas than replicas.
    pub under_replicated: u64,
    /// Led here, with fewer in-sync replicas than `min.insync.replicas`.
    pub under_min_isr: u64,
}

/// A replica's high watermark, and whether this broker leads it.
#[derive(Debug)]
pub struct ReplicaHw {
    pub topic: Arc<str>,
    pub partition: i32,
    pub high_watermark: u64,
    pub led: bool,
}

/// What one shard tells the scraper (`ShardMsg::Metrics`).
#[derive(Debug, Default)]
pub struct ShardReport {
    pub topics: Vec<(Arc<str>, TopicIo)>,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub replicas: ReplicaCounts,
    /// High watermark of every online replica.
    pub high_watermarks: Vec<ReplicaHw>,
    /// Committed offsets of the groups this shard coordinates:
    /// (group, topic, partition, offset).
    pub committed: Vec<(String, String, i32, i64)>,
}

/// Builds the shard's report, on its own thread.
pub fn shard_report(shard: &crate::shard::Shard, groups: &crate::group::GroupManager) -> ShardReport {
    use crate::shard::{Role, Status};
    let mut r = ShardReport::default();
    let view = shard.cluster.view();
    with_local(|l| {
        let mut topics = l.topics.borrow_mut();
        topics.retain(|t, _| view.topic(t).is_some());
        r.topics = topics.iter().map(|(t, io)| (t.clone(), *io)).collect();
        r.isr_shrinks = l.isr_shrinks.get();
        r.isr_expands = l.isr_expands.get();
    });
    for (key, replica) in &shard.replicas {
        let c = &mut r.replicas;
        match (&replica.status, &replica.role) {
            (Status::Opening, _) => c.opening += 1,
            (Status::Offline(_), _) => c.offline += 1,
            (Status::Online(_), Role::Leader(_)) => {
                c.leader += 1;
                let rec = &replica.record.record;
                c.under_replicated += u64::from(rec.isr.len() < rec.replicas.len());
                c.under_min_isr += u64::from((rec.isr.len() as i32) < replica.min_insync_replicas);
            }
            (Status::Online(_), Role::Follower { .. }) => c.follower += 1,
            (Status::Online(_), Role::Waiting) => c.waiting += 1,
        }
        if let Some(log) = replica.log() {
            let led = matches!(replica.role, Role::Leader(_));
            let (topic, partition) = (key.0.clone(), key.1);
            r.high_watermarks.push(ReplicaHw { topic, partition, high_watermark: log.high_watermark(), led });
        }
    }
    r.committed = groups.committed_offsets();
    r
}

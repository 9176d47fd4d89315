//! One scrape: gathers what the shards and the shared counters hold into a
//! `Snapshot`, and encodes it with `prometheus-client` (OpenMetrics text).
//! docs/operations.md ("Metrics") says what each metric means.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use laminar_engine::stats::{self, HistogramSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use super::procfs::{self, Wide};
use super::store;
use super::{shard_counters, ShardReport, TopicIo};
use crate::cluster::Cluster;
use crate::router::Router;
use crate::shard::ShardMsg;

/// How long a scrape waits for the shards' reports. A shard that has not
/// answered by then (stuck, or busy for that long) is left out of this
/// scrape and counted in `laminar_metrics_shards_unanswered`.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

type Labels = Vec<(&'static str, String)>;

/// What one scrape found.
#[derive(Debug, Default)]
struct Snapshot {
    node_id: i32,
    acting: bool,
    /// (shard, api key) → (requests, in flight, latency).
    apis: Vec<(usize, i16, u64, u64, HistogramSnapshot)>,
    mailbox_depth: Vec<u64>,
    cpu_seconds: Vec<Option<f64>>,
    rings: Vec<Option<(u64, u64)>>,
    reports: Vec<Option<ShardReport>>,
    syncs: Vec<(&'static str, HistogramSnapshot)>,
    store_kind: &'static str,
    store_ops: Vec<(&'static str, HistogramSnapshot, u64)>,
    renewals: [(&'static str, u64); 3],
    previous_scrape_seconds: f64,
}

/// The metrics thread's state between scrapes.
pub struct Scraper {
    router: Router,
    cluster: Arc<Cluster>,
    rt: tokio::runtime::Runtime,
    /// Each shard's ring counts, extended past 32 bits.
    rings: Vec<(Wide, Wide)>,
    previous_scrape: Duration,
}

impl Scraper {
    pub fn new(router: Router, cluster: Arc<Cluster>) -> anyhow::Result<Scraper> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        let rings = vec![(Wide::default(), Wide::default()); router.shards()];
        Ok(Scraper { router, cluster, rt, rings, previous_scrape: Duration::ZERO })
    }

    /// Reads the rings' counters (often enough that none wraps unseen).
    pub fn sample_rings(&mut self) -> Vec<Option<(u64, u64)>> {
        let mut out = Vec::with_capacity(self.rings.len());
        for (i, c) in shard_counters().iter().enumerate() {
            let fd = c.ring_fd.load(Relaxed);
            let counts = (fd >= 0).then(|| procfs::ring_counts(fd)).flatten();
            out.push(counts.map(|(sq, cq)| {
                let (s, c) = &mut self.rings[i];
                s.update(sq);
                c.update(cq);
                (s.total, c.total)
            }));
        }
        out
    }

    /// The whole exposition, as text.
    pub fn scrape(&mut self) -> String {
        let started = Instant::now();
        let snapshot = self.gather();
        let mut registry = Registry::with_prefix("laminar");
        registry.register_collector(Box::new(snapshot));
        let mut out = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        self.previous_scrape = started.elapsed();
        out
    }

    fn gather(&mut self) -> Snapshot {
        // Ask first, so the shards work on their reports while the rest is read.
        let asked: Vec<Option<oneshot::Receiver<ShardReport>>> = (0..self.router.shards())
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                self.router.send(i, ShardMsg::Metrics { reply: tx }).ok().map(|()| rx)
            })
            .collect();
        let counters = shard_counters();
        let mut s = Snapshot {
            node_id: self.cluster.node_id(),
            acting: self.cluster.is_acting(),
            previous_scrape_seconds: self.previous_scrape.as_secs_f64(),
            ..Default::default()
        };
        for (shard, c) in counters.iter().enumerate() {
            for (key, a) in c.apis.iter().enumerate() {
                let requests = a.requests.load(Relaxed);
                let in_flight = a.in_flight.load(Relaxed);
                if requests > 0 || in_flight > 0 {
                    s.apis.push((shard, key as i16, requests, in_flight, a.latency.snapshot()));
                }
            }
            s.mailbox_depth.push(c.mailbox_depth.load(Relaxed));
            s.cpu_seconds.push(procfs::thread_cpu_ns(c.tid.load(Relaxed)).map(|ns| ns as f64 / 1e9));
        }
        s.rings = self.sample_rings();
        s.syncs = vec![
            ("fdatasync", stats::FDATASYNC.snapshot()),
            ("fsync", stats::FSYNC.snapshot()),
            ("dir_fsync", stats::DIR_FSYNC.snapshot()),
        ];
        s.store_kind = store::KIND.get().copied().unwrap_or("embedded");
        s.store_ops = store::OPS
            .iter()
            .enumerate()
            .map(|(i, op)| (*op, store::STATS.ops[i].snapshot(), store::STATS.errors[i].load(Relaxed)))
            .collect();
        s.renewals = [
            ("ok", store::STATS.renewals_ok.load(Relaxed)),
            ("expired", store::STATS.renewals_expired.load(Relaxed)),
            ("error", store::STATS.renewals_failed.load(Relaxed)),
        ];
        let deadline = tokio::time::Instant::now() + REPORT_TIMEOUT;
        s.reports = self.rt.block_on(async {
            let mut out = Vec::with_capacity(asked.len());
            for rx in asked {
                out.push(match rx {
                    Some(rx) => tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok),
                    None => None,
                });
            }
            out
        });
        s
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("api{key}"), |a| format!("{a:?}"))
}

fn shard_label(shard: usize) -> Labels {
    vec![("shard", shard.to_string())]
}

/// Writes one metric family: its descriptor, then one sample per label set.
fn family<'a, L: EncodeLabelSet + 'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (&'a L, Value)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let fm = m.encode_family(labels)?;
        value.encode(fm)?;
    }
    Ok(())
}

enum Value {
    Counter(u64),
    CounterF(f64),
    Gauge(f64),
    Histogram(HistogramSnapshot),
}

impl Value {
    fn encode(&self, mut m: MetricEncoder) -> std::fmt::Result {
        match self {
            Value::Counter(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::CounterF(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::Gauge(v) => m.encode_gauge(v),
            Value::Histogram(h) => {
                m.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count(), &h.buckets_seconds(), None)
            }
        }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut enc;
        let info: Labels = vec![("node_id", self.node_id.to_string()), ("version", env!("CARGO_PKG_VERSION").into())];
        family(
            e,
            "broker_info",
            "This broker's node id and version (always 1).",
            MetricType::Gauge,
            [(&info, Value::Gauge(1.0))],
        )?;
        let none: Labels = Vec::new();
        family(
            e,
            "lease_acting",
            "1 while this broker holds a live lease and may act (lead, coordinate); 0 when cut off.",
            MetricType::Gauge,
            [(&none, Value::Gauge(if self.acting { 1.0 } else { 0.0 }))],
        )?;

        // Requests, per API (summed over shards) and in flight per shard.
        let mut by_api: BTreeMap<i16, (u64, HistogramSnapshot)> = BTreeMap::new();
        for (_, key, requests, _, h) in &self.apis {
            let e = by_api.entry(*key).or_default();
            e.0 += requests;
            e.1.merge(h);
        }
        let api_labels: Vec<(Labels, i16)> = by_api.keys().map(|k| (vec![("api", api_name(*k))], *k)).collect();
        family(
            e,
            "requests",
            "Requests answered (or dropped with their connection), by Kafka API.",
            MetricType::Counter,
            api_labels.iter().map(|(l, k)| (l, Value::Counter(by_api[k].0))),
        )?;
        family(
            e,
            "request_duration_seconds",
            "Time from a request's whole frame read to its response ready, by Kafka API (a Fetch's long poll included).",
            MetricType::Histogram,
            api_labels.iter().map(|(l, k)| (l, Value::Histogram(by_api[k].1))),
        )?;
        let in_flight: Vec<(Labels, u64)> = self
            .apis
            .iter()
            .map(|(shard, key, _, n, _)| (vec![("shard", shard.to_string()), ("api", api_name(*key))], *n))
            .collect();
        family(
            e,
            "requests_in_flight",
            "Requests being handled by connections of a shard, by Kafka API.",
            MetricType::Gauge,
            in_flight.iter().map(|(l, n)| (l, Value::Gauge(*n as f64))),
        )?;

        // Shards.
        let shards: Vec<Labels> = (0..self.mailbox_depth.len()).map(shard_label).collect();
        family(
            e,
            "shard_mailbox_depth",
            "Messages (produce appends, fetch reads, group operations, ...) waiting for a shard.",
            MetricType::Gauge,
            shards.iter().zip(&self.mailbox_depth).map(|(l, d)| (l, Value::Gauge(*d as f64))),
        )?;
        family(
            e,
            "shard_busy_seconds",
            "CPU time of a shard's thread (its rate is the share of a core the shard keeps busy).",
            MetricType::Counter,
            shards.iter().zip(&self.cpu_seconds).filter_map(|(l, s)| Some((l, Value::CounterF((*s)?)))),
        )?;
        family(
            e,
            "io_uring_submissions",
            "Operations a shard's io_uring handed to the kernel.",
            MetricType::Counter,
            shards.iter().zip(&self.rings).filter_map(|(l, r)| Some((l, Value::Counter(r.as_ref()?.0)))),
        )?;
        family(
            e,
            "io_uring_completions",
            "Completions a shard's io_uring received from the kernel.",
            MetricType::Counter,
            shards.iter().zip(&self.rings).filter_map(|(l, r)| Some((l, Value::Counter(r.as_ref()?.1)))),
        )?;
        let unanswered = self.reports.iter().filter(|r| r.is_none()).count();
        family(
            e,
            "metrics_shards_unanswered",
            "Shards that did not send their report to this scrape in time (their partition, topic and group metrics are missing).",
            MetricType::Gauge,
            [(&none, Value::Gauge(unanswered as f64))],
        )?;
        family(
            e,
            "metrics_previous_scrape_seconds",
            "How long the previous scrape took to gather and encode.",
            MetricType::Gauge,
            [(&none, Value::Gauge(self.previous_scrape_seconds))],
        )?;

        // Partitions, from the shards' reports.
        let reports: Vec<(usize, &ShardReport)> =
            self.reports.iter().enumerate().filter_map(|(i, r)| Some((i, r.as_ref()?))).collect();
        let mut roles: Vec<(Labels, u64)> = Vec::new();
        for (shard, r) in &reports {
            let c = &r.replicas;
            for (role, n) in [
                ("leader", c.leader),
                ("follower", c.follower),
                ("waiting", c.waiting),
                ("opening", c.opening),
                ("offline", c.offline),
            ] {
                roles.push((vec![("shard", shard.to_string()), ("role", role.into())], n));
            }
        }
        family(
            e,
            "partitions",
            "Partition replicas a shard holds, by role (leader: partitions it leads).",
            MetricType::Gauge,
            roles.iter().map(|(l, n)| (l, Value::Gauge(*n as f64))),
        )?;
        let sum = |f: &dyn Fn(&ShardReport) -> u64| reports.iter().map(|(_, r)| f(r)).sum::<u64>();
        family(
            e,
            "under_replicated_partitions",
            "Partitions this broker leads whose ISR is smaller than their replica set.",
            MetricType::Gauge,
            [(&none, Value::Gauge(sum(&|r| r.replicas.under_replicated) as f64))],
        )?;
        family(
            e,
            "under_min_isr_partitions",
            "Partitions this broker leads with fewer in-sync replicas than min.insync.replicas (acks=all produce fails).",
            MetricType::Gauge,
            [(&none, Value::Gauge(sum(&|r| r.replicas.under_min_isr) as f64))],
        )?;
        family(
            e,
            "isr_shrinks",
            "ISR shrinks this broker wrote as leader (followers that fell behind).",
            MetricType::Counter,
            [(&none, Value::Counter(sum(&|r| r.isr_shrinks)))],
        )?;
        family(
            e,
            "isr_expands",
            "ISR expansions this broker wrote as leader (followers that caught up).",
            MetricType::Counter,
            [(&none, Value::Counter(sum(&|r| r.isr_expands)))],
        )?;

        // Topics.
        let mut topics: BTreeMap<&str, TopicIo> = BTreeMap::new();
        for (_, r) in &reports {
            for (t, io) in &r.topics {
                let e = topics.entry(t).or_default();
                e.bytes_in += io.bytes_in;
                e.bytes_out_consumer += io.bytes_out_consumer;
                e.bytes_out_follower += io.bytes_out_follower;
            }
        }
        let topic_labels: Vec<(Labels, TopicIo)> =
            topics.iter().map(|(t, io)| (vec![("topic", t.to_string())], *io)).collect();
        family(
            e,
            "topic_bytes_in",
            "Record batch bytes received in Produce requests, by topic.",
            MetricType::Counter,
            topic_labels.iter().map(|(l, io)| (l, Value::Counter(io.bytes_in))),
        )?;
        let out_labels: Vec<(Labels, u64)> = topics
            .iter()
            .flat_map(|(t, io)| {
                [("consumer", io.bytes_out_consumer), ("follower", io.bytes_out_follower)]
                    .map(|(who, n)| (vec![("topic", t.to_string()), ("fetcher", who.to_string())], n))
            })
            .collect();
        family(
            e,
            "topic_bytes_out",
            "Record bytes sent in Fetch responses, by topic and by who fetched (consumer or follower).",
            MetricType::Counter,
            out_labels.iter().map(|(l, n)| (l, Value::Counter(*n))),
        )?;

        // Consumer lag: committed offsets of groups coordinated here against
        // the high watermark of a replica held here (the leader's if here).
        let mut hw: HashMap<(&str, i32), (u64, bool)> = HashMap::new();
        for (_, r) in &reports {
            for r in &r.high_watermarks {
                let e = hw.entry((&r.topic, r.partition)).or_insert((r.high_watermark, r.led));
                if r.led || !e.1 {
                    *e = (r.high_watermark, r.led);
                }
            }
        }
        let mut lags: Vec<(Labels, u64)> = Vec::new();
        for (_, r) in &reports {
            for (group, topic, partition, offset) in &r.committed {
                if let Some((h, _)) = hw.get(&(topic.as_str(), *partition)) {
                    let labels =
                        vec![("group", group.clone()), ("topic", topic.clone()), ("partition", partition.to_string())];
                    lags.push((labels, h.saturating_sub((*offset).max(0) as u64)));
                }
            }
        }
        lags.sort();
        family(
            e,
            "consumer_group_lag",
            "Records between a group's committed offset and the partition's high watermark (groups coordinated here, partitions with a replica here).",
            MetricType::Gauge,
            lags.iter().map(|(l, n)| (l, Value::Gauge(*n as f64))),
        )?;

        // Disk and metadata store.
        let syncs: Vec<(Labels, HistogramSnapshot)> =
            self.syncs.iter().map(|(k, h)| (vec![("kind", k.to_string())], *h)).collect();
        family(
            e,
            "fsync_duration_seconds",
            "Duration of every fdatasync (log data), fsync (checkpoints, truncations) and directory fsync.",
            MetricType::Histogram,
            syncs.iter().map(|(l, h)| (l, Value::Histogram(*h))),
        )?;
        let ops: Vec<(Labels, HistogramSnapshot, u64)> = self
            .store_ops
            .iter()
            .filter(|(_, h, errors)| h.count() > 0 || *errors > 0)
            .map(|(op, h, errors)| (vec![("store", self.store_kind.to_string()), ("op", op.to_string())], *h, *errors))
            .collect();
        family(
            e,
            "metastore_request_duration_seconds",
            "Duration of requests to the metadata store (etcd in a cluster, the embedded store on a single node), by operation.",
            MetricType::Histogram,
            ops.iter().map(|(l, h, _)| (l, Value::Histogram(*h))),
        )?;
        family(
            e,
            "metastore_request_errors",
            "Requests to the metadata store that failed (unreachable, timed out), by operation.",
            MetricType::Counter,
            ops.iter().map(|(l, _, n)| (l, Value::Counter(*n))),
        )?;
        let renewals: Vec<(Labels, u64)> =
            self.renewals.iter().map(|(r, n)| (vec![("result", r.to_string())], *n)).collect();
        family(
            e,
            "lease_renewals",
            "Lease keep-alives sent to the metadata store, by result (ok; expired: the broker had lost its lease; error).",
            MetricType::Counter,
            renewals.iter().map(|(l, n)| (l, Value::Counter(*n))),
        )?;
        Ok(())
    }
}

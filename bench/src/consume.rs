//! One consumer: a client of its own, reading its share of the partitions straight from their
//! leaders (no consumer group: the offsets live here), one sessionless fetch per leader at a time.
//!
//! Each record's value header gives the send time (end-to-end latency) and the producer id and
//! sequence (verification). Records are slices of the fetched bytes; nothing is copied.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use laminar_client::{BatchReader, BrokerConnection, Client, ClientConfig, FetchOptions, FetchResult, FetchTarget};
use laminar_client::{OffsetSpec, Result};
use tokio::sync::watch;

use crate::errors::{broker_error, client_error, is_stale_metadata};
use crate::record_format::ValueHeader;
use crate::stats::{SharedStats, SideStats};
use crate::verify::DeliveryLog;
use crate::window::Window;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const FAILURE_BACKOFF: Duration = Duration::from_millis(100);

/// What the run wants consumers to do now.
#[derive(Debug, Clone)]
pub enum Control {
    Run,
    /// Read every partition up to its target offset, giving up at the deadline.
    Drain {
        targets: Arc<HashMap<i32, i64>>,
        deadline: Instant,
    },
    Stop,
}

pub struct ConsumerSpec {
    pub topic: String,
    pub client: ClientConfig,
    /// (partition, first offset to read).
    pub assignment: Vec<(i32, i64)>,
    pub fetch: FetchOptions,
    pub partition_max_bytes: i32,
    /// Producer ids of this run; `None` accepts records of any bench run.
    pub producer_ids: Option<Range<u32>>,
    /// Measure by each record's send time (e2e, verify) rather than by when it was read.
    pub window_by_send_time: bool,
    pub verify: bool,
    /// Stop once this many records were read by all consumers together.
    pub record_limit: Option<u64>,
}

pub struct ConsumerOutcome {
    pub log: DeliveryLog,
    pub finished_at: Instant,
}

struct PartitionState {
    partition: i32,
    next_offset: i64,
    leader: Option<Arc<BrokerConnection>>,
    /// Set after OFFSET_OUT_OF_RANGE: look up the earliest offset before fetching again.
    reset: bool,
}

pub async fn run_consumer(
    spec: ConsumerSpec,
    window: Window,
    stats: SharedStats,
    mut control: watch::Receiver<Control>,
    consumed: Arc<AtomicU64>,
) -> Result<ConsumerOutcome> {
    let mut log = DeliveryLog::default();
    if spec.assignment.is_empty() {
        return Ok(ConsumerOutcome { log, finished_at: Instant::now() });
    }
    let client = Client::connect(spec.client.clone()).await?;
    let mut parts: Vec<PartitionState> = spec
        .assignment
        .iter()
        .map(|&(partition, next_offset)| PartitionState { partition, next_offset, leader: None, reset: false })
        .collect();
    loop {
        let targets = match control.borrow_and_update().clone() {
            Control::Stop => break,
            Control::Run => None,
            Control::Drain { targets, deadline } => {
                if Instant::now() >= deadline {
                    break;
                }
                Some(targets)
            }
        };
        let reached = |p: &PartitionState| {
            targets.as_ref().is_some_and(|t| t.get(&p.partition).is_none_or(|&end| p.next_offset >= end))
        };
        if targets.is_some() && parts.iter().all(reached) {
            break;
        }
        if spec.record_limit.is_some_and(|limit| consumed.load(Ordering::Relaxed) >= limit) {
            break;
        }
        let mut failed = false;
        for p in parts.iter_mut().filter(|p| p.reset) {
            match client.list_offset(&spec.topic, p.partition, OffsetSpec::Earliest).await {
                Ok(r) if r.error_code == 0 => {
                    p.next_offset = r.offset;
                    p.reset = false;
                }
                Ok(r) => record_error(&stats, broker_error(r.error_code), &mut failed),
                Err(e) => record_error(&stats, client_error(&e), &mut failed),
            }
        }
        for p in parts.iter_mut().filter(|p| p.leader.as_ref().is_none_or(|c| c.is_closed())) {
            match client.leader(&spec.topic, p.partition).await {
                Ok(conn) => p.leader = Some(conn),
                Err(e) => record_error(&stats, client_error(&e), &mut failed),
            }
        }
        // One fetch per leader for the partitions that still have something to read.
        let mut groups: Vec<(Arc<BrokerConnection>, Vec<FetchTarget>)> = Vec::new();
        for p in parts.iter().filter(|p| !p.reset && !reached(p)) {
            let Some(conn) = &p.leader else { continue };
            let target = FetchTarget {
                topic: spec.topic.clone(),
                partition: p.partition,
                offset: p.next_offset,
                max_bytes: spec.partition_max_bytes,
            };
            match groups.iter_mut().find(|(c, _)| Arc::ptr_eq(c, conn)) {
                Some((_, targets)) => targets.push(target),
                None => groups.push((Arc::clone(conn), vec![target])),
            }
        }
        for (conn, targets) in groups {
            match conn.fetch_many(&targets, spec.fetch).await {
                Ok(results) => {
                    let read = absorb_fetch(&spec, &window, &stats, &mut log, &mut parts, results);
                    consumed.fetch_add(read, Ordering::Relaxed);
                }
                Err(e) => {
                    record_error(&stats, client_error(&e), &mut failed);
                    for p in parts.iter_mut() {
                        if p.leader.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                            p.leader = None;
                        }
                    }
                }
            }
        }
        if failed || parts.iter().any(|p| p.leader.is_none()) {
            let _ = client.metadata(Some(&[spec.topic.as_str()])).await;
            // Wakes early when the run changes what it wants.
            let _ = tokio::time::timeout(FAILURE_BACKOFF, control.changed()).await;
        }
    }
    Ok(ConsumerOutcome { log, finished_at: Instant::now() })
}

fn record_error(stats: &SharedStats, name: String, failed: &mut bool) {
    stats.lock().expect("stats lock").error(&name, 0);
    *failed = true;
}

/// Books one fetch response; returns how many records of it were read.
fn absorb_fetch(
    spec: &ConsumerSpec,
    window: &Window,
    stats: &SharedStats,
    log: &mut DeliveryLog,
    parts: &mut [PartitionState],
    results: Vec<FetchResult>,
) -> u64 {
    let now = Instant::now();
    let now_ns = window.clock.at(now);
    let read_in_window = window.contains(now);
    let mut stats = stats.lock().expect("stats lock");
    let mut read = 0;
    for result in results {
        let Some(part) = parts.iter_mut().find(|p| p.partition == result.partition) else { continue };
        if result.error_code != 0 {
            stats.error(&broker_error(result.error_code), 0);
            if result.error_code == OFFSET_OUT_OF_RANGE {
                part.reset = true;
            } else if is_stale_metadata(result.error_code) {
                part.leader = None;
            }
            continue;
        }
        let mut reader = BatchReader::new(result.records);
        for batch in reader.by_ref() {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    stats.error(&client_error(&e), 0);
                    break;
                }
            };
            // A fetch starts at the batch holding the fetch offset: skip what was read before.
            if batch.last_offset() < part.next_offset {
                continue;
            }
            if batch.is_control() {
                part.next_offset = batch.next_offset();
                continue;
            }
            let records = match batch.records() {
                Ok(r) => r,
                Err(e) => {
                    stats.error(&client_error(&e), 0);
                    break;
                }
            };
            for record in records {
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        stats.error(&client_error(&e), 0);
                        break;
                    }
                };
                if record.offset < part.next_offset {
                    continue;
                }
                part.next_offset = record.offset + 1;
                read += 1;
                book_record(spec, window, &mut stats, log, part.partition, &record, now_ns, read_in_window);
            }
            part.next_offset = part.next_offset.max(batch.next_offset());
        }
    }
    read
}

#[allow(clippy::too_many_arguments)] // the hot path's state, passed by reference rather than bundled per call
#[inline]
fn book_record(
    spec: &ConsumerSpec,
    window: &Window,
    stats: &mut SideStats,
    log: &mut DeliveryLog,
    partition: i32,
    record: &laminar_client::Record,
    now_ns: u64,
    read_in_window: bool,
) {
    let bytes = (record.key.as_ref().map_or(0, |k| k.len()) + record.value.as_ref().map_or(0, |v| v.len())) as u64;
    let header = record.value.as_deref().and_then(ValueHeader::read);
    let ours = header.filter(|h| spec.producer_ids.as_ref().is_none_or(|ids| ids.contains(&h.producer_id)));
    let Some(h) = ours else {
        stats.foreign_records += 1;
        // Foreign records still count as reading throughput when measured by read time.
        if !spec.window_by_send_time {
            stats.count(1, bytes, read_in_window);
        }
        return;
    };
    let measured = if spec.window_by_send_time { window.contains_ns(h.send_time_ns) } else { read_in_window };
    stats.count(1, bytes, measured);
    stats.record_latency_ns(now_ns.saturating_sub(h.send_time_ns), measured);
    if spec.verify {
        log.observe((h.producer_id, partition), h.sequence, record.offset);
    }
}

//! One producer: a client of its own, a batch per partition, pipelined Produce requests.
//!
//! Records are written straight into each partition's reusable `BatchBuilder` (header and
//! filler copied in place, key formatted on the stack), so the hot path allocates nothing per
//! record. A batch is sent when it reaches `batch_size` or has waited `linger`. The client's
//! connection bounds the requests in flight; each in-flight request is awaited by a small task
//! that records latency the moment the response arrives. Failed produces are counted, never
//! retried, so that verification can hold the broker to exactly-once for acknowledged records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use laminar_client::{
    Acks, BatchBuilder, BrokerConnection, Client, ClientConfig, Compression, Error, PendingProduce, ProduceBatch,
    Result,
};
use tokio::task::JoinSet;

use crate::args::RecordSize;
use crate::errors::{broker_error, client_error, is_stale_metadata};
use crate::keys::{partition_for_key, KeyChooser, KEY_BYTES};
use crate::rate::Pacer;
use crate::record_format::{fill_value, PayloadPool, ValueHeader};
use crate::rng::Rng;
use crate::stats::SharedStats;
use crate::verify::AckLedger;
use crate::window::Window;

/// Records appended between checks of linger, stop conditions and finished acks.
const CHUNK_RECORDS: u64 = 256;
/// Pause after a failed send, so an unreachable broker is not hammered.
const FAILURE_BACKOFF: Duration = Duration::from_millis(100);

pub struct ProducerSpec {
    pub producer_id: u32,
    /// Offsets the first sticky partition, so producers do not all start on partition 0.
    pub index: usize,
    pub topic: String,
    pub client: ClientConfig,
    pub acks: Acks,
    pub compression: Compression,
    pub batch_size: usize,
    pub linger: Duration,
    pub record_size: RecordSize,
    pub keys: KeyChooser,
    /// This producer's share of the target rate.
    pub rate: Option<f64>,
    /// This producer's share of the record count.
    pub record_limit: Option<u64>,
    pub timeout_ms: i32,
    pub seed: u64,
}

pub struct ProducerOutcome {
    pub ledger: AckLedger,
    /// When the last acknowledgement arrived.
    pub finished_at: Instant,
}

/// Runs until the window closes, the record limit is reached or `stop` is set.
pub async fn run_producer(
    spec: ProducerSpec,
    window: Window,
    stats: SharedStats,
    pool: Arc<PayloadPool>,
    stop: Arc<AtomicBool>,
) -> Result<ProducerOutcome> {
    let client = Client::connect(spec.client.clone()).await?;
    let partitions = client.partitions(&spec.topic).await?;
    if partitions.is_empty() {
        return Err(Error::Config(format!("topic {} has no partitions", spec.topic)));
    }
    let batch_capacity = spec.batch_size + spec.record_size.max + KEY_BYTES + 64;
    let lanes = partitions
        .iter()
        .map(|&partition| Lane {
            partition,
            builder: BatchBuilder::with_capacity(spec.compression, batch_capacity),
            next_seq: 0,
            first_seq: 0,
            first_ts_ns: 0,
            last_ts_ns: 0,
            opened: None,
            bytes: 0,
        })
        .collect::<Vec<_>>();
    let acks = Arc::new(AckContext {
        stats,
        ledger: Mutex::new(AckLedger::default()),
        refresh: AtomicBool::new(false),
        window,
        producer_id: spec.producer_id,
        acks: spec.acks,
    });
    let mut producer = Producer {
        leaders: vec![None; lanes.len()],
        sticky: spec.index % lanes.len(),
        lanes,
        rng: Rng::new(spec.seed),
        spec,
        client,
        pool,
        window,
        acks,
        in_flight: JoinSet::new(),
        appended: 0,
    };
    producer.run(&stop).await;
    while producer.in_flight.join_next().await.is_some() {}
    let finished_at = Instant::now();
    let ledger = std::mem::take(&mut *producer.acks.ledger.lock().expect("ledger lock"));
    Ok(ProducerOutcome { ledger, finished_at })
}

/// One partition's open batch.
struct Lane {
    partition: i32,
    builder: BatchBuilder,
    /// Sequence of the next record appended to this partition.
    next_seq: u64,
    /// Sequence and send times of the open batch's first and last records.
    first_seq: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
    /// When the open batch got its first record (for linger); `None` when empty.
    opened: Option<Instant>,
    /// Key + value bytes in the open batch.
    bytes: u64,
}

/// What an acknowledgement task needs to know about its batch.
struct SentBatch {
    partition: i32,
    first_seq: u64,
    count: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
    bytes: u64,
}

/// Shared by the producer and its acknowledgement tasks.
struct AckContext {
    stats: SharedStats,
    ledger: Mutex<AckLedger>,
    /// Set when a response says the metadata is stale; the producer refreshes it.
    refresh: AtomicBool,
    window: Window,
    producer_id: u32,
    acks: Acks,
}

struct Producer {
    spec: ProducerSpec,
    client: Client,
    lanes: Vec<Lane>,
    /// Cached leader connection per lane; cleared on failures.
    leaders: Vec<Option<Arc<BrokerConnection>>>,
    /// The lane unkeyed records go to; advances whenever that lane's batch is sent.
    sticky: usize,
    rng: Rng,
    pool: Arc<PayloadPool>,
    window: Window,
    acks: Arc<AckContext>,
    in_flight: JoinSet<()>,
    appended: u64,
}

impl Producer {
    async fn run(&mut self, stop: &AtomicBool) {
        let mut pacer = self.spec.rate.map(|rate| Pacer::new(rate, Instant::now()));
        loop {
            if self.acks.refresh.swap(false, Ordering::Relaxed) {
                self.refresh_metadata().await;
            }
            let now = Instant::now();
            // Paced runs end when the schedule reaches the window's end, so that every record
            // scheduled inside it is sent even if the producer is running a little late.
            let over = match &pacer {
                Some(p) => self.window.stop_at.is_some_and(|stop| p.next_due() >= stop),
                None => self.window.is_over(now),
            };
            if over || self.limit_reached() || stop.load(Ordering::Relaxed) {
                break;
            }
            let budget = match &pacer {
                Some(p) => p.due(now).min(CHUNK_RECORDS),
                None => CHUNK_RECORDS,
            };
            if budget == 0 {
                self.flush_lingering(now).await;
                let mut wake = pacer.as_ref().map_or(now, |p| p.next_due());
                if let Some(expiry) = self.next_linger_expiry() {
                    wake = wake.min(expiry);
                }
                if let Some(stop_at) = self.window.stop_at {
                    wake = wake.min(stop_at);
                }
                tokio::time::sleep_until(wake.into()).await;
                continue;
            }
            for _ in 0..budget {
                if self.limit_reached() {
                    break;
                }
                let send_ns = match pacer.as_mut() {
                    // Scheduled, not actual, send time: see rate.rs on coordinated omission.
                    Some(p) if self.window.is_over_ns(self.window.clock.at(p.next_due())) => break,
                    Some(p) => self.window.clock.at(p.issue()),
                    None => self.window.clock.now_ns(),
                };
                if self.window.is_over_ns(send_ns) {
                    break; // Nothing is sent after the measured phase.
                }
                let lane = match self.append(send_ns) {
                    Ok(lane) => lane,
                    Err(e) => {
                        self.acks.stats.lock().expect("stats lock").error(&client_error(&e), 1);
                        continue;
                    }
                };
                if self.lanes[lane].builder.size_bytes() >= self.spec.batch_size {
                    self.send(lane).await;
                }
            }
            self.flush_lingering(Instant::now()).await;
            while self.in_flight.try_join_next().is_some() {}
            // With acks=0, or when responses keep up, nothing above has to wait; yield so the
            // connection's reader and the ack tasks get to run on a busy worker.
            tokio::task::yield_now().await;
        }
        for lane in 0..self.lanes.len() {
            self.send(lane).await;
        }
    }

    fn limit_reached(&self) -> bool {
        self.spec.record_limit.is_some_and(|limit| self.appended >= limit)
    }

    /// Appends one record and returns its lane.
    fn append(&mut self, send_ns: u64) -> Result<usize> {
        let mut key_buf = [0u8; KEY_BYTES];
        let key = self.spec.keys.next(&mut self.rng, &mut key_buf);
        let lane_index = match key {
            Some(k) => partition_for_key(k, self.lanes.len()),
            None => self.sticky,
        };
        let size = self.spec.record_size;
        let value_len =
            if size.min == size.max { size.min } else { self.rng.between(size.min as u64, size.max as u64) as usize };
        let lane = &mut self.lanes[lane_index];
        if lane.builder.is_empty() {
            lane.first_seq = lane.next_seq;
            lane.first_ts_ns = send_ns;
            lane.opened = Some(Instant::now());
            lane.bytes = 0;
        }
        let header = ValueHeader { producer_id: self.spec.producer_id, sequence: lane.next_seq, send_time_ns: send_ns };
        let (pool, rng) = (&self.pool, &mut self.rng);
        let timestamp_ms = (send_ns / 1_000_000) as i64;
        lane.builder.append_with(timestamp_ms, key, value_len, &[], |dst| fill_value(dst, &header, pool, rng))?;
        lane.next_seq += 1;
        lane.last_ts_ns = send_ns;
        lane.bytes += (value_len + key.map_or(0, |k| k.len())) as u64;
        self.appended += 1;
        Ok(lane_index)
    }

    fn next_linger_expiry(&self) -> Option<Instant> {
        self.lanes.iter().filter_map(|l| l.opened).min().map(|opened| opened + self.spec.linger)
    }

    async fn flush_lingering(&mut self, now: Instant) {
        for lane in 0..self.lanes.len() {
            if self.lanes[lane].opened.is_some_and(|opened| now >= opened + self.spec.linger) {
                self.send(lane).await;
            }
        }
    }

    /// Finishes the lane's open batch (if any) and puts it on the wire.
    async fn send(&mut self, lane_index: usize) {
        let lane = &mut self.lanes[lane_index];
        if lane.builder.is_empty() {
            return;
        }
        let batch = SentBatch {
            partition: lane.partition,
            first_seq: lane.first_seq,
            count: lane.next_seq - lane.first_seq,
            first_ts_ns: lane.first_ts_ns,
            last_ts_ns: lane.last_ts_ns,
            bytes: lane.bytes,
        };
        lane.opened = None;
        let records = lane.builder.finish();
        if self.spec.keys.is_unkeyed() && lane_index == self.sticky {
            self.sticky = (self.sticky + 1) % self.lanes.len();
        }
        let records = match records {
            Ok(r) => r,
            Err(e) => return self.fail(&batch, &client_error(&e)),
        };
        let conn = match self.leader(lane_index).await {
            Ok(conn) => conn,
            Err(e) => {
                self.fail(&batch, &client_error(&e));
                self.acks.refresh.store(true, Ordering::Relaxed);
                tokio::time::sleep(FAILURE_BACKOFF).await;
                return;
            }
        };
        let request = [ProduceBatch { topic: self.spec.topic.clone(), partition: batch.partition, records }];
        // Waits here while the connection already has max_in_flight requests outstanding.
        match conn.submit_produce(&request, self.spec.acks, self.spec.timeout_ms).await {
            Ok(pending) => {
                self.in_flight.spawn(await_ack(pending, batch, Arc::clone(&self.acks)));
            }
            Err(e) => {
                self.fail(&batch, &client_error(&e));
                self.leaders[lane_index] = None;
                self.acks.refresh.store(true, Ordering::Relaxed);
                tokio::time::sleep(FAILURE_BACKOFF).await;
            }
        }
    }

    fn fail(&self, batch: &SentBatch, error: &str) {
        self.acks.stats.lock().expect("stats lock").error(error, batch.count);
        self.acks.ledger.lock().expect("ledger lock").failed(batch.count);
    }

    async fn leader(&mut self, lane_index: usize) -> Result<Arc<BrokerConnection>> {
        if let Some(conn) = self.leaders[lane_index].as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let conn = self.client.leader(&self.spec.topic, self.lanes[lane_index].partition).await?;
        self.leaders[lane_index] = Some(Arc::clone(&conn));
        Ok(conn)
    }

    async fn refresh_metadata(&mut self) {
        // A failed refresh is not fatal: the next send reports whatever is wrong.
        let _ = self.client.metadata(Some(&[self.spec.topic.as_str()])).await;
        self.leaders.iter_mut().for_each(|l| *l = None);
    }
}

/// Waits for one Produce response and books its outcome.
async fn await_ack(pending: PendingProduce, batch: SentBatch, ctx: Arc<AckContext>) {
    let result = pending.recv().await;
    let done_ns = ctx.window.clock.now_ns();
    let outcome = match result {
        Ok(results) => match results.iter().find(|r| r.partition == batch.partition) {
            Some(r) if r.error_code == 0 => Ok(r.base_offset),
            Some(r) => {
                if is_stale_metadata(r.error_code) {
                    ctx.refresh.store(true, Ordering::Relaxed);
                }
                Err(broker_error(r.error_code))
            }
            None => Err("client:partition-missing-from-response".to_string()),
        },
        Err(e) => {
            ctx.refresh.store(true, Ordering::Relaxed);
            Err(client_error(&e))
        }
    };
    match outcome {
        Ok(base_offset) => {
            // acks=0 has no response, so no latency to speak of.
            let done_ns = (ctx.acks != Acks::None).then_some(done_ns);
            let window = ctx.window;
            ctx.stats.lock().expect("stats lock").record_batch(
                batch.first_ts_ns,
                batch.last_ts_ns,
                batch.count,
                batch.bytes,
                done_ns,
                |ns| window.contains_ns(ns),
            );
            let stream = (ctx.producer_id, batch.partition);
            ctx.ledger.lock().expect("ledger lock").acked(stream, batch.first_seq, batch.count, base_offset);
        }
        Err(name) => {
            ctx.stats.lock().expect("stats lock").error(&name, batch.count);
            ctx.ledger.lock().expect("ledger lock").failed(batch.count);
        }
    }
}

//! One benchmark run: setup, producers and consumers, the drain, and the report.

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use laminar_client::{Client, ClientConfig, FetchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::{Mode, RunArgs, StartFrom};
use crate::clock::Clock;
use crate::consume::{run_consumer, ConsumerOutcome, ConsumerSpec, Control};
use crate::keys::KeyChooser;
use crate::machine::{CpuTimes, CpuUsage, Machine};
use crate::produce::{run_producer, ProducerOutcome, ProducerSpec};
use crate::progress;
use crate::record_format::PayloadPool;
use crate::report::{ConsumeReport, ProduceReport, Report, FORMAT_VERSION};
use crate::rng::Rng;
use crate::stats::{SharedStats, SideStats};
use crate::topic;
use crate::verify::{check, AckLedger, DeliveryLog};
use crate::window::Window;

/// Kafka's fetch.max.bytes default: the whole-response budget of a fetch.
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
/// Stands in for "no deadline" where an `Instant` is needed.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Runs `mode` with `args` against the cluster and returns its report.
pub async fn run(mode: Mode, args: &RunArgs) -> Result<Report, String> {
    args.validate(mode)?;
    let started_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let wall_start = Instant::now();
    let cpu_start = CpuTimes::now();
    let machine = Machine::detect();
    let client_config = client_config(args);

    let admin = Client::connect(client_config.clone())
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.bootstrap_servers))?;
    let partitions = topic::prepare(&admin, args).await?;
    let start_offsets = match mode.consumes() {
        true => topic::offsets(&admin, &args.topic, &partitions, args.start_from(mode)).await?,
        false => HashMap::new(),
    };
    let end_offsets_at_start = match mode == Mode::Consume && args.until_end {
        true => Some(topic::offsets(&admin, &args.topic, &partitions, StartFrom::Latest).await?),
        false => None,
    };

    let seed = args.seed.unwrap_or(started_unix_ms ^ u64::from(std::process::id()) << 32);
    let mut seeder = Rng::new(seed);
    let producer_count = if mode.produces() { args.producers } else { 0 };
    // Producer ids are run_id..run_id + producers: records of earlier runs on the same topic
    // are told apart from this run's.
    let run_id = seeder.below(u64::from(u32::MAX) - producer_count as u64) as u32;
    let producer_ids = run_id..run_id + producer_count as u32;

    let clock = Clock::new();
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let window = Window::new(clock, start, measure_from, args.effective_duration(mode).map(|d| measure_from + d));
    let stop = Arc::new(AtomicBool::new(false));
    let consumed = Arc::new(AtomicU64::new(0));

    let initial_control = match &end_offsets_at_start {
        Some(ends) => Control::Drain { targets: Arc::new(ends.clone()), deadline: start + FOREVER },
        None => Control::Run,
    };
    let (control, control_rx) = watch::channel(initial_control);

    let mut consumer_stats = Vec::new();
    let mut consumers = Vec::new();
    if mode.consumes() {
        for assigned in topic::assign(&partitions, args.consumers) {
            let stats = SideStats::shared();
            consumer_stats.push(Arc::clone(&stats));
            let spec = ConsumerSpec {
                topic: args.topic.clone(),
                client: client_config.clone(),
                assignment: assigned.iter().map(|p| (*p, start_offsets[p])).collect(),
                fetch: FetchOptions { max_wait_ms: args.fetch_max_wait_ms, min_bytes: 1, max_bytes: FETCH_MAX_BYTES },
                partition_max_bytes: args.fetch_partition_max_bytes,
                producer_ids: mode.produces().then(|| producer_ids.clone()),
                window_by_send_time: mode.produces(),
                verify: mode == Mode::Verify,
                record_limit: if mode == Mode::Consume { args.records } else { None },
            };
            let task = run_consumer(spec, window, stats, control_rx.clone(), Arc::clone(&consumed));
            consumers.push(tokio::spawn(task));
        }
    }

    let mut producer_stats = Vec::new();
    let mut producers = Vec::new();
    if mode.produces() {
        let pool = Arc::new(PayloadPool::new(args.record_size.max, seeder.next_u64()));
        let keys = KeyChooser::new(args.key_dist, args.key_count, args.zipf_exponent)?;
        for index in 0..producer_count {
            let stats = SideStats::shared();
            producer_stats.push(Arc::clone(&stats));
            let share =
                |total: u64| total / producer_count as u64 + u64::from((index as u64) < total % producer_count as u64);
            let spec = ProducerSpec {
                producer_id: run_id + index as u32,
                index,
                topic: args.topic.clone(),
                client: client_config.clone(),
                acks: args.acks,
                compression: args.compression,
                batch_size: args.batch_size,
                linger: Duration::from_millis(args.linger_ms),
                record_size: args.record_size,
                keys: keys.clone(),
                rate: args.rate.map(|r| r / producer_count as f64),
                record_limit: args.records.map(share),
                timeout_ms: args.request_timeout_ms.min(i32::MAX as u64) as i32,
                seed: seeder.next_u64(),
            };
            let task = run_producer(spec, window, stats, Arc::clone(&pool), Arc::clone(&stop));
            producers.push(tokio::spawn(task));
        }
    }

    let progress = (!args.no_progress && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(progress::report_progress(window, producer_stats.clone(), consumer_stats.clone())));
    // The first Ctrl-C ends the measured phase early; the run still drains and reports.
    let interrupt = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let mut failure = None;
    let mut ledger = AckLedger::default();
    let mut produce_end = start;
    for result in join_all(producers).await {
        match result {
            Ok(ProducerOutcome { ledger: l, finished_at }) => {
                ledger.absorb(l);
                produce_end = produce_end.max(finished_at);
            }
            Err(e) => failure = failure.or(Some(format!("producer failed: {e}"))),
        }
    }

    if mode.produces() && mode.consumes() {
        // Consumers read on until they have everything acknowledged and everything the broker
        // reports as written, or until the drain timeout.
        let mut targets: HashMap<i32, i64> = ledger.acked_end_offset.clone();
        if let Ok(ends) = topic::offsets(&admin, &args.topic, &partitions, StartFrom::Latest).await {
            for (p, end) in ends {
                let slot = targets.entry(p).or_insert(end);
                *slot = (*slot).max(end);
            }
        }
        let deadline = Instant::now() + args.drain_timeout;
        let _ = control.send(Control::Drain { targets: Arc::new(targets), deadline });
    }
    let consumer_results =
        until_done_or_stopped(join_all(consumers), window.stop_at.filter(|_| mode == Mode::Consume), &stop, &control)
            .await;
    interrupt.abort();
    if let Some(p) = progress {
        p.abort();
        progress::finish_line();
    }

    let mut log = DeliveryLog::default();
    let mut consume_end = start;
    for result in consumer_results {
        match result {
            Ok(ConsumerOutcome { log: l, finished_at }) => {
                log.absorb(l);
                consume_end = consume_end.max(finished_at);
            }
            Err(e) => failure = failure.or(Some(format!("consumer failed: {e}"))),
        }
    }
    if let Some(message) = failure {
        return Err(message);
    }

    let produced = merge(&producer_stats);
    let read = merge(&consumer_stats);
    let produce_secs = window.measured_secs(produce_end);
    let consume_secs = if mode.produces() { produce_secs } else { window.measured_secs(consume_end) };
    let elapsed_secs = wall_start.elapsed().as_secs_f64();
    let cpu = CpuUsage::new(
        CpuTimes::now().since(cpu_start),
        elapsed_secs,
        machine.cores,
        produced.total_records + read.total_records,
    );

    let mut params = serde_json::to_value(args).map_err(|e| e.to_string())?;
    // What was actually used where the command line left a choice.
    params["seed"] = seed.into();
    params["duration"] = args.effective_duration(mode).map(|d| d.as_secs_f64()).into();
    if mode.consumes() {
        params["from"] = serde_json::to_value(args.start_from(mode)).map_err(|e| e.to_string())?;
    }
    Ok(Report {
        format_version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        mode: mode.name().to_string(),
        label: args.label.clone(),
        started_unix_ms,
        params,
        machine,
        elapsed_secs,
        produce: mode.produces().then(|| ProduceReport::from_stats(&produced, produce_secs)),
        consume: mode.consumes().then(|| ConsumeReport::from_stats(&read, consume_secs)),
        verify: (mode == Mode::Verify).then(|| check(&ledger, &log)),
        cpu,
    })
}

fn client_config(args: &RunArgs) -> ClientConfig {
    let mut config = ClientConfig::new(&args.bootstrap_servers);
    config.connection.client_id = "laminar-bench".to_string();
    config.connection.max_in_flight = args.max_in_flight;
    config.connection.request_timeout = Duration::from_millis(args.request_timeout_ms);
    config
}

fn merge(stats: &[SharedStats]) -> SideStats {
    let mut total = SideStats::default();
    for s in stats {
        total.absorb(&s.lock().expect("stats lock"));
    }
    total
}

/// Awaits every task; a panicked task becomes an error.
async fn join_all<T>(handles: Vec<JoinHandle<laminar_client::Result<T>>>) -> Vec<Result<T, String>> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(match handle.await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("task ended abnormally: {e}")),
        });
    }
    out
}

/// Waits for `done`, telling consumers to stop at `stop_at` (consume mode's end), on Ctrl-C,
/// or once `stop` is set while nothing is being drained.
async fn until_done_or_stopped<T>(
    done: impl Future<Output = T>,
    stop_at: Option<Instant>,
    stop: &AtomicBool,
    control: &watch::Sender<Control>,
) -> T {
    tokio::pin!(done);
    let deadline = stop_at.unwrap_or_else(|| Instant::now() + FOREVER);
    let mut told = false;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut done => return out,
            _ = tokio::time::sleep_until(deadline.into()), if !told => {
                let _ = control.send(Control::Stop);
                told = true;
            }
            _ = tokio::signal::ctrl_c(), if !told => {
                let _ = control.send(Control::Stop);
                told = true;
            }
            _ = poll.tick(), if !told => {
                // Ctrl-C during a consume-only run arrives through `stop`.
                if stop.load(Ordering::Relaxed) && matches!(*control.borrow(), Control::Run) {
                    let _ = control.send(Control::Stop);
                    told = true;
                }
            }
        }
    }
}

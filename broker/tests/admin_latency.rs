//! How long other requests wait while a 10,000-partition topic is created
//! and deleted (hardening issue, item 8: they used to wait 3.6–24 s). One
//! connection sends ApiVersions, Metadata (of another topic) and Produce (to
//! another topic) in a loop and times each answer; the worst and the 99th
//! percentile of each phase are printed.
//!
//! A measurement, not run by default: `cargo test -p laminar-broker --test
//! admin_latency -- --ignored --nocapture` (LAMINAR_BIN=<binary> to measure
//! another build, e.g. a release one). PARTITIONS=<n> changes the size;
//! BROKER_ARGS (default `--max-connections 100`, so that most descriptors go
//! to partitions) the broker's flags.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, frame, read_frame, Laminar};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use laminar_client::{BatchBuilder, Compression};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

const PHASES: [&str; 4] = ["idle", "create", "idle after create", "delete"];

#[derive(Clone, Copy)]
struct Sample {
    phase: u8,
    api: &'static str,
    latency: Duration,
}

fn produce_request(topic: &str, partition: i32) -> ProduceRequest {
    let mut b = BatchBuilder::new(Compression::None);
    b.append(1_700_000_000_000, None, Some(b"probe"), &[]).unwrap();
    ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(b.finish().unwrap()))])])
}

/// Sends one request and waits for its answer; the time it took.
fn timed(s: &mut std::net::TcpStream, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    s.write_all(bytes).unwrap();
    read_frame(s).expect("an answer");
    started.elapsed()
}

/// The prober: ApiVersions, Metadata and Produce in turn, each timed and
/// tagged with the phase it started in, until `stop`.
fn probe(l: &Laminar, phase: Arc<AtomicU8>, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Sample>>>) {
    let mut s = l.connect();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let api_versions = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    let metadata = frame(
        ApiKey::Metadata,
        12,
        2,
        &MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(name("other")))])),
    );
    let produce = frame(ApiKey::Produce, 9, 3, &produce_request("other", 0));
    while !stop.load(Ordering::Relaxed) {
        for (api, bytes) in [("ApiVersions", &api_versions), ("Metadata", &metadata), ("Produce", &produce)] {
            let p = phase.load(Ordering::Relaxed);
            let latency = timed(&mut s, bytes);
            out.lock().unwrap().push(Sample { phase: p, api, latency });
        }
    }
}

/// Partition directories of `topic` in the data directory, live or being removed.
fn dirs_of(l: &Laminar, topic: &str) -> usize {
    let prefix = format!("{topic}-");
    std::fs::read_dir(l.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
        .count()
}

/// Stops the prober however the measurement ends (a failed assertion too).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn requests_wait_little_while_a_huge_topic_is_created_and_deleted() {
    let partitions: i32 = std::env::var("PARTITIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let args = std::env::var("BROKER_ARGS").unwrap_or_else(|_| "--max-connections 100".into());
    let l = Laminar::start(&args.split_whitespace().collect::<Vec<_>>());
    let mut admin = l.connect();
    admin.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let create = |topic: &str, n: i32| {
        CreateTopicsRequest::default().with_timeout_ms(300_000).with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(n)
            .with_replication_factor(1)])
    };
    let r: CreateTopicsResponse = call(&mut admin, ApiKey::CreateTopics, 7, &create("other", 1));
    assert_eq!(r.topics[0].error_code, 0);

    let (phase, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    std::thread::scope(|scope| {
        let h = {
            let (l, phase, stop, samples) = (&l, phase.clone(), stop.clone(), samples.clone());
            scope.spawn(move || probe(l, phase, stop, samples))
        };
        let _stop = StopOnDrop(stop.clone());
        std::thread::sleep(Duration::from_secs(2));

        phase.store(1, Ordering::Relaxed);
        let started = Instant::now();
        let r: CreateTopicsResponse = call(&mut admin, ApiKey::CreateTopics, 7, &create("big", partitions));
        assert_eq!(r.topics[0].error_code, 0, "{r:?}");
        let answered = started.elapsed();
        // Created: every partition's log is open and its leader serves.
        while dirs_of(&l, "big") < partitions as usize {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in (0..partitions).rev().step_by((partitions as usize / 20).max(1)) {
            let mut s = l.connect();
            loop {
                let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &produce_request("big", p));
                if r.responses[0].partition_responses[0].error_code == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let serving = started.elapsed();
        phase.store(2, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));

        phase.store(3, Ordering::Relaxed);
        let started = Instant::now();
        let req = DeleteTopicsRequest::default().with_timeout_ms(300_000).with_topic_names(vec![name("big")]);
        let r: DeleteTopicsResponse = call(&mut admin, ApiKey::DeleteTopics, 5, &req);
        assert_eq!(r.responses[0].error_code, 0, "{r:?}");
        let delete_answered = started.elapsed();
        while dirs_of(&l, "big") > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        let removed = started.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        println!(
            "{partitions} partitions: create answered in {answered:?}, all serving after {serving:?}; \
                 delete answered in {delete_answered:?}, directories gone after {removed:?}"
        );
    });
    let samples = samples.lock().unwrap().clone();
    for (i, label) in PHASES.iter().enumerate() {
        let mut all: Vec<Duration> =
            samples.iter().filter(|s| s.phase as usize == i).map(|s| s.latency).collect::<Vec<_>>();
        if all.is_empty() {
            continue;
        }
        all.sort();
        let worst_by_api: Vec<String> = ["ApiVersions", "Metadata", "Produce"]
            .iter()
            .map(|api| {
                let worst = samples.iter().filter(|s| s.phase as usize == i && s.api == *api).map(|s| s.latency).max();
                format!("{api} {:?}", worst.unwrap_or_default())
            })
            .collect();
        println!(
            "{label}: {} requests, p50 {:?}, p99 {:?}, worst {:?} ({})",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all.last().unwrap(),
            worst_by_api.join(", ")
        );
    }
}

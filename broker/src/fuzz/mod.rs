//! A bounded, in-process mutation fuzzer of the broker's request path, run by
//! `cargo test` (stable Rust, no cargo-fuzz).
//!
//! Seeds are real frames for every API and version served (`corpus.rs`);
//! each input is a mutated seed (`mutate.rs`) fed to the broker's own header
//! parsing (`api::parse_header`), body decoding (`api::decode`, the type each
//! handler decodes) and, for Produce, `split_batches` + `validate_produced`
//! on every partition's records. Per input it checks: no panic, decoding
//! allocates within the decode budget (`api::decode_budget_bytes`, measured
//! by the counting allocator), and the input finishes in bounded time.
//!
//! Environment: `LAMINAR_FUZZ_SEED` (default: from the clock, printed),
//! `LAMINAR_FUZZ_SECS` (default 5), `LAMINAR_FUZZ_ITERS` (exact input count,
//! overrides the time), `LAMINAR_FUZZ_INPUT` (replay one saved input). A
//! failure prints the seed and iteration and writes the input to a file.
//! Long run: docs/operations.md ("Fuzzing the protocol").

mod adversarial;
mod corpus;
mod count_alloc;
mod mutate;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::budget::DecodeBudget;
use laminar_engine::{batch, LogConfig};

use crate::api::{self, ConnError, Parsed};
use corpus::Seed;
use mutate::Rng;

/// The connection refuses smaller frames before `api::handle` sees them.
const FRAME_MIN_BYTES: usize = crate::connection::FRAME_MIN_BYTES;
/// Allocations a decode may make beyond what it charges to the budget: the
/// error message (and an error backtrace if RUST_BACKTRACE is set), the
/// shared header of a body `Bytes`.
pub const UNCHARGED_SLACK_BYTES: usize = 256 * 1024;
/// One input normally takes microseconds; this much is a bug (debug build,
/// shared CI machine: generous).
const INPUT_TIME_MAX: Duration = Duration::from_secs(2);
/// An input still running after this long is a hang: the watchdog writes it
/// out and ends the process (a stuck thread cannot be unwound).
const HANG_TIME: Duration = Duration::from_secs(30);
/// Mutated inputs that decoded are kept to mutate further, up to this many.
const POOL_MAX: usize = 512;

/// Decodes `body` as the handler of `api` does (the same request type).
/// Returns the Produce request, whose records get checked next.
fn decode_body(api: ApiKey, header: &RequestHeader, body: Bytes) -> Result<Option<ProduceRequest>, ConnError> {
    fn d<R: kafka_protocol::protocol::Decodable>(
        h: &RequestHeader,
        b: Bytes,
    ) -> Result<Option<ProduceRequest>, ConnError> {
        api::decode::<R>(h, b).map(|_| None)
    }
    match api {
        // v0-v2 are decoded by hand (to refuse them with an answer).
        ApiKey::Produce if header.request_api_version < crate::api::api_versions::PRODUCE_MIN_ACCEPTED => {
            let budget = api::decode_budget_bytes(body.len());
            kafka_protocol::protocol::budget::with_decode_budget(budget, || api::produce::decode_old(body))
                .map(|_| None)
                .map_err(ConnError::Frame)
        }
        ApiKey::Produce => api::decode::<ProduceRequest>(header, body).map(Some),
        ApiKey::Fetch => d::<FetchRequest>(header, body),
        ApiKey::ListOffsets => d::<ListOffsetsRequest>(header, body),
        ApiKey::Metadata => d::<MetadataRequest>(header, body),
        // The handler ignores the body; the codec still gets exercised.
        ApiKey::ApiVersions => d::<ApiVersionsRequest>(header, body),
        ApiKey::CreateTopics => d::<CreateTopicsRequest>(header, body),
        ApiKey::DeleteTopics => d::<DeleteTopicsRequest>(header, body),
        ApiKey::DeleteRecords => d::<DeleteRecordsRequest>(header, body),
        ApiKey::DescribeConfigs => d::<DescribeConfigsRequest>(header, body),
        ApiKey::AlterConfigs => d::<AlterConfigsRequest>(header, body),
        ApiKey::CreatePartitions => d::<CreatePartitionsRequest>(header, body),
        ApiKey::IncrementalAlterConfigs => d::<IncrementalAlterConfigsRequest>(header, body),
        ApiKey::DescribeCluster => d::<DescribeClusterRequest>(header, body),
        ApiKey::FindCoordinator => d::<FindCoordinatorRequest>(header, body),
        ApiKey::JoinGroup => {
            let req = api::decode::<JoinGroupRequest>(header, body)?;
            // The group coordinator later decodes each member's subscription.
            for p in &req.protocols {
                let _ = crate::group::manager::parse_subscription(p.metadata.clone());
            }
            Ok(None)
        }
        ApiKey::SyncGroup => d::<SyncGroupRequest>(header, body),
        ApiKey::Heartbeat => d::<HeartbeatRequest>(header, body),
        ApiKey::LeaveGroup => d::<LeaveGroupRequest>(header, body),
        ApiKey::DescribeGroups => d::<DescribeGroupsRequest>(header, body),
        ApiKey::ListGroups => d::<ListGroupsRequest>(header, body),
        ApiKey::DeleteGroups => d::<DeleteGroupsRequest>(header, body),
        ApiKey::OffsetCommit => d::<OffsetCommitRequest>(header, body),
        ApiKey::OffsetFetch => d::<OffsetFetchRequest>(header, body),
        ApiKey::OffsetDelete => d::<OffsetDeleteRequest>(header, body),
        ApiKey::InitProducerId => d::<InitProducerIdRequest>(header, body),
        ApiKey::OffsetForLeaderEpoch => d::<OffsetForLeaderEpochRequest>(header, body),
        ApiKey::AlterPartitionReassignments => d::<AlterPartitionReassignmentsRequest>(header, body),
        ApiKey::ListPartitionReassignments => d::<ListPartitionReassignmentsRequest>(header, body),
        ApiKey::ElectLeaders => d::<ElectLeadersRequest>(header, body),
        ApiKey::DescribeLogDirs => d::<DescribeLogDirsRequest>(header, body),
        ApiKey::SaslHandshake => d::<SaslHandshakeRequest>(header, body),
        ApiKey::SaslAuthenticate => {
            let req = api::decode::<SaslAuthenticateRequest>(header, body)?;
            // The SCRAM parser reads the token next (PLAIN's split cannot fail).
            let _ = crate::security::scram::ClientFirst::parse(&req.auth_bytes);
            Ok(None)
        }
        ApiKey::DescribeUserScramCredentials => d::<DescribeUserScramCredentialsRequest>(header, body),
        ApiKey::AlterUserScramCredentials => d::<AlterUserScramCredentialsRequest>(header, body),
        ApiKey::CreateAcls => d::<CreateAclsRequest>(header, body),
        ApiKey::DescribeAcls => d::<DescribeAclsRequest>(header, body),
        ApiKey::DeleteAcls => d::<DeleteAclsRequest>(header, body),
        other => panic!("parse_header accepted {other:?}, which the fuzzer does not decode: add it"),
    }
}

/// Decodes as `decode_body` does, returning the result, the most bytes
/// allocated at once, and the bytes charged to the decode budget (the
/// broker's budgets nest inside an unlimited one here, which collects their
/// charges): the check that the codec charges everything it allocates.
pub fn decode_charged(
    api: ApiKey,
    header: &RequestHeader,
    body: Bytes,
) -> (Result<Option<ProduceRequest>, ConnError>, usize, usize) {
    let outer = DecodeBudget::enter(usize::MAX);
    let (decoded, peak) = count_alloc::peak_bytes(|| decode_body(api, header, body));
    let charged = outer.charged_bytes();
    drop(outer);
    (decoded, peak, charged)
}

/// What one input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    TooShort,
    HeaderRefused,
    BodyRefused,
    Decoded,
    /// Produce: decoded, and every batch of every partition validated.
    BatchesValid,
    /// Produce: decoded, and some partition's records were refused.
    BatchesRefused,
}

/// Runs one frame through the broker's request path; `Err` says what check
/// failed (a panic propagates to the caller's `catch_unwind`).
pub fn exercise(frame: &[u8], max_message_bytes: usize) -> Result<Outcome, String> {
    if frame.len() < FRAME_MIN_BYTES {
        return Ok(Outcome::TooShort);
    }
    let frame = Bytes::copy_from_slice(frame);
    let allowed = api::decode_budget_bytes(frame.len()) + UNCHARGED_SLACK_BYTES;
    let (parsed, peak) = count_alloc::peak_bytes(|| api::parse_header(frame.clone()));
    if peak > allowed {
        return Err(format!("header parsing allocated {peak} bytes (allowed {allowed})"));
    }
    let Ok(Parsed::Request(api, header, body)) = parsed else {
        return Ok(Outcome::HeaderRefused);
    };
    let (decoded, peak, charged) = decode_charged(api, &header, body.clone());
    if peak > allowed || peak > charged + UNCHARGED_SLACK_BYTES {
        return Err(format!(
            "decoding {api:?} v{} allocated {peak} bytes (charged {charged}, allowed {allowed})",
            header.request_api_version
        ));
    }
    let produce = match decoded {
        Err(_) => return Ok(Outcome::BodyRefused),
        Ok(None) => return Ok(Outcome::Decoded),
        Ok(Some(req)) => req,
    };
    let mut all_valid = true;
    for t in &produce.topic_data {
        for p in &t.partition_data {
            let records = p.records.clone().unwrap_or_default();
            let (checked, peak) = count_alloc::peak_bytes(|| -> Result<(), laminar_engine::error::EngineError> {
                for r in batch::split_batches(&records)? {
                    batch::validate_produced(&records[r], max_message_bytes)?;
                }
                Ok(())
            });
            // Batch ranges (24 bytes per batch of at least 61) and an error message.
            if peak > records.len() + UNCHARGED_SLACK_BYTES {
                return Err(format!("validating {} bytes of records allocated {peak} bytes", records.len()));
            }
            all_valid &= checked.is_ok();
        }
    }
    Ok(if all_valid { Outcome::BatchesValid } else { Outcome::BatchesRefused })
}

/// Knobs of one fuzz run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub seed: u64,
    pub duration: Duration,
    /// Exactly this many inputs (for replaying a failure), else until `duration`.
    pub iterations: Option<u64>,
}

impl Config {
    /// From `LAMINAR_FUZZ_SEED` / `_SECS` / `_ITERS`, with `default_secs`.
    pub fn from_env(default_secs: f64) -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seed = var("LAMINAR_FUZZ_SEED")
            .map(|v| {
                let v = v.trim();
                let parsed = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("LAMINAR_FUZZ_SEED={v} is not a number"))
            })
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                now.as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15
            });
        let secs: f64 =
            var("LAMINAR_FUZZ_SECS").map_or(default_secs, |v| v.parse().expect("LAMINAR_FUZZ_SECS is seconds"));
        let iterations = var("LAMINAR_FUZZ_ITERS").map(|v| v.parse().expect("LAMINAR_FUZZ_ITERS is a count"));
        Config { seed, duration: Duration::from_secs_f64(secs), iterations }
    }
}

/// Counts of a finished run.
#[derive(Debug, Default)]
pub struct Stats {
    pub inputs: u64,
    pub elapsed: Duration,
    pub header_refused: u64,
    pub body_refused: u64,
    pub decoded: u64,
    pub batches_valid: u64,
    pub batches_refused: u64,
    pub batch_mutations: u64,
}

/// Writes a failing input where the failure message says.
fn save(input: &[u8], seed: u64, iteration: u64) -> String {
    let path = std::env::temp_dir().join(format!("laminar-fuzz-{seed:016x}-{iteration}.bin"));
    match std::fs::write(&path, input) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(could not write {}: {e})", path.display()),
    }
}

/// Ends the process if one input runs longer than `HANG_TIME`, after writing
/// the input out: a hung decode cannot be interrupted any other way.
struct Watchdog {
    started_ms: Arc<AtomicU64>,
    iteration: Arc<AtomicU64>,
    current: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(seed: u64) -> Watchdog {
        let started_ms = Arc::new(AtomicU64::new(0));
        let iteration = Arc::new(AtomicU64::new(0));
        let current = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let (s, i, c, d) = (started_ms.clone(), iteration.clone(), current.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let started = s.load(Ordering::Relaxed);
                if started > 0 && epoch.elapsed().as_millis() as u64 > started + HANG_TIME.as_millis() as u64 {
                    let n = i.load(Ordering::Relaxed);
                    let path = save(&c.lock().unwrap_or_else(|e| e.into_inner()), seed, n);
                    eprintln!(
                        "fuzz: input {n} has run for more than {HANG_TIME:?} (LAMINAR_FUZZ_SEED={seed:#x} LAMINAR_FUZZ_ITERS={}); input written to {path}",
                        n + 1
                    );
                    std::process::exit(1);
                }
            }
        });
        Watchdog { started_ms, iteration, current, done, thread: Some(thread) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checks one input: no panic, within the allocation budget, in bounded time.
fn check(input: &[u8], max_message_bytes: usize) -> Result<Outcome, String> {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| exercise(input, max_message_bytes)));
    let elapsed = started.elapsed();
    let outcome = match result {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("panicked: {msg}"));
        }
    };
    if elapsed > INPUT_TIME_MAX {
        return Err(format!("took {elapsed:?} (limit {INPUT_TIME_MAX:?})"));
    }
    Ok(outcome)
}

/// Runs the fuzzer; panics on the first failing input.
pub fn run(config: Config) -> Stats {
    let seeds = corpus::seeds();
    let max_message_bytes = LogConfig::default().max_message_bytes;
    // The seeds themselves must pass, Produce ones down to the batches.
    for s in &seeds {
        let outcome =
            check(&s.frame, max_message_bytes).unwrap_or_else(|e| panic!("seed {:?} v{}: {e}", s.api, s.version));
        // Produce v0-v2 is refused after decoding: its batches are never read.
        let refused = s.version < crate::api::api_versions::PRODUCE_MIN_ACCEPTED;
        let want = if s.api == ApiKey::Produce && !refused { Outcome::BatchesValid } else { Outcome::Decoded };
        assert_eq!(outcome, want, "seed {:?} v{} is not a valid request", s.api, s.version);
    }
    let produce: Vec<&Seed> = seeds.iter().filter(|s| !s.batches.is_empty()).collect();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng::new(config.seed);
    let mut stats = Stats::default();
    let watchdog = Watchdog::start(config.seed);
    let epoch = Instant::now();
    let started = Instant::now();
    let mut input = Vec::new();
    loop {
        match config.iterations {
            Some(n) if stats.inputs >= n => break,
            None if started.elapsed() >= config.duration => break,
            _ => {}
        }
        let i = stats.inputs;
        input.clear();
        // A quarter of Produce inputs mutate inside a record batch and fix its CRC.
        let parent_is_produce = rng.chance(1, 4);
        if parent_is_produce && rng.chance(1, 4) {
            // Three in four: an uncompressed batch, whose records the broker walks.
            let seed = produce[rng.below(produce.len())];
            input.extend_from_slice(&seed.frame);
            let plain: Vec<_> = seed.batches.iter().filter(|r| seed.frame[r.start + 22] & 0x07 == 0).collect();
            let range = if !plain.is_empty() && rng.chance(3, 4) {
                plain[rng.below(plain.len())].clone()
            } else {
                seed.batches[rng.below(seed.batches.len())].clone()
            };
            mutate::mutate_batch(&mut rng, &mut input, range);
            stats.batch_mutations += 1;
        } else {
            let parent: &[u8] = if parent_is_produce {
                &produce[rng.below(produce.len())].frame
            } else if !pool.is_empty() && rng.chance(1, 2) {
                &pool[rng.below(pool.len())]
            } else {
                &seeds[rng.below(seeds.len())].frame
            };
            input.extend_from_slice(parent);
            let other = &seeds[rng.below(seeds.len())].frame;
            mutate::mutate(&mut rng, &mut input, other);
        }
        {
            let mut current = watchdog.current.lock().unwrap();
            current.clear();
            current.extend_from_slice(&input);
        }
        watchdog.iteration.store(i, Ordering::Relaxed);
        watchdog.started_ms.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let outcome = check(&input, max_message_bytes).unwrap_or_else(|e| {
            let path = save(&input, config.seed, i);
            panic!(
                "fuzz input {i} {e}\n  repeat: LAMINAR_FUZZ_SEED={:#x} LAMINAR_FUZZ_ITERS={}\n  input written to {path} (replay: LAMINAR_FUZZ_INPUT={path})",
                config.seed,
                i + 1
            )
        });
        watchdog.started_ms.store(0, Ordering::Relaxed);
        match outcome {
            Outcome::TooShort | Outcome::HeaderRefused => stats.header_refused += 1,
            Outcome::BodyRefused => stats.body_refused += 1,
            Outcome::Decoded => stats.decoded += 1,
            Outcome::BatchesValid => stats.batches_valid += 1,
            Outcome::BatchesRefused => stats.batches_refused += 1,
        }
        if matches!(outcome, Outcome::Decoded | Outcome::BatchesValid | Outcome::BatchesRefused) {
            if pool.len() < POOL_MAX {
                pool.push(input.clone());
            } else {
                let k = rng.below(POOL_MAX);
                pool[k].clone_from(&input);
            }
        }
        stats.inputs += 1;
    }
    stats.elapsed = started.elapsed();
    stats
}

/// Replays `LAMINAR_FUZZ_INPUT` if set; true if it did.
fn replay_from_env() -> bool {
    let Some(path) = std::env::var_os("LAMINAR_FUZZ_INPUT") else {
        return false;
    };
    let input = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.to_string_lossy()));
    let outcome = check(&input, LogConfig::default().max_message_bytes);
    eprintln!("fuzz replay of {}: {outcome:?}", path.to_string_lossy());
    outcome.unwrap();
    true
}

fn fuzz_for(default_secs: f64) {
    if replay_from_env() {
        return;
    }
    let config = Config::from_env(default_secs);
    eprintln!(
        "fuzz: LAMINAR_FUZZ_SEED={:#x}, {} (set LAMINAR_FUZZ_SEED / LAMINAR_FUZZ_SECS / LAMINAR_FUZZ_ITERS to repeat or extend)",
        config.seed,
        match config.iterations {
            Some(n) => format!("{n} inputs"),
            None => format!("{:?}", config.duration),
        }
    );
    let stats = run(config);
    let secs = stats.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "fuzz: {} inputs in {:.1} s ({:.0} inputs/s), seed {:#x}: header refused {}, body refused {}, decoded {}, produce batches valid {} / refused {} ({} batch mutations)",
        stats.inputs,
        secs,
        stats.inputs as f64 / secs,
        config.seed,
        stats.header_refused,
        stats.body_refused,
        stats.decoded,
        stats.batches_valid,
        stats.batches_refused,
        stats.batch_mutations
    );
    assert!(stats.inputs > 0);
}

/// The CI run: about 5 s (`LAMINAR_FUZZ_SECS`).
#[test]
fn fuzz_request_path() {
    fuzz_for(5.0);
}

/// The long run: `LAMINAR_FUZZ_SECS` (default 10 minutes), see docs/operations.md.
#[test]
#[ignore]
fn fuzz_request_path_long() {
    fuzz_for(600.0);
}

#[test]
fn every_served_api_and_version_has_a_seed() {
    let seeds = corpus::seeds();
    for &(api, _, _) in crate::api::api_versions::SUPPORTED {
        let (min, max) = crate::api::api_versions::range_of(api).unwrap();
        for v in min..=max {
            assert!(seeds.iter().any(|s| s.api == api && s.version == v), "no seed for {api:?} v{v}");
        }
    }
    let codecs: std::collections::HashSet<u8> = seeds
        .iter()
        .flat_map(|s| s.batches.iter().map(|r| batch::BatchHeader::parse(&s.frame[r.clone()]).unwrap().compression()))
        .collect();
    assert_eq!(codecs.len(), 5, "every codec appears in the Produce seeds: {codecs:?}");
}

//! Command-line arguments: the subcommands, every workload knob, and their validation.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use laminar_client::{Acks, Compression};
use serde::{Serialize, Serializer};

use crate::record_format::HEADER_BYTES;

#[derive(Debug, Parser)]
#[command(name = "laminar-bench", version, about = "Kafka-protocol load generator: throughput, latency, verification")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce records and measure acknowledgement latency.
    Produce(RunArgs),
    /// Consume records (by default from the earliest offset) and measure read throughput.
    Consume(RunArgs),
    /// Produce and consume at once; measure end-to-end latency from each record's send time.
    E2e(RunArgs),
    /// Produce and consume, then check that every acknowledged record arrived exactly once and
    /// in order. Exits with status 1 when any record is lost, duplicated or reordered.
    Verify(RunArgs),
    /// Print two JSON results side by side with ratios; optionally plot latency curves as SVG.
    Compare(CompareArgs),
}

/// Which halves of the workload a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Produce,
    Consume,
    E2e,
    Verify,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
            Mode::Verify => "verify",
        }
    }

    pub fn produces(self) -> bool {
        self != Mode::Consume
    }

    pub fn consumes(self) -> bool {
        self != Mode::Produce
    }
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct RunArgs {
    /// Comma-separated host:port list of brokers to bootstrap from.
    #[arg(short = 'b', long, default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,

    /// Topic to produce to and consume from.
    #[arg(short = 't', long, default_value = "laminar-bench")]
    pub topic: String,

    /// Create the topic first (an existing topic is used as it is).
    #[arg(long)]
    pub create_topic: bool,

    /// Partitions of a topic created with --create-topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,

    /// Replication factor of a topic created with --create-topic.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,

    /// Value size in bytes, fixed ("1024") or a uniform range ("100..4096"); at least 24, the
    /// size of the bench's record header.
    #[arg(long, default_value = "1024")]
    #[serde(serialize_with = "display")]
    pub record_size: RecordSize,

    /// Key distribution: none (unkeyed, sticky partitioning), uniform or zipf over --key-count keys.
    #[arg(long, value_enum, default_value_t = KeyDist::None)]
    pub key_dist: KeyDist,

    /// Distinct keys for uniform and zipf keys.
    #[arg(long, default_value_t = 100_000)]
    pub key_count: u64,

    /// Zipf exponent (0.99 as in YCSB; larger is more skewed).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_exponent: f64,

    /// Producer connections (each a task with its own client).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,

    /// Consumer connections; partitions are divided among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// Bytes after which a partition's batch is sent (Kafka's batch.size).
    #[arg(long, default_value_t = 16 * 1024)]
    pub batch_size: usize,

    /// Longest a batch waits for more records before it is sent (Kafka's linger.ms).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,

    /// Produce requests awaiting a response per connection (Kafka's max.in.flight).
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,

    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    #[serde(serialize_with = "display")]
    pub acks: Acks,

    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    #[serde(serialize_with = "display")]
    pub compression: Compression,

    /// Target records per second over all producers; unthrottled when absent.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Length of the measured phase, e.g. 30s, 2m, 500ms. Defaults to 10s unless --records is given.
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "opt_duration_secs")]
    pub duration: Option<Duration>,

    /// Records to produce over all producers (consume: records to read), warm-up included.
    #[arg(long)]
    pub records: Option<u64>,

    /// Unmeasured lead-in before the measured phase, e.g. 5s.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    #[serde(serialize_with = "duration_secs")]
    pub warmup: Duration,

    /// Where consumers start: earliest or latest. Defaults to earliest for consume, latest for
    /// e2e and verify (offsets are looked up before producing starts).
    #[arg(long, value_enum)]
    pub from: Option<StartFrom>,

    /// consume: stop once every partition is read up to its end offset as of the start.
    #[arg(long)]
    pub until_end: bool,

    /// Per-partition byte budget of a fetch (Kafka's max.partition.fetch.bytes).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub fetch_partition_max_bytes: i32,

    /// How long the broker may hold a fetch that has no data (Kafka's fetch.max.wait.ms).
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,

    /// e2e and verify: how long consumers may take, after producers finish, to catch up.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    #[serde(serialize_with = "duration_secs")]
    pub drain_timeout: Duration,

    /// Per-request timeout; also the produce request's server-side timeout.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// Where to write the JSON result (default: laminar-bench-<mode>.json).
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,

    /// Do not write a JSON result.
    #[arg(long)]
    #[serde(skip)]
    pub no_json: bool,

    /// Name for this run in comparisons, e.g. "laminar" or "kafka-3.9".
    #[arg(long, default_value = "")]
    pub label: String,

    /// Never print the live progress line (it is only printed when stderr is a terminal).
    #[arg(long)]
    #[serde(skip)]
    pub no_progress: bool,

    /// Runtime worker threads (default: one per core). Lower it when the bench shares the
    /// machine with the broker under test.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seed for keys, sizes and payloads (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Baseline result (the "A" column).
    pub baseline: PathBuf,
    /// Candidate result (the "B" column); ratios are B/A.
    pub candidate: PathBuf,
    /// Also write the latency percentile curves of both runs to this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDist {
    None,
    Uniform,
    Zipf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// A value size: fixed when `min == max`, otherwise uniform in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSize {
    pub min: usize,
    pub max: usize,
}

impl FromStr for RecordSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("bad record size '{s}'"));
        let (min, max) = match s.split_once("..").or_else(|| s.split_once('-')) {
            Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
            None => {
                let n = parse(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err(format!("record size range '{s}' is empty"));
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for RecordSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// "250ms", "1.5s", "2m", "1h"; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("bad duration '{s}'"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit '{other}' in '{s}' (ms, s, m, h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The default measured duration when neither --duration nor --records bounds a run.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl RunArgs {
    /// Checks the knobs against each other for `mode`; the message names the offending flag.
    pub fn validate(&self, mode: Mode) -> Result<(), String> {
        if self.record_size.min < HEADER_BYTES {
            return Err(format!("--record-size must be at least {HEADER_BYTES} bytes (the bench's record header)"));
        }
        if mode.produces() && self.producers == 0 {
            return Err("--producers must be at least 1".into());
        }
        if mode.consumes() && self.consumers == 0 {
            return Err("--consumers must be at least 1".into());
        }
        if self.batch_size == 0 || self.max_in_flight == 0 {
            return Err("--batch-size and --max-in-flight must be at least 1".into());
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err("--rate must be a positive number of records per second".into());
            }
        }
        if self.create_topic && (self.partitions < 1 || self.replication_factor < 1) {
            return Err("--partitions and --replication-factor must be at least 1".into());
        }
        if mode == Mode::Verify && self.acks == Acks::None {
            return Err("verify needs acknowledgements: use --acks 1 or --acks all".into());
        }
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        if self.records == Some(0) {
            return Err("--records must be at least 1".into());
        }
        if self.fetch_partition_max_bytes < 1 || self.fetch_max_wait_ms < 0 {
            return Err("--fetch-partition-max-bytes must be positive and --fetch-max-wait-ms not negative".into());
        }
        Ok(())
    }

    /// The measured phase's length, or `None` when only a record count (or the end of the
    /// topic) bounds the run.
    pub fn effective_duration(&self, mode: Mode) -> Option<Duration> {
        match (self.duration, self.records) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) if mode == Mode::Consume && self.until_end => None,
            (None, None) => Some(DEFAULT_DURATION),
        }
    }

    pub fn start_from(&self, mode: Mode) -> StartFrom {
        self.from.unwrap_or(if mode == Mode::Consume { StartFrom::Earliest } else { StartFrom::Latest })
    }

    pub fn json_path(&self, mode: Mode) -> Option<PathBuf> {
        if self.no_json {
            return None;
        }
        Some(self.json.clone().unwrap_or_else(|| PathBuf::from(format!("laminar-bench-{}.json", mode.name()))))
    }
}

fn display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn duration_secs<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(value.as_secs_f64())
}

fn opt_duration_secs<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        let mut full = vec!["laminar-bench"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap().command
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!("100".parse::<RecordSize>().unwrap(), RecordSize { min: 100, max: 100 });
        assert_eq!("100..400".parse::<RecordSize>().unwrap(), RecordSize { min: 100, max: 400 });
        assert_eq!("100-400".parse::<RecordSize>().unwrap(), RecordSize { min: 100, max: 400 });
        assert_eq!("100..=400".parse::<RecordSize>().unwrap(), RecordSize { min: 100, max: 400 });
        assert!("400..100".parse::<RecordSize>().is_err());
        assert_eq!(RecordSize { min: 1, max: 2 }.to_string(), "1..2");
    }

    #[test]
    fn defaults_and_validation() {
        let Command::Verify(args) = parse(&["verify", "--acks", "0"]) else { panic!() };
        assert!(args.validate(Mode::Verify).unwrap_err().contains("acks"));
        let Command::Produce(args) = parse(&["produce", "--record-size", "10"]) else { panic!() };
        assert!(args.validate(Mode::Produce).is_err());
        let Command::Produce(args) = parse(&["produce", "--records", "1000"]) else { panic!() };
        args.validate(Mode::Produce).unwrap();
        assert_eq!(args.effective_duration(Mode::Produce), None);
        assert_eq!(args.acks, Acks::All);
        let Command::Consume(args) = parse(&["consume"]) else { panic!() };
        assert_eq!(args.effective_duration(Mode::Consume), Some(DEFAULT_DURATION));
        assert_eq!(args.start_from(Mode::Consume), StartFrom::Earliest);
        assert_eq!(args.start_from(Mode::E2e), StartFrom::Latest);
        assert_eq!(args.json_path(Mode::Consume).unwrap(), PathBuf::from("laminar-bench-consume.json"));
    }

    #[test]
    fn params_serialize_readably() {
        let Command::E2e(args) =
            parse(&["e2e", "--compression", "zstd", "--duration", "3s", "--record-size", "100..200"])
        else {
            panic!()
        };
        let v = serde_json::to_value(&args).unwrap();
        assert_eq!(v["compression"], "zstd");
        assert_eq!(v["acks"], "all");
        assert_eq!(v["duration"], 3.0);
        assert_eq!(v["record_size"], "100..200");
        assert_eq!(v["key_dist"], "none");
        assert!(v.get("json").is_none());
    }
}

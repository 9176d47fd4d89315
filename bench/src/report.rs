//! A run's result: the JSON document (parameters, machine, throughput, latency, errors, CPU)
//! and its human-readable summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::machine::{CpuUsage, Machine};
use crate::progress::human_count;
use crate::stats::{per_sec, LatencySummary, SideStats};
use crate::verify::VerifyReport;

/// Bumped when fields change meaning, so `compare` can refuse what it would misread.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub tool_version: String,
    pub mode: String,
    /// Free-form name of the run (--label), e.g. the broker under test.
    pub label: String,
    pub started_unix_ms: u64,
    /// The run's knobs as given on the command line (and defaulted).
    pub params: serde_json::Value,
    pub machine: Machine,
    /// Wall time of the whole run, setup and drain included.
    pub elapsed_secs: f64,
    pub produce: Option<ProduceReport>,
    pub consume: Option<ConsumeReport>,
    pub verify: Option<VerifyReport>,
    /// The bench's own CPU use over the run.
    pub cpu: CpuUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Records inside the measured window.
    pub records: u64,
    /// Key + value bytes of those records.
    pub bytes: u64,
    pub window_secs: f64,
    pub records_per_sec: f64,
    /// Megabytes (10^6 bytes) of keys and values per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(records: u64, bytes: u64, window_secs: f64) -> Self {
        Self {
            records,
            bytes,
            window_secs,
            records_per_sec: per_sec(records, window_secs),
            mb_per_sec: per_sec(bytes, window_secs) / 1e6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceReport {
    pub throughput: Throughput,
    /// From each record's send time (its scheduled time under --rate) to its acknowledgement.
    pub ack_latency: Option<LatencySummary>,
    /// Records sent in all phases (warm-up included) and acknowledged.
    pub acked_records: u64,
    pub failed_records: u64,
    /// Occurrences by Kafka error name, or `client:<kind>`.
    pub errors: BTreeMap<String, u64>,
}

impl ProduceReport {
    pub fn from_stats(s: &SideStats, window_secs: f64) -> Self {
        Self {
            throughput: Throughput::new(s.records, s.bytes, window_secs),
            ack_latency: LatencySummary::from_histogram(&s.latency),
            acked_records: s.total_records,
            failed_records: s.failed_records,
            errors: s.errors.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeReport {
    pub throughput: Throughput,
    /// From each record's send time to its arrival at the consumer. In consume mode without a
    /// concurrent producer this is the records' age rather than a latency.
    pub e2e_latency: Option<LatencySummary>,
    /// Records read in all phases.
    pub read_records: u64,
    /// Records without the bench header, or from another run.
    pub foreign_records: u64,
    pub errors: BTreeMap<String, u64>,
}

impl ConsumeReport {
    pub fn from_stats(s: &SideStats, window_secs: f64) -> Self {
        Self {
            throughput: Throughput::new(s.records, s.bytes, window_secs),
            e2e_latency: LatencySummary::from_histogram(&s.latency),
            read_records: s.total_records,
            foreign_records: s.foreign_records,
            errors: s.errors.clone(),
        }
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let report: Report = serde_json::from_str(text).map_err(|e| format!("not a laminar-bench result: {e}"))?;
        if report.format_version != FORMAT_VERSION {
            return Err(format!(
                "result format {} is not the {FORMAT_VERSION} this version reads",
                report.format_version
            ));
        }
        Ok(report)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A few lines for people: throughput, latency, errors, verification, CPU.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let param = |name: &str| p[name].as_str().unwrap_or("?").to_string();
        let label = if self.label.is_empty() { String::new() } else { format!(" [{}]", self.label) };
        let mut head =
            format!("laminar-bench {}{label}: topic {} at {}", self.mode, param("topic"), param("bootstrap_servers"));
        if self.produce.is_some() {
            let acks = param("acks");
            let _ =
                write!(head, ", {} B values, acks {acks}, compression {}", param("record_size"), param("compression"));
        }
        let _ = writeln!(out, "{head}");
        if let Some(prod) = &self.produce {
            let _ = writeln!(out, "produce  {}", throughput_line(&prod.throughput));
            if let Some(l) = &prod.ack_latency {
                let _ = writeln!(out, "  ack latency  {}", latency_line(l));
            }
            if prod.failed_records > 0 || !prod.errors.is_empty() {
                let _ = writeln!(out, "  failed records {}  errors {}", prod.failed_records, errors_line(&prod.errors));
            }
        }
        if let Some(cons) = &self.consume {
            let _ = writeln!(out, "consume  {}", throughput_line(&cons.throughput));
            if let Some(l) = &cons.e2e_latency {
                let name = if self.mode == "consume" { "record age " } else { "e2e latency" };
                let _ = writeln!(out, "  {name}  {}", latency_line(l));
            }
            if cons.foreign_records > 0 {
                let _ = writeln!(out, "  records not from this run: {}", cons.foreign_records);
            }
            if !cons.errors.is_empty() {
                let _ = writeln!(out, "  errors {}", errors_line(&cons.errors));
            }
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                out,
                "verify   {}: acked {} delivered {} lost {} duplicated {} reordered {} (unacked but delivered {}, failed produces {})",
                if v.passed { "PASSED" } else { "FAILED" },
                v.acked,
                v.delivered,
                v.lost,
                v.duplicated,
                v.reordered,
                v.delivered_unacked,
                v.failed_produce,
            );
            for example in v.examples.iter().take(10) {
                let _ = writeln!(out, "  {example}");
            }
        }
        let _ = writeln!(
            out,
            "bench cpu {:.2} cores busy ({:.0}% of {} cores; user {:.1}s sys {:.1}s; {:.2} µs/record)",
            self.cpu.cores_busy,
            self.cpu.percent_of_machine,
            self.machine.cores,
            self.cpu.user_secs,
            self.cpu.system_secs,
            self.cpu.us_per_record,
        );
        out
    }
}

fn throughput_line(t: &Throughput) -> String {
    format!(
        "{} rec/s  {:.2} MB/s  ({} records in {:.2}s)",
        human_count(t.records_per_sec),
        t.mb_per_sec,
        t.records,
        t.window_secs
    )
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
    )
}

fn errors_line(errors: &BTreeMap<String, u64>) -> String {
    errors.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::machine::CpuTimes;
    use crate::stats::new_histogram;

    /// A plausible report for tests here and in compare.rs.
    pub fn sample_report(label: &str, scale: f64) -> Report {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record((us as f64 * scale) as u64 + 1).unwrap();
        }
        let mut errors = BTreeMap::new();
        errors.insert("NotLeaderOrFollower".to_string(), 2);
        Report {
            format_version: FORMAT_VERSION,
            tool_version: "test".into(),
            mode: "e2e".into(),
            label: label.into(),
            started_unix_ms: 1_700_000_000_000,
            params: serde_json::json!({"topic": "t", "bootstrap_servers": "b:9092", "record_size": "100",
                                       "acks": "all", "compression": "lz4"}),
            machine: Machine {
                cores: 2,
                cpu_model: Some("cpu".into()),
                os: "linux".into(),
                kernel: Some("6.1".into()),
                arch: "x86_64".into(),
                memory_bytes: Some(1 << 30),
            },
            elapsed_secs: 12.0,
            produce: Some(ProduceReport {
                throughput: Throughput::new((100_000.0 / scale) as u64, (10_000_000.0 / scale) as u64, 10.0),
                ack_latency: LatencySummary::from_histogram(&h),
                acked_records: 100_000,
                failed_records: 20,
                errors: errors.clone(),
            }),
            consume: Some(ConsumeReport {
                throughput: Throughput::new(100_000, 10_000_000, 10.0),
                e2e_latency: LatencySummary::from_histogram(&h),
                read_records: 100_000,
                foreign_records: 0,
                errors: BTreeMap::new(),
            }),
            verify: None,
            cpu: CpuUsage::new(CpuTimes { user_secs: 1.0, system_secs: 0.5 }, 12.0, 2, 200_000),
        }
    }

    #[test]
    fn json_round_trips() {
        let report = sample_report("laminar", 1.0);
        let back = Report::from_json(&report.to_json()).unwrap();
        assert_eq!(back, report);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        report.write(&path).unwrap();
        assert_eq!(Report::read(&path).unwrap(), report);
    }

    #[test]
    fn rejects_other_formats() {
        let mut v: serde_json::Value = serde_json::from_str(&sample_report("x", 1.0).to_json()).unwrap();
        v["format_version"] = 99.into();
        assert!(Report::from_json(&v.to_string()).unwrap_err().contains("format"));
        assert!(Report::from_json("{}").is_err());
    }

    #[test]
    fn summary_mentions_the_essentials() {
        let text = sample_report("laminar", 1.0).summary();
        assert!(text.contains("[laminar]"), "{text}");
        assert!(text.contains("10.0k rec/s"), "{text}");
        assert!(text.contains("ack latency"), "{text}");
        assert!(text.contains("NotLeaderOrFollower=2"), "{text}");
        assert!(text.contains("bench cpu"), "{text}");
        assert!(text.contains("p99.99"), "{text}");
    }
}

//! `compare`: two results side by side, with B/A ratios, differing parameters, and optionally
//! their latency curves as an SVG plot.

use std::fmt::Write as _;
use std::path::Path;

use crate::args::CompareArgs;
use crate::report::Report;
use crate::stats::LatencySummary;
use crate::svg::{percentile_plot, Series};

/// One compared quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// For the verdict column: throughput is better higher, latency and CPU lower.
    pub higher_is_better: bool,
}

impl Row {
    /// B / A, when both exist and A is non-zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a != 0.0 => Some(b / a),
            _ => None,
        }
    }
}

fn throughput_rows(rows: &mut Vec<Row>, side: &str, a: Option<(f64, f64)>, b: Option<(f64, f64)>) {
    if a.is_none() && b.is_none() {
        return;
    }
    rows.push(Row { name: format!("{side} records/s"), a: a.map(|t| t.0), b: b.map(|t| t.0), higher_is_better: true });
    rows.push(Row { name: format!("{side} MB/s"), a: a.map(|t| t.1), b: b.map(|t| t.1), higher_is_better: true });
}

/// Reads one percentile out of a summary.
type Field = fn(&LatencySummary) -> f64;

fn latency_rows(rows: &mut Vec<Row>, name: &str, a: Option<&LatencySummary>, b: Option<&LatencySummary>) {
    if a.is_none() && b.is_none() {
        return;
    }
    let fields: [(&str, Field); 7] = [
        ("p50", |l| l.p50_ms),
        ("p90", |l| l.p90_ms),
        ("p99", |l| l.p99_ms),
        ("p99.9", |l| l.p999_ms),
        ("p99.99", |l| l.p9999_ms),
        ("max", |l| l.max_ms),
        ("mean", |l| l.mean_ms),
    ];
    for (field, get) in fields {
        rows.push(Row { name: format!("{name} {field} ms"), a: a.map(get), b: b.map(get), higher_is_better: false });
    }
}

/// Every quantity both results can be compared on, in display order.
pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    let prod_tp = |r: &Report| r.produce.as_ref().map(|p| (p.throughput.records_per_sec, p.throughput.mb_per_sec));
    let cons_tp = |r: &Report| r.consume.as_ref().map(|c| (c.throughput.records_per_sec, c.throughput.mb_per_sec));
    throughput_rows(&mut rows, "produce", prod_tp(a), prod_tp(b));
    latency_rows(
        &mut rows,
        "ack",
        a.produce.as_ref().and_then(|p| p.ack_latency.as_ref()),
        b.produce.as_ref().and_then(|p| p.ack_latency.as_ref()),
    );
    throughput_rows(&mut rows, "consume", cons_tp(a), cons_tp(b));
    latency_rows(
        &mut rows,
        "e2e",
        a.consume.as_ref().and_then(|c| c.e2e_latency.as_ref()),
        b.consume.as_ref().and_then(|c| c.e2e_latency.as_ref()),
    );
    let failed = |r: &Report| r.produce.as_ref().map(|p| p.failed_records as f64);
    if failed(a).is_some() || failed(b).is_some() {
        rows.push(Row { name: "failed produce records".into(), a: failed(a), b: failed(b), higher_is_better: false });
    }
    let lost = |r: &Report| r.verify.as_ref().map(|v| (v.lost + v.duplicated + v.reordered) as f64);
    if lost(a).is_some() || lost(b).is_some() {
        rows.push(Row { name: "lost+dup+reordered".into(), a: lost(a), b: lost(b), higher_is_better: false });
    }
    rows.push(Row {
        name: "bench cores busy".into(),
        a: Some(a.cpu.cores_busy),
        b: Some(b.cpu.cores_busy),
        higher_is_better: false,
    });
    rows.push(Row {
        name: "bench cpu µs/record".into(),
        a: Some(a.cpu.us_per_record),
        b: Some(b.cpu.us_per_record),
        higher_is_better: false,
    });
    rows
}

/// Parameters whose values differ: (name, A's value, B's value).
pub fn differing_params(a: &Report, b: &Report) -> Vec<(String, String, String)> {
    let empty = serde_json::Map::new();
    let pa = a.params.as_object().unwrap_or(&empty);
    let pb = b.params.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| v.map_or("-".to_string(), |v| v.to_string());
    keys.into_iter()
        .filter(|k| pa.get(*k) != pb.get(*k))
        .map(|k| (k.clone(), show(pa.get(k)), show(pb.get(k))))
        .collect()
}

fn format_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1e5 || x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// The side-by-side table as text.
pub fn render(a: &Report, b: &Report, a_label: &str, b_label: &str) -> String {
    let rows = rows(a, b);
    let name_w = rows.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).max(6);
    let col_w = 14usize.max(a_label.chars().count()).max(b_label.chars().count());
    let mut out = String::new();
    let _ = writeln!(out, "{:<name_w$}  {a_label:>col_w$}  {b_label:>col_w$}  {:>8}", "metric", "B/A");
    for r in &rows {
        let (ratio, verdict) = match r.ratio() {
            None => ("-".to_string(), ""),
            Some(x) => {
                let better = if r.higher_is_better { x > 1.0 } else { x < 1.0 };
                // Within 2% reads as a tie: run-to-run noise is usually larger.
                let verdict = if (x - 1.0).abs() < 0.02 {
                    ""
                } else if better {
                    "  B better"
                } else {
                    "  B worse"
                };
                (format!("{x:.3}"), verdict)
            }
        };
        let _ = writeln!(
            out,
            "{:<name_w$}  {:>col_w$}  {:>col_w$}  {ratio:>8}{verdict}",
            r.name,
            format_value(r.a),
            format_value(r.b)
        );
    }
    let diffs = differing_params(a, b);
    if !diffs.is_empty() {
        let _ = writeln!(out, "\nparameters that differ:");
        for (k, va, vb) in diffs {
            let _ = writeln!(out, "  {k}: {va} vs {vb}");
        }
    }
    if a.machine != b.machine {
        let _ = writeln!(
            out,
            "\nnote: the runs were on different machines ({} vs {} cores)",
            a.machine.cores, b.machine.cores
        );
    }
    out
}

/// The SVG plot of both runs' ack and end-to-end latency curves.
pub fn plot(a: &Report, b: &Report, a_label: &str, b_label: &str) -> String {
    let mut series = Vec::new();
    for (color, (report, label)) in [(a, a_label), (b, b_label)].into_iter().enumerate() {
        if let Some(l) = report.produce.as_ref().and_then(|p| p.ack_latency.as_ref()) {
            series.push(Series { label: format!("{label} ack"), points: l.curve.clone(), color, dashed: false });
        }
        if let Some(l) = report.consume.as_ref().and_then(|c| c.e2e_latency.as_ref()) {
            series.push(Series { label: format!("{label} e2e"), points: l.curve.clone(), color, dashed: true });
        }
    }
    percentile_plot(&format!("Latency by percentile: {a_label} vs {b_label}"), &series)
}

/// A run's name for column headers: its label, else its file name.
fn label_of(report: &Report, path: &Path) -> String {
    if !report.label.is_empty() {
        return report.label.clone();
    }
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// Runs the subcommand; returns the text to print.
pub fn run(args: &CompareArgs) -> Result<String, String> {
    let a = Report::read(&args.baseline)?;
    let b = Report::read(&args.candidate)?;
    let mut a_label = label_of(&a, &args.baseline);
    let mut b_label = label_of(&b, &args.candidate);
    if a_label == b_label {
        a_label += " (A)";
        b_label += " (B)";
    }
    let mut out = render(&a, &b, &a_label, &b_label);
    if let Some(path) = &args.svg {
        std::fs::write(path, plot(&a, &b, &a_label, &b_label)).map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(out, "\nlatency plot written to {}", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn ratios_are_b_over_a() {
        // B has twice the latency and half the produce throughput.
        let a = sample_report("a", 1.0);
        let b = sample_report("b", 2.0);
        let rows = rows(&a, &b);
        let get = |name: &str| rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name}"));
        let tp = get("produce records/s");
        assert!((tp.ratio().unwrap() - 0.5).abs() < 1e-9);
        let p99 = get("ack p99 ms");
        assert!((p99.ratio().unwrap() - 2.0).abs() < 0.05, "{p99:?}");
        assert!((get("consume MB/s").ratio().unwrap() - 1.0).abs() < 1e-9);
        assert!(rows.iter().any(|r| r.name == "e2e p99.99 ms"));
        assert_eq!(Row { name: String::new(), a: Some(0.0), b: Some(1.0), higher_is_better: true }.ratio(), None);
    }

    #[test]
    fn table_shows_verdicts_and_param_differences() {
        let a = sample_report("laminar", 1.0);
        let mut b = sample_report("kafka", 2.0);
        b.params["compression"] = "zstd".into();
        let text = render(&a, &b, "laminar", "kafka");
        let line = text.lines().find(|l| l.starts_with("produce records/s")).unwrap();
        assert!(line.contains("0.500") && line.contains("B worse"), "{line}");
        let line = text.lines().find(|l| l.starts_with("ack p50 ms")).unwrap();
        assert!(line.contains("B worse"), "{line}");
        assert!(text.contains("compression: \"lz4\" vs \"zstd\""), "{text}");
    }

    #[test]
    fn run_reads_files_and_writes_the_plot() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb, svg) = (dir.path().join("a.json"), dir.path().join("b.json"), dir.path().join("p.svg"));
        sample_report("", 1.0).write(&pa).unwrap();
        sample_report("", 1.5).write(&pb).unwrap();
        let out = run(&CompareArgs { baseline: pa, candidate: pb, svg: Some(svg.clone()) }).unwrap();
        assert!(out.contains(" a ") || out.contains("a  "), "file stems label the columns: {out}");
        let plot = std::fs::read_to_string(svg).unwrap();
        assert_eq!(plot.matches("<polyline").count(), 4, "ack and e2e for each run");
        assert!(run(&CompareArgs {
            baseline: dir.path().join("missing.json"),
            candidate: dir.path().join("b.json"),
            svg: None
        })
        .is_err());
    }
}

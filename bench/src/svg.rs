//! Hand-written SVG of latency percentile curves (the HdrHistogram "percentile spectrum" view).
//!
//! The x axis is in "nines" (−log10(1 − p)), so p90, p99, p99.9 … are evenly spaced and the
//! tail gets as much room as the body; the max sits at the right edge. The y axis is
//! logarithmic when the values span more than a decade and a half, linear otherwise.

use std::fmt::Write as _;

pub struct Series {
    pub label: String,
    /// (percentile, milliseconds), as in `LatencySummary::curve`.
    pub points: Vec<[f64; 2]>,
    /// Picks the colour: one per compared run.
    pub color: usize,
    /// Dashed lines tell a second latency kind (e.g. end-to-end) from the first.
    pub dashed: bool,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
/// Where the max is drawn, in nines; the curves stop at 5.
const MAX_AT_NINES: f64 = 5.6;
/// Ratio of largest to smallest value beyond which the y axis becomes logarithmic.
const LOG_Y_SPAN: f64 = 30.0;

fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        MAX_AT_NINES
    } else {
        (-(1.0 - percentile / 100.0).log10()).min(MAX_AT_NINES)
    }
}

struct YScale {
    log: bool,
    lo: f64,
    hi: f64,
}

impl YScale {
    fn new(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Self { log: false, lo: 0.0, hi: 1.0 };
        }
        if hi / lo > LOG_Y_SPAN {
            Self { log: true, lo: 10f64.powf(lo.log10().floor()), hi: 10f64.powf(hi.log10().ceil()) }
        } else {
            Self { log: false, lo: 0.0, hi: nice_ceiling(hi * 1.05) }
        }
    }

    /// 0 at the bottom of the plot, 1 at the top.
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (self.lo.log10().round() as i32, self.hi.log10().round() as i32);
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            let step = nice_ceiling(self.hi / 5.0);
            (0..=5).map(|i| i as f64 * step).filter(|&v| v <= self.hi * 1.0001).collect()
        }
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&v| v >= x * 0.9999).unwrap_or(10.0 * magnitude)
}

fn format_ms(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{}", (v * 10.0).round() / 10.0)
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A complete SVG document plotting every series.
pub fn percentile_plot(title: &str, series: &[Series]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = YScale::new(series.iter().flat_map(|s| s.points.iter().map(|p| p[1])));
    let px = |n: f64| LEFT + plot_w * n / MAX_AT_NINES;
    let py = |v: f64| TOP + plot_h * (1.0 - y.fraction(v).clamp(0.0, 1.0));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid and axes.
    let x_ticks: [(f64, &str); 7] = [
        (0.0, "p0"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
        (5.0, "p99.999"),
        (MAX_AT_NINES, "max"),
    ];
    for (n, label) in x_ticks {
        let x = px(n);
        let _ =
            writeln!(svg, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e0e0e0"/>"##, TOP + plot_h);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#, TOP + plot_h + 18.0);
    }
    for v in y.ticks() {
        let yy = py(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e0e0e0"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            format_ms(v)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms{})</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        if y.log { ", log scale" } else { "" }
    );

    // Curves, then the legend on top of them.
    for s in series {
        let color = COLORS[s.color % COLORS.len()];
        let dash = if s.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let points: Vec<String> = s.points.iter().map(|p| format!("{:.1},{:.1}", px(nines(p[0])), py(p[1]))).collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
    }
    // Bottom right: percentile curves rise to the right, so that corner is usually empty.
    let longest = series.iter().map(|s| s.label.chars().count()).max().unwrap_or(0) as f64;
    let (box_w, box_h) = (62.0 + 7.0 * longest, 10.0 + 18.0 * series.len() as f64);
    let (box_x, box_y) = (LEFT + plot_w - box_w - 10.0, TOP + plot_h - box_h - 10.0);
    if !series.is_empty() {
        let _ = writeln!(
            svg,
            r##"<rect x="{box_x:.1}" y="{box_y:.1}" width="{box_w:.1}" height="{box_h:.1}" fill="white" fill-opacity="0.85" stroke="#ccc"/>"##
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[s.color % COLORS.len()];
        let dash = if s.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let ly = box_y + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/>"#,
            box_x + 8.0,
            box_x + 38.0
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, box_x + 44.0, ly + 4.0, escape(&s.label));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(scale: f64) -> Vec<[f64; 2]> {
        vec![[0.0, 0.1 * scale], [90.0, 1.0 * scale], [99.0, 2.0 * scale], [99.9, 10.0 * scale], [100.0, 50.0 * scale]]
    }

    #[test]
    fn renders_a_well_formed_document() {
        let series = vec![
            Series { label: "laminar <ack>".into(), points: curve(1.0), color: 0, dashed: false },
            Series { label: "kafka & co".into(), points: curve(2.0), color: 1, dashed: true },
        ];
        let svg = percentile_plot("Produce latency", &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("laminar &lt;ack&gt;") && svg.contains("kafka &amp; co"));
        assert!(svg.contains("log scale"), "0.1 to 100 ms spans three decades");
        assert!(svg.contains("stroke-dasharray"));
        // Every opened element is closed: self-closing tags or matching end tags.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn scales_and_ticks() {
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_AT_NINES);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.07), 0.1);
        assert_eq!(nice_ceiling(20.0), 20.0);
        let linear = YScale::new([1.0, 2.0, 4.0].into_iter());
        assert!(!linear.log);
        assert_eq!(linear.ticks(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((linear.fraction(2.5) - 0.5).abs() < 1e-9);
        let log = YScale::new([0.5, 200.0].into_iter());
        assert!(log.log);
        assert_eq!(log.ticks(), vec![0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert!(YScale::new(std::iter::empty()).ticks().len() > 1);
    }
}

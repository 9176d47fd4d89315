#!/usr/bin/env python3
"""Draws docs/grafana-dashboard.json's panels as a static HTML page (inline
SVG) from recorded /metrics scrapes, the way Grafana would show them.
There is no Grafana here: this evaluates the small part of PromQL the
dashboard uses (selectors with = and =~ matchers, rate(), sum [by (...)],
histogram_quantile()) over the scrapes, Prometheus' way (rate over the
samples in the window with counter resets, quantiles interpolated within
buckets). $__rate_interval is taken as --rate-window, $instance as all.

    render-dashboard.py DASHBOARD.json SAMPLES.jsonl OUT.html

SAMPLES.jsonl: one scrape a line, {"t": unix seconds, "instance": "...",
"text": "<the /metrics body>"} (scripts/dashboard-picture.py writes it).
"""

import argparse
import html
import json
import math
import re
from collections import defaultdict

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def load_samples(path):
    """[(t, {(name, frozenset(labels)): value})] in time order, one entry
    per scrape round (scrapes of several instances at once are merged)."""
    rounds = defaultdict(dict)
    for line in open(path):
        rec = json.loads(line)
        t = round(rec["t"])
        for fam in text_string_to_metric_families(rec["text"]):
            for s in fam.samples:
                labels = dict(s.labels, instance=rec["instance"])
                rounds[t][(s.name, frozenset(labels.items()))] = float(s.value)
    return sorted(rounds.items())


SELECTOR = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?$', re.S)
MATCHER = re.compile(r'\s*([a-zA-Z_]+)\s*(=~|!=|=)\s*"([^"]*)"\s*,?')


def parse_selector(expr):
    m = SELECTOR.match(expr.strip())
    if not m:
        raise ValueError(f"unsupported expression: {expr}")
    name, body = m.group(1), m.group(2) or ""
    matchers = []
    pos = 0
    while pos < len(body.strip()):
        mm = MATCHER.match(body, pos)
        if not mm:
            raise ValueError(f"bad matcher in {expr}")
        matchers.append(mm.groups())
        pos = mm.end()
    return name, matchers


def matches(labels, matchers):
    for k, op, v in matchers:
        have = labels.get(k, "")
        if op == "=" and have != v:
            return False
        if op == "!=" and have == v:
            return False
        if op == "=~" and not re.fullmatch(v, have):
            return False
    return True


class Evaluator:
    def __init__(self, rounds, rate_window):
        self.rounds = rounds
        self.rate_window = rate_window

    def select(self, expr, index):
        name, matchers = parse_selector(expr)
        out = {}
        for (n, labels), v in self.rounds[index][1].items():
            if n == name and matches(dict(labels), matchers):
                out[frozenset((k, x) for k, x in labels if k != "__name__")] = v
        return out

    def rate(self, expr, window, index):
        t_end = self.rounds[index][0]
        points = defaultdict(list)
        idxs = [i for i in range(index + 1) if self.rounds[i][0] >= t_end - window]
        for i in idxs:
            for labels, v in self.select(expr, i).items():
                points[labels].append((self.rounds[i][0], v))
        out = {}
        for labels, pts in points.items():
            if len(pts) < 2:
                continue
            increase = 0.0
            for (_, a), (_, b) in zip(pts, pts[1:]):
                increase += b - a if b >= a else b  # a reset: counted from 0
            out[labels] = increase / (pts[-1][0] - pts[0][0])
        return out

    def eval(self, expr, index):
        expr = expr.strip()
        m = re.match(r'^histogram_quantile\(\s*([0-9.]+)\s*,(.*)\)$', expr, re.S)
        if m:
            return quantile(float(m.group(1)), self.eval(m.group(2), index))
        m = re.match(r'^(sum|max)\s*(?:by\s*\(([^)]*)\))?\s*\((.*)\)$', expr, re.S)
        if m:
            keep = [x.strip() for x in (m.group(2) or "").split(",") if x.strip()]
            inner = self.eval(m.group(3), index)
            out = {}
            for labels, v in inner.items():
                key = frozenset((k, x) for k, x in labels if k in keep)
                if m.group(1) == "sum":
                    out[key] = out.get(key, 0.0) + v
                else:
                    out[key] = max(out.get(key, -math.inf), v)
            return out
        m = re.match(r'^rate\((.*)\[(\d+)([smh])\]\)$', expr, re.S)
        if m:
            window = int(m.group(2)) * {"s": 1, "m": 60, "h": 3600}[m.group(3)]
            return self.rate(m.group(1), window, index)
        return self.select(expr, index)


def quantile(q, buckets):
    """histogram_quantile over series carrying an `le` label."""
    groups = defaultdict(list)
    for labels, v in buckets.items():
        d = dict(labels)
        le = float(d.pop("le"))
        groups[frozenset(d.items())].append((le, v))
    out = {}
    for labels, bs in groups.items():
        bs.sort()
        total = bs[-1][1]
        if total <= 0:
            continue
        rank = q * total
        lower, below = 0.0, 0.0
        for le, count in bs:
            if count >= rank:
                if math.isinf(le):
                    out[labels] = lower
                else:
                    out[labels] = lower + (le - lower) * ((rank - below) / max(count - below, 1e-12))
                break
            lower, below = le, count
    return out


def legend(fmt, labels):
    d = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: d.get(m.group(1), ""), fmt) or "value"


def fmt_value(v, unit):
    if unit == "percentunit":
        return f"{v * 100:.0f}%"
    if unit == "s":
        if v == 0:
            return "0"
        if v < 1e-3:
            return f"{v * 1e6:.0f} µs"
        if v < 1:
            return f"{v * 1e3:.1f} ms"
        return f"{v:.2f} s"
    if unit == "Bps":
        for div, suffix in ((1 << 30, "GiB/s"), (1 << 20, "MiB/s"), (1 << 10, "KiB/s")):
            if v >= div:
                return f"{v / div:.1f} {suffix}"
        return f"{v:.0f} B/s"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit, "")
    if v >= 1e6:
        return f"{v / 1e6:.1f}M{suffix}"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k{suffix}"
    return f"{v:.3g}{suffix}"


COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357", "#96d98d", "#ca95e5"]


def draw_panel(p, ev, rounds, width, height):
    unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    series = {}
    for target in p.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", f"{ev.rate_window}s").replace("$instance", ".*")
        for i in range(len(rounds)):
            for labels, v in ev.eval(expr, i).items():
                if math.isnan(v):
                    continue
                name = legend(target.get("legendFormat", ""), labels)
                series.setdefault(name, []).append((rounds[i][0] - rounds[0][0], v))
    pad_l, pad_r, pad_t, pad_b = 64, 10, 8, 22
    legend_rows = max(1, math.ceil(len(series) / 3))
    plot_h = height - pad_t - pad_b - 16 * legend_rows
    plot_w = width - pad_l - pad_r
    t_max = max(1, rounds[-1][0] - rounds[0][0])
    step = t_max / max(1, len(rounds) - 1)
    v_max = max([v for pts in series.values() for _, v in pts] + [0])
    v_max = v_max * 1.1 if v_max > 0 else 1
    svg = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for k in range(5):
        y = pad_t + plot_h * k / 4
        svg.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3235"/>')
        svg.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(fmt_value(v_max * (4 - k) / 4, unit))}</text>')
    for k in range(7):
        x = pad_l + plot_w * k / 6
        svg.append(f'<text x="{x:.1f}" y="{pad_t + plot_h + 15:.1f}" text-anchor="middle">{t_max * k / 6:.0f}s</text>')
    for n, (name, pts) in enumerate(sorted(series.items())):
        color = COLORS[n % len(COLORS)]
        # A series missing from scrapes (a broker down) is drawn with a gap.
        segments, prev = [[]], None
        for t, v in pts:
            if prev is not None and t - prev > 1.5 * step:
                segments.append([])
            segments[-1].append(f"{pad_l + plot_w * t / t_max:.1f},{pad_t + plot_h * (1 - v / v_max):.1f}")
            prev = t
        for seg in segments:
            svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(seg)}"/>')
        lx = pad_l + (n % 3) * (plot_w / 3)
        ly = pad_t + plot_h + 30 + 16 * (n // 3)
        last = fmt_value(pts[-1][1], unit) if pts else ""
        svg.append(f'<rect x="{lx:.1f}" y="{ly - 8:.1f}" width="10" height="3" fill="{color}"/>'
                   f'<text x="{lx + 14:.1f}" y="{ly - 3:.1f}">{html.escape(name[:34])} · {html.escape(last)}</text>')
    if not series:
        svg.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#8e8e8e">No data</text>')
    svg.append("</svg>")
    return "".join(svg)


def render(dashboard, rounds, rate_window, grid_px=58, row_px=30):
    ev = Evaluator(rounds, rate_window)
    panels = dashboard["panels"]
    # Grafana's grid: 24 columns; a height unit is 30 px.
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    body = []
    for p in panels:
        g = p["gridPos"]
        x, y, w, h = g["x"] * grid_px, g["y"] * row_px, g["w"] * grid_px, g["h"] * row_px
        if p["type"] == "row":
            body.append(f'<div class="row" style="left:{x}px;top:{y}px;width:{w}px">{html.escape(p["title"])}</div>')
            continue
        svg = draw_panel(p, ev, rounds, w - 12, h - 34)
        body.append(f'<div class="panel" style="left:{x + 4}px;top:{y + 4}px;width:{w - 8}px;height:{h - 8}px">'
                    f'<div class="title">{html.escape(p["title"])}</div>{svg}</div>')
    span = rounds[-1][0] - rounds[0][0]
    instances = sorted({dict(l)["instance"] for _, s in rounds[:1] for (_, l) in s})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(dashboard['title'])}</title>
<style>
body {{ background:#111217; color:#ccccdc; font:12px Inter, Helvetica, Arial, sans-serif; margin:0; }}
.top {{ padding:10px 16px; font-size:16px; border-bottom:1px solid #2c3235; }}
.top small {{ color:#8e8e8e; font-size:12px; margin-left:12px; }}
.grid {{ position:relative; margin:8px; width:{24 * grid_px}px; height:{bottom * row_px}px; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; border-radius:2px; }}
.title {{ padding:6px 8px; font-weight:500; color:#d8d9da; }}
.row {{ position:absolute; font-size:14px; font-weight:500; padding:6px 4px; color:#d8d9da; }}
svg text {{ fill:#9fa1a6; font-size:10px; }}
</style></head><body>
<div class="top">{html.escape(dashboard['title'])}<small>Broker: All ({html.escape(', '.join(instances))}) · last {span} s · rate window {rate_window} s · rendered from recorded /metrics scrapes by scripts/render-dashboard.py</small></div>
<div class="grid">{''.join(body)}</div></body></html>"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dashboard")
    ap.add_argument("samples")
    ap.add_argument("out")
    ap.add_argument("--rate-window", type=int, default=5, help="seconds standing for $__rate_interval")
    a = ap.parse_args()
    rounds = load_samples(a.samples)
    if len(rounds) < 2:
        raise SystemExit("need at least two scrapes")
    with open(a.out, "w") as f:
        f.write(render(json.load(open(a.dashboard)), rounds, a.rate_window))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Laminar's standard benchmark set (docs/benchmarks.md): measures the
machine's limits (fio sequential write, iperf3 loopback) and then each bench
case against a fresh release `laminar`, all in one run, and prints a
markdown table with every figure beside its limit.

Usage: python3 scripts/bench-standard.py [--secs 10] [--repeat 3] [--out bench-results/]
Every case (and every limit) runs --repeat times; the table shows medians.
Needs fio and iperf3 (scripts/install-test-deps.sh installs them).
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAMINAR = ROOT / "target/release/laminar"
BENCH = ROOT / "target/release/laminar-bench"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def fio_write(directory, sync, secs):
    """Sequential 1 MiB writes for as long as a bench case runs: buffered (the
    page cache absorbs what it can, then writeback throttles, as it does for
    the broker), or with fdatasync after every write (what acks=all asks).
    A fixed size instead would measure mostly memcpy into the page cache and
    swing by 5x from run to run."""
    args = ["fio", "--name=seq", "--rw=write", "--bs=1M", "--size=8G", "--time_based", f"--runtime={secs}",
            f"--directory={directory}", "--ioengine=psync", "--output-format=json", "--unlink=1"]
    args += ["--fdatasync=1"] if sync else ["--end_fsync=1"]
    out = json.loads(run(args).stdout)
    return out["jobs"][0]["write"]["bw_bytes"] / 1e6


def iperf3_loopback(secs=5):
    port = "5399"
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", port],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(secs), "-J"]).stdout)
        return out["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
    finally:
        server.kill()
        server.wait()


class Broker:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="laminar-bench-", dir=os.environ.get("BENCH_DIR"))
        self.proc = subprocess.Popen([str(LAMINAR), "--listen", "127.0.0.1:0", "--data-dir", self.dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.addr = line.split()[-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(mode, addr, out_dir, name, args):
    path = out_dir / f"{name}.json"
    cmd = [str(BENCH), mode, "-b", addr, "--no-progress", "--json", str(path), "--label", name] + args
    run(cmd)
    return json.loads(path.read_text()), " ".join(["laminar-bench", mode] + args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    opts = ap.parse_args()
    out_dir = pathlib.Path(opts.out) / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True)
    run(["cargo", "build", "--release", "-q", "-p", "laminar-broker", "-p", "laminar-bench"], cwd=ROOT)

    disk_dir = os.environ.get("BENCH_DIR") or tempfile.gettempdir()
    med = statistics.median
    limits = {
        "fio_buffered_mb_s": med(fio_write(disk_dir, False, opts.secs + 3) for _ in range(opts.repeat)),
        "fio_fdatasync_mb_s": med(fio_write(disk_dir, True, opts.secs + 3) for _ in range(opts.repeat)),
        "iperf3_loopback_mb_s": med(iperf3_loopback() for _ in range(opts.repeat)),
    }
    print(f"machine limits: {json.dumps(limits)}", file=sys.stderr)

    dur = ["--duration", f"{opts.secs}s", "--warmup", "3s"]
    base = {"size": "1024", "producers": "8", "acks": "1", "partitions": "16", "compression": "none"}
    cases = [
        ("baseline", {}),
        ("100B", {"size": "100"}),
        ("1-producer", {"producers": "1"}),
        ("acks-all", {"acks": "all"}),
        ("1-partition", {"partitions": "1"}),
        ("lz4", {"compression": "lz4"}),
        ("100B-1-producer-acks-all-1-partition", {"size": "100", "producers": "1", "acks": "all", "partitions": "1"}),
    ]
    def median_row(runs):
        """The run with the median throughput (its latencies go with it)."""
        runs = sorted(runs, key=lambda r: r[2])
        return runs[len(runs) // 2]

    rows = []
    baseline_rps = None
    for name, change in cases:
        c = {**base, **change}
        produce_runs, consume_runs = [], []
        for rep_i in range(opts.repeat):
            b = Broker()
            try:
                args = ["--topic", "t", "--create-topic", "--partitions", c["partitions"], "--record-size", c["size"],
                        "--producers", c["producers"], "--acks", c["acks"], "--compression", c["compression"]] + dur
                rep, cmd = bench("produce", b.addr, out_dir, f"produce-{name}-{rep_i}", args)
                p = rep["produce"]
                limit = limits["fio_fdatasync_mb_s"] if c["acks"] == "all" else limits["fio_buffered_mb_s"]
                produce_runs.append((f"produce {name}", p["throughput"]["records_per_sec"],
                                     p["throughput"]["mb_per_sec"], p["ack_latency"], limit, rep["cpu"]["cores_busy"],
                                     cmd))
                if name == "baseline":
                    # Consume what the baseline wrote: from the page cache.
                    rep, cmd = bench("consume", b.addr, out_dir, f"consume-page-cache-{rep_i}",
                                     ["--topic", "t", "--from", "earliest", "--until-end", "--consumers", "2"])
                    cth = rep["consume"]["throughput"]
                    consume_runs.append(("consume from page cache", cth["records_per_sec"], cth["mb_per_sec"], None,
                                         limits["iperf3_loopback_mb_s"], rep["cpu"]["cores_busy"], cmd))
            finally:
                b.stop()
        rows.append(median_row(produce_runs))
        if name == "baseline":
            baseline_rps = rows[-1][1]
            rows.append(median_row(consume_runs))

    e2e_runs = []
    for rep_i in range(opts.repeat):
        b = Broker()
        try:
            rate = int(baseline_rps * 0.5)
            args = ["--topic", "t", "--create-topic", "--partitions", "16", "--record-size", "1024", "--producers",
                    "8", "--consumers", "2", "--acks", "1", "--rate", str(rate)] + dur
            rep, cmd = bench("e2e", b.addr, out_dir, f"e2e-half-load-{rep_i}", args)
            e2e_runs.append(("e2e at 50% of baseline", rep["produce"]["throughput"]["records_per_sec"],
                             rep["produce"]["throughput"]["mb_per_sec"], rep["consume"]["e2e_latency"],
                             limits["fio_buffered_mb_s"], rep["cpu"]["cores_busy"], cmd))
        finally:
            b.stop()
    # At a fixed rate throughput is the same; take the run with the median p99.
    e2e_runs.sort(key=lambda r: r[3]["p99_ms"])
    rows.append(e2e_runs[len(e2e_runs) // 2])

    (out_dir / "limits.json").write_text(json.dumps(limits, indent=2))
    print(f"medians of {opts.repeat} runs; fio buffered write {limits['fio_buffered_mb_s']:.0f} MB/s, "
          f"fio write+fdatasync per MiB "
          f"{limits['fio_fdatasync_mb_s']:.0f} MB/s, iperf3 loopback {limits['iperf3_loopback_mb_s']:.0f} MB/s\n")
    print("| case | records/s | MB/s | limit MB/s | ratio | p50 ms | p99 ms | p99.9 ms | bench cores | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rps, mbs, lat, limit, cores, cmd in rows:
        p = lambda k: f"{lat[k]:.2f}" if lat else "–"  # noqa: E731
        print(f"| {name} | {rps:,.0f} | {mbs:.1f} | {limit:.0f} | {mbs / limit:.0%} | {p('p50_ms')} | {p('p99_ms')} "
              f"| {p('p999_ms')} | {cores:.2f} | `{cmd}` |")
    print(f"\nresults: {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()

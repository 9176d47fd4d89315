#!/usr/bin/env python3
"""Replication measurements (docs/benchmarks.md, "Replication"), in one run on
etcd + three release brokers on this machine:

1. acks=all produce, replication factor 3 against replication factor 1:
   throughput, latency, and broker CPU per MB (all three brokers' user +
   system time from /proc over the measured run). The RF1 and RF3 runs
   alternate, --repeat times each, with a third series on a second cluster
   started with --no-fsync-acks-all (followers do not fdatasync before
   reporting data as had); medians and the ratios are reported.
   Three brokers share the machine's cores, so the ratio and the CPU per MB
   replicated are the figures that carry, not the absolute rates.
2. Follower catch-up: a follower is killed, a backlog is written, the
   follower restarts; the time until it is back in every ISR gives its
   catch-up rate, beside iperf3's loopback rate and fio's buffered write
   rate measured in the same run.
3. Failover: SIGKILL of a partition's leader until some broker accepts an
   acks=all write again (raw Produce probes every 10 ms, no client library).

Usage: python3 scripts/bench-replication.py [--repeat 3] [--secs 10]
       [--backlog-mb 1024] [--kills 10] [--bin target/release/laminar]
Needs etcd, fio, iperf3 (scripts/install-test-deps.sh) and a release build
(`cargo build --release -p laminar-broker -p laminar-bench`).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def brokers_cpu(cluster):
    return sum(cpu_seconds(b.proc.pid) for b in cluster.brokers.values() if b.proc is not None)


def bench_produce(bench, bootstrap, topic, rf, secs, out):
    cmd = [bench, "produce", "-b", bootstrap, "-t", topic, "--create-topic", "--partitions", "6",
           "--replication-factor", str(rf), "--acks", "all", "--producers", "4", "--record-size", "1024",
           "--duration", f"{secs}s", "--warmup", "2s", "--no-progress", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(pathlib.Path(out).read_text()), " ".join(["laminar-bench"] + cmd[1:-3])


def throughput(series, bench, secs, repeat, out_dir):
    """`series`: (label, cluster, replication factor); the series alternate,
    `repeat` rounds, each run's broker CPU taken from its own cluster."""
    rows = {label: [] for label, _, _ in series}
    command = {}
    for i in range(repeat):
        for label, c, rf in series:
            topic = f"{label}-{i}"
            before = brokers_cpu(c)
            t0 = time.monotonic()
            r, command[label] = bench_produce(bench, c.bootstrap, topic, rf, secs, out_dir / f"{label}-{i}.json")
            wall = time.monotonic() - t0
            cpu = brokers_cpu(c) - before
            p = r["produce"]
            tp, lat = p["throughput"], p["ack_latency"]
            assert p["failed_records"] == 0, p["errors"]
            # The measured window's bytes scaled to the whole run (warm-up
            # included), against the whole run's broker CPU.
            gb_run = tp["mb_per_sec"] * wall / 1000
            rows[label].append({
                "records_per_s": tp["records_per_sec"],
                "mb_per_s": tp["mb_per_sec"],
                "p50_ms": lat["p50_ms"],
                "p99_ms": lat["p99_ms"],
                "broker_cpu_s_per_gb": cpu / max(gb_run, 1e-9),
            })
            print(f"{label} run {i}: {rows[label][-1]}", file=sys.stderr)
    med = {label: {k: statistics.median(x[k] for x in rows[label]) for k in rows[label][0]} for label in rows}
    # RF3 writes every byte three times: the CPU beyond RF1's, per extra copy.
    extra_per_replicated_gb = (med["rf3"]["broker_cpu_s_per_gb"] - med["rf1"]["broker_cpu_s_per_gb"]) / 2
    out = {"medians": med, "rf3_over_rf1_throughput": med["rf3"]["mb_per_s"] / med["rf1"]["mb_per_s"],
           "cpu_s_per_gb_replicated": extra_per_replicated_gb, "commands": command, "runs": rows}
    if "rf3-nofsync" in med:
        out["rf3_nofsync_over_rf3_throughput"] = med["rf3-nofsync"]["mb_per_s"] / med["rf3"]["mb_per_s"]
        out["rf3_nofsync_over_rf3_p50"] = med["rf3-nofsync"]["p50_ms"] / med["rf3"]["p50_ms"]
    return out


def catch_up(c, bench, backlog_mb, out_dir):
    topic = "catchup"
    bench_produce(bench, c.bootstrap, topic, 3, 1, out_dir / "catchup-create.json")
    parts = c.partitions(topic)
    leaders = {r["leader"] for r in parts.values()}
    away = next(n for n in c.brokers if n not in leaders) if len(leaders) < 3 else 3
    c.kill(away)
    c.wait_for("the follower out of every ISR",
               lambda: all(away not in [m["node"] for m in r["isr"]] for r in c.partitions(topic).values()),
               timeout=30)
    records = backlog_mb * 1000
    cmd = [bench, "produce", "-b", c.bootstrap, "-t", topic, "--acks", "1", "--producers", "4",
           "--record-size", "1000", "--records", str(records), "--no-progress", "--json",
           str(out_dir / "catchup.json")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    t0 = time.monotonic()
    c.restart(away)
    c.wait_for("the follower back in every ISR",
               lambda: all(away in [m["node"] for m in r["isr"]] for r in c.partitions(topic).values()),
               timeout=600, interval=0.05)
    secs = time.monotonic() - t0
    return {"backlog_mb": records * 1000 / 1e6, "seconds": secs, "mb_per_s": records * 1000 / 1e6 / secs,
            "command": " ".join(["laminar-bench"] + cmd[1:-3])}


def failover(c, kills):
    from test_replication import first_accepted_write
    a_topic = "failover"
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": c.bootstrap})  # kept alive until the create answers
    admin.create_topics([NewTopic(a_topic, 1, 3)])[a_topic].result(30)
    import jepsen
    jepsen.wait_healed(c, a_topic)
    times = []
    for _ in range(kills):
        leader = c.partitions(a_topic)[0]["leader"]
        first_accepted_write(c, a_topic, 0)
        c.kill(leader)
        times.append(first_accepted_write(c, a_topic, 0))
        c.restart(leader)
        jepsen.wait_healed(c, a_topic)
    return {"median_s": statistics.median(times), "worst_s": max(times), "kills": kills, "all": times}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--backlog-mb", type=int, default=1024)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--bin", default=str(ROOT / "target/release/laminar"))
    ap.add_argument("--bench", default=str(ROOT / "target/release/laminar-bench"))
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    opts = ap.parse_args()
    os.environ["LAMINAR_BIN"] = opts.bin
    out_dir = pathlib.Path(opts.out) / ("replication-" + time.strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True)
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_standard", ROOT / "scripts/bench-standard.py")
    standard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standard)
    fio_write, iperf3_loopback = standard.fio_write, standard.iperf3_loopback
    from cluster import Cluster  # noqa: E402

    result = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}}
    disk = tempfile.gettempdir()
    result["limits"] = {
        "iperf3_loopback_mb_s": statistics.median(iperf3_loopback() for _ in range(3)),
        "fio_buffered_mb_s": statistics.median(fio_write(disk, False, 8) for _ in range(3)),
    }
    print(f"limits: {result['limits']}", file=sys.stderr)
    # The default cluster (followers fdatasync before they report data as
    # had) and, idle beside it while the other runs, one with
    # --no-fsync-acks-all: the durability choice's cost, measured in one run.
    c = Cluster(3).start()
    lax = Cluster(3, extra_args=["--no-fsync-acks-all"]).start()
    try:
        c.wait_all_registered()
        lax.wait_all_registered()
        series = [("rf1", c, 1), ("rf3", c, 3), ("rf3-nofsync", lax, 3)]
        result["throughput"] = throughput(series, opts.bench, opts.secs, opts.repeat, out_dir)
        lax.stop()
        result["catch_up"] = catch_up(c, opts.bench, opts.backlog_mb, out_dir)
        result["failover"] = failover(c, opts.kills)
    finally:
        lax.stop()
        c.stop()
    result["machine"]["load_after"] = os.getloadavg()
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items()}, indent=1, default=str))


if __name__ == "__main__":
    main()

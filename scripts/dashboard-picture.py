#!/usr/bin/env python3
"""Makes docs/img/dashboard.png: a real run drawn with the Grafana dashboard
(docs/grafana-dashboard.json). Starts etcd and 3 brokers with
--metrics-listen (tests/cluster.py), puts a light load on them for about
30 s (laminar-bench e2e, rate-limited, plus a slow consumer group), kills
broker 3 a third of the way in and restarts it later, scrapes every broker's
/metrics every second, then draws the dashboard's panels from those scrapes
(scripts/render-dashboard.py) and screenshots the page with headless
Chromium. Every process is started and stopped here, by PID, on 127.0.0.1.

    python3 scripts/dashboard-picture.py [--bench PATH] [--seconds 30]

Needs etcd, laminar (LAMINAR_BIN or target/), laminar-bench, confluent-kafka,
prometheus-client and chromium (apt-get install chromium).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cluster import Cluster, free_port  # noqa: E402


def slow_group(bootstrap, topic, stop, per_second=300):
    """A consumer group that reads slower than the producers write (lag)."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dashboard-readers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True, "auto.commit.interval.ms": 1000})
    c.subscribe([topic])
    while not stop.is_set():
        started = time.time()
        c.consume(num_messages=per_second // 10, timeout=0.1)
        time.sleep(max(0.0, 0.1 - (time.time() - started)))
    c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=shutil.which("laminar-bench") or str(ROOT / "target/debug/laminar-bench"))
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--rate", type=int, default=1000, help="records per second produced")
    ap.add_argument("--out", default=str(ROOT / "docs/img/dashboard.png"))
    ap.add_argument("--work", default=str(ROOT / "target/dashboard"))
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    samples = work / "samples.jsonl"
    topic = "orders"

    c = Cluster(3, extra_args=["--replica-lag-time-max-ms", "3000"])
    ports = {}
    bench = None
    stop = threading.Event()
    try:
        c.etcd.start()
        for node in (1, 2, 3):
            ports[node] = free_port()
            c.add(node, extra_args=["--metrics-listen", f"127.0.0.1:{ports[node]}"])
        c.wait_all_registered()
        bench = subprocess.Popen(
            [a.bench, "e2e", "-b", c.bootstrap, "-t", topic, "--create-topic", "--partitions", "6",
             "--replication-factor", "3", "--record-size", "1024", "--rate", str(a.rate),
             "--duration", f"{a.seconds + 5}s", "--threads", "1", "--no-json", "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=open(work / "bench.log", "w"))
        time.sleep(2)
        reader = threading.Thread(target=slow_group, args=(c.bootstrap, topic, stop), daemon=True)
        reader.start()
        with open(samples, "w") as out:
            start = time.time()
            tick = 0
            while tick <= a.seconds:
                if tick == a.seconds // 3:
                    c.kill(3)
                if tick == 2 * a.seconds // 3:
                    c.restart(3)
                for node, port in ports.items():
                    if c.brokers[node].proc is None:
                        continue
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                            text = r.read().decode()
                    except OSError:
                        continue
                    out.write(json.dumps({"t": start + tick, "instance": f"broker-{node}", "text": text}) + "\n")
                tick += 1
                time.sleep(max(0.0, start + tick - time.time()))
    finally:
        stop.set()
        if bench is not None and bench.poll() is None:
            bench.terminate()
            bench.wait()
        c.stop()
    page = work / "dashboard.html"
    subprocess.run([sys.executable, str(ROOT / "scripts/render-dashboard.py"), str(ROOT / "docs/grafana-dashboard.json"),
                    str(samples), str(page)], check=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit(f"chromium not found (apt-get install chromium); the page is {page}")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={a.out}", "--window-size=1410,1640", f"file://{page}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, HOME=str(work)))
    print(f"wrote {a.out} (page {page}, samples {samples})")


if __name__ == "__main__":
    main()

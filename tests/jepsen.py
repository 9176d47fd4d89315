"""A Jepsen-style check of replication: a workload that records every
acknowledgement, a nemesis that kills, pauses and restarts brokers, the
controller and etcd at random (seeded, so a failing run repeats), and a
checker that proves nothing acknowledged was lost, duplicated, reordered or
left divergent between replicas.

- Workload: one idempotent acks=all producer (librdkafka) writes
  `p<partition>-<seq>` values, seq counting up per partition, at a steady
  rate. Every delivery report is kept: acknowledged (partition, offset,
  value) or failed. A producer that hits a fatal error is replaced (what it
  had in flight is unacknowledged, not lost).
- Nemesis: every few seconds one fault from `FAULTS`, healed before the
  next: SIGKILL a partition leader and restart it; SIGSTOP a leader for
  longer than its lease (a zombie that must not acknowledge after it was
  deposed) and SIGCONT it; SIGKILL the controller and restart it; SIGKILL a
  follower; SIGSTOP etcd.
- Checker, after healing every fault and waiting for full ISRs: each
  partition is read from offset 0 to its high watermark. Lost = an
  acknowledged value missing or not at its acknowledged offset; duplicated =
  a value present twice; reordered = two acknowledged values of a partition
  whose offsets are in the opposite order of their sequence numbers. Then
  every broker is stopped and each replica's segment files are parsed: the
  batches (base offset, last offset, leader epoch, CRC) of every replica of
  a partition must be identical — divergent otherwise.

`run(seed, seconds)` returns the report; tests/test_replication.py runs a
short one in CI and documents the long command."""

import collections
import json
import pathlib
import random
import signal
import struct
import threading
import time

from confluent_kafka import KafkaError, Producer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FAULTS = ("kill_leader", "pause_leader", "kill_controller", "kill_follower", "pause_etcd")


class Workload:
    """Produces at `rate` values/s across `partitions` and records every
    delivery report."""

    def __init__(self, bootstrap, topic, partitions, rate=400, client_log=None):
        self.client_log = client_log
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.lock = threading.Lock()
        self.acked = {}  # value -> (partition, offset)
        self.acked_at = {}  # value -> wall time of its delivery report
        self.failed = collections.Counter()  # error name -> count
        self.sent = 0
        self.replaced_producers = 0
        self.stop_flag = threading.Event()
        self.seq = [0] * partitions
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.producer = None
        self.fatal = threading.Event()

    def _new_producer(self):
        extra = {}
        if self.client_log:
            # librdkafka's idempotence decisions (epoch bumps, sequence resets).
            import logging
            logger = logging.getLogger(f"jepsen-client-{id(self)}")
            if not logger.handlers:
                logger.addHandler(logging.FileHandler(self.client_log))
                logger.setLevel(logging.DEBUG)
            extra = {"debug": "eos,msg,protocol", "logger": logger}
        return Producer({
            **extra,
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "request.timeout.ms": 5000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
            "error_cb": self._on_error,
        })

    def _on_error(self, err):
        if err.fatal():
            self.fatal.set()

    def _on_delivery(self, err, msg):
        with self.lock:
            if err is None:
                v = msg.value().decode()
                self.acked[v] = (msg.partition(), msg.offset())
                self.acked_at[v] = round(time.time(), 3)
            else:
                self.failed[err.name()] += 1

    def start(self):
        self.producer = self._new_producer()
        self.thread.start()
        return self

    def _run(self):
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            if self.fatal.is_set():
                # An idempotent producer that lost its sequence state is
                # done; a new one starts a new producer id.
                self.producer.flush(0)
                self.producer = self._new_producer()
                self.fatal.clear()
                self.replaced_producers += 1
            p = self.sent % self.partitions
            value = f"p{p}-{self.seq[p]}"
            self.seq[p] += 1
            while True:
                try:
                    self.producer.produce(self.topic, value=value.encode(), partition=p, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.sent += 1
            self.producer.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def stop(self, flush_timeout=90):
        self.stop_flag.set()
        self.thread.join()
        remaining = self.producer.flush(flush_timeout)
        return remaining


class Nemesis:
    """One fault at a time, chosen by a seeded random generator, each healed
    before the next. `log` lists (time, fault, target)."""

    def __init__(self, cluster, topic, rng, lease_ttl_s, faults=FAULTS):
        self.c = cluster
        self.topic = topic
        self.rng = rng
        self.lease_ttl_s = lease_ttl_s
        self.faults = faults
        self.log = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def start(self):
        self.thread.start()
        return self

    def _partitions(self):
        try:
            return self.c.partitions(self.topic)
        except Exception:  # etcd may be paused by us a moment ago
            return {}

    def _sleep(self, lo, hi):
        self.stop_flag.wait(self.rng.uniform(lo, hi))

    def _run(self):
        try:
            while not self.stop_flag.is_set():
                self._sleep(1.0, 3.0)
                if self.stop_flag.is_set():
                    break
                fault = self.rng.choice(self.faults)
                getattr(self, fault)()
        except Exception as e:  # surfaced by stop()
            self.error = e

    def _leader(self, follower=False):
        parts = self._partitions()
        live = [n for n, b in self.c.brokers.items() if b.proc is not None]
        if not parts:
            return None
        p = self.rng.choice(sorted(parts))
        rec = parts[p]
        if follower:
            cands = [n for n in rec["replicas"] if n != rec["leader"] and n in live]
            return self.rng.choice(cands) if cands else None
        return rec["leader"] if rec["leader"] in live else None

    def _record(self, fault, target):
        self.log.append((round(time.time(), 3), fault, target))

    def kill_leader(self):
        node = self._leader()
        if node is None:
            return
        self._record("kill_leader", node)
        self.c.kill(node)
        self._sleep(0.5, 3.0)
        self.c.restart(node)

    def kill_follower(self):
        node = self._leader(follower=True)
        if node is None:
            return
        self._record("kill_follower", node)
        self.c.kill(node)
        self._sleep(0.5, 3.0)
        self.c.restart(node)

    def pause_leader(self):
        node = self._leader()
        if node is None:
            return
        self._record("pause_leader", node)
        self.c.brokers[node].proc.send_signal(signal.SIGSTOP)
        # Longer than the lease: the controller deposes it meanwhile.
        self.stop_flag.wait(self.lease_ttl_s + self.rng.uniform(0.5, 2.0))
        self.c.brokers[node].proc.send_signal(signal.SIGCONT)

    def kill_controller(self):
        node = None
        try:
            node = self.c.controller()
        except Exception:
            return
        if node is None or self.c.brokers[node].proc is None:
            return
        self._record("kill_controller", node)
        self.c.kill(node)
        self._sleep(0.5, 2.0)
        self.c.restart(node)

    def pause_etcd(self):
        self._record("pause_etcd", "etcd")
        self.c.etcd.pause()
        self._sleep(0.5, 2.5)
        self.c.etcd.resume()

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        if self.error:
            raise self.error


def wait_healed(cluster, topic, timeout=90):
    """Every partition has a leader and its whole replica set in the ISR."""
    last = {}

    def healed():
        parts = cluster.partitions(topic)
        last["parts"] = parts
        return parts and all(
            r["leader"] >= 0 and sorted(m["node"] for m in r["isr"]) == sorted(r["replicas"]) for r in parts.values())
    try:
        return cluster.wait_for("every ISR full", healed, timeout=timeout, interval=0.2)
    except AssertionError:
        parts = last.get("parts", {})
        short = {p: (r["leader"], r["leader_epoch"], [m["node"] for m in r["isr"]], r["replicas"])
                 for p, r in parts.items()}
        unhealed = [p for p, r in parts.items()
                    if r["leader"] < 0 or sorted(m["node"] for m in r["isr"]) != sorted(r["replicas"])]
        lines = []
        for n, b in cluster.brokers.items():
            mine = [l.rstrip() for l in b.stderr_lines
                    if any(f"{topic}-{p}" in l for p in unhealed) or "WARN" in l or "ERROR" in l]
            lines.append(f"-- broker {n}:\n" + "\n".join(mine[-25:]))
        raise AssertionError(f"not healed within {timeout} s: partition: (leader, epoch, isr, replicas) {short}\n"
                             + "\n".join(lines))


def read_partitions(bootstrap, topic, partitions, timeout=60):
    """{partition: [(offset, value)]} from offset 0 to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "jepsen-checker", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.max.bytes": 8 << 20})
    out = {}
    try:
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            got = []
            if hi > lo:
                c.assign([TopicPartition(topic, p, lo)])
                deadline = time.time() + timeout
                while (not got or got[-1][0] < hi - 1) and time.time() < deadline:
                    m = c.poll(0.5)
                    if m is None or m.error():
                        continue
                    got.append((m.offset(), m.value().decode()))
                if got and got[-1][0] < hi - 1:
                    raise AssertionError(f"partition {p}: read to {got[-1][0]} of {hi}")
            out[p] = got
    finally:
        c.close()
    return out


def check(workload, logs):
    """Lost, duplicated and reordered values (see module doc). librdkafka
    reports some acknowledgements without an offset (messages "implicitly
    acked" because a later batch of theirs succeeded): those must be in
    their partition, anywhere."""
    at = {}
    duplicated = []
    for p, entries in logs.items():
        for off, value in entries:
            if value in at:
                duplicated.append((value, at[value], (p, off), workload.acked.get(value), workload.acked_at.get(value)))
            at[value] = (p, off)
    lost = []
    for v, (p, off) in workload.acked.items():
        found = at.get(v)
        if found is None or found[0] != p or (off is not None and found[1] != off):
            lost.append((v, (p, off), found))
    reordered = []
    by_partition = collections.defaultdict(list)
    for v, (p, off) in workload.acked.items():
        if off is not None:
            by_partition[p].append((int(v.rsplit("-", 1)[1]), off, v))
    for p, entries in by_partition.items():
        entries.sort()
        for (s1, o1, v1), (s2, o2, v2) in zip(entries, entries[1:]):
            if o2 <= o1:
                reordered.append((v1, o1, v2, o2))
    return {"lost": lost, "duplicated": duplicated, "reordered": reordered}


def segment_batches(part_dir):
    """[(base_offset, last_offset, leader_epoch, crc)] of every batch in a
    replica's segment files, in order."""
    out = []
    for seg in sorted(pathlib.Path(part_dir).glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            if length <= 0 or pos + 12 + length > len(data):
                break
            epoch, _magic, crc, _attrs, last_delta = struct.unpack_from(">ibIhi", data, pos + 12)
            out.append((base, base + last_delta, epoch, crc))
            pos += 12 + length
    return out


def divergent_replicas(cluster, topic):
    """Partitions whose replicas' logs differ (brokers must be stopped)."""
    diverged = {}
    parts = cluster.partitions(topic)
    for p, rec in parts.items():
        logs = {}
        for node in rec["replicas"]:
            d = cluster.root / f"broker-{node}" / f"{topic}-{p}"
            logs[node] = segment_batches(d)
        first = next(iter(logs.values()))
        if any(l != first for l in logs.values()):
            diverged[p] = {n: (len(l), l[-1] if l else None) for n, l in logs.items()}
    return diverged


def run(cluster, seed, seconds, partitions=6, rate=400, faults=FAULTS, lease_ttl_s=2.0, client_log=None):
    """Runs workload + nemesis for `seconds`, heals, checks; returns the report."""
    rng = random.Random(seed)
    topic = f"jepsen-{seed}"
    cluster.wait_all_registered()
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    a.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})],
                    operation_timeout=30)[topic].result(60)
    wait_healed(cluster, topic)
    w = Workload(cluster.bootstrap_all(), topic, partitions, rate, client_log).start()
    n = Nemesis(cluster, topic, rng, lease_ttl_s, faults).start()
    time.sleep(seconds)
    n.stop()
    cluster.heal()
    wait_healed(cluster, topic, timeout=120)
    # Let the producer finish what it retries, then read everything.
    time.sleep(2)
    unflushed = w.stop()
    wait_healed(cluster, topic, timeout=60)
    logs = read_partitions(cluster.bootstrap_all(), topic, partitions)
    result = check(w, logs)
    # Followers stop on a high watermark equal to the leader's log end once
    # they fetched it; stopping cleanly leaves every replica's log on disk.
    time.sleep(2)
    cluster.stop_brokers()
    diverged = divergent_replicas(cluster, topic)
    report = {
        "seed": seed,
        "seconds": seconds,
        "faults": collections.Counter(f for _, f, _ in n.log),
        "fault_log": n.log,
        "sent": w.sent,
        "acknowledged": len(w.acked),
        "acknowledged_without_offset": sum(1 for _, off in w.acked.values() if off is None),
        "failed": dict(w.failed),
        "unflushed": unflushed,
        "producers_replaced": w.replaced_producers,
        "records_in_logs": sum(len(v) for v in logs.values()),
        "lost": len(result["lost"]),
        "duplicated": len(result["duplicated"]),
        "reordered": len(result["reordered"]),
        "divergent_partitions": len(diverged),
        "examples": {k: v[:5] for k, v in result.items() if v} | ({"divergent": diverged} if diverged else {}),
    }
    return report


def summary(report):
    return json.dumps({k: v for k, v in report.items() if k != "fault_log"}, default=dict, indent=1)

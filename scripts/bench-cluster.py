#!/usr/bin/env python3
"""Cluster coordination through etcd, measured (issue 11; docs/benchmarks.md,
"Cluster coordination"). One run starts a real etcd and three laminar
brokers on free 127.0.0.1 ports (tests/cluster.py), then measures:

1. controller failover: the controller broker is SIGKILLed; time until
   another broker holds `<P>/meta/controller` in etcd, until a survivor's
   Metadata names the new controller, and until a CreateTopics sent to a
   survivor right after the kill succeeds (it needs a live controller to
   place the partition);
2. broker-loss detection: a non-controller broker is SIGKILLed; time until
   its registration leaves etcd, and until every survivor's Metadata stops
   naming it as a leader — of an RF=1 topic (its partitions go leaderless)
   and of an RF=3 topic (leadership moves to an in-sync replica);
3. topic create → visible (all partitions with a leader) in every broker's
   Metadata, for 1 and 1,000 partitions, and delete → gone everywhere;
4. committed offsets per second through etcd: 1, 10 and 100 groups
   committing concurrently, one offset per commit, and 100 groups committing
   10 offsets each (simple OffsetCommit v2, one request in flight per
   group), beside etcd's own put rate measured in the same run — one
   client, one put at a time (the serial rate), and as many concurrent
   clients as the cluster has offset writers (one per shard).

Failover and loss run --repeat times (and create/delete too); the report
gives the median and the worst. Every process is started here and stopped
here, by PID. Kafka requests are written by hand (a few non-flexible
versions, below) so that timing is the broker's, not a client library's
metadata cache; etcd is read and written through its JSON gateway.

Usage: python3 scripts/bench-cluster.py [--repeat 10] [--commit-rounds 3] [--commit-secs 5]
       [--lease-ttl-ms 2000] [--bin PATH] [--out bench-results/]
The binary: --bin, else $LAMINAR_BIN, else the newest target/{release,debug}/laminar.
Measure with a release build: a debug broker is several times slower.
"""

import argparse
import asyncio
import base64
import http.client
import json
import os
import pathlib
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# ---------------------------------------------------------------------------
# Kafka wire: just the requests measured here, non-flexible versions.

METADATA, CREATE_TOPICS, DELETE_TOPICS, FIND_COORDINATOR, OFFSET_COMMIT = 3, 19, 20, 10, 8
NONE, UNKNOWN_TOPIC, REQUEST_TIMED_OUT, NOT_CONTROLLER = 0, 3, 7, 41


def enc_str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def enc_arr(items, f):
    return struct.pack(">i", len(items)) + b"".join(f(x) for x in items)


class Reader:
    def __init__(self, data):
        self.d = memoryview(data)
        self.i = 0

    def _take(self, fmt, n):
        v = struct.unpack_from(fmt, self.d, self.i)[0]
        self.i += n
        return v

    def i8(self):
        return self._take(">b", 1)

    def i16(self):
        return self._take(">h", 2)

    def i32(self):
        return self._take(">i", 4)

    def str(self):
        n = self.i16()
        if n < 0:
            return None
        s = bytes(self.d[self.i:self.i + n]).decode()
        self.i += n
        return s

    def arr(self, f):
        n = self.i32()
        return [f() for _ in range(max(n, 0))]


def frame(api, version, corr, body):
    msg = struct.pack(">hhi", api, version, corr) + enc_str("bench-cluster") + body
    return struct.pack(">i", len(msg)) + msg


class Wire:
    """One blocking connection to one broker, one request at a time."""

    def __init__(self, addr, timeout=60):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0

    def _recv(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise ConnectionError("broker closed the connection")
            got += k
        return bytes(buf)

    def call(self, api, version, body):
        self.corr += 1
        self.sock.sendall(frame(api, version, self.corr, body))
        size = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(size)
        corr = struct.unpack_from(">i", data)[0]
        if corr != self.corr:
            raise ConnectionError(f"correlation id {corr}, expected {self.corr}")
        return Reader(data[4:])

    def close(self):
        self.sock.close()


class Meta:
    def __init__(self, brokers, controller, topics):
        self.brokers = brokers          # {node ids}
        self.controller = controller    # node id or -1
        self.topics = topics            # {name: (error, {partition: (error, leader, replicas, isr)})}


def metadata(w, topics=None):
    """Metadata v4, never auto-creating (a deleted topic asked for by name must stay deleted)."""
    body = (enc_arr(topics, enc_str) if topics is not None else struct.pack(">i", -1)) + b"\x00"
    r = w.call(METADATA, 4, body)
    r.i32()  # throttle
    brokers = {b[0] for b in r.arr(lambda: (r.i32(), r.str(), r.i32(), r.str()))}
    r.str()  # cluster id
    controller = r.i32()

    def partition():
        err, idx, leader = r.i16(), r.i32(), r.i32()
        replicas = r.arr(r.i32)
        isr = r.arr(r.i32)
        return idx, (err, leader, replicas, isr)

    def topic():
        err, name, _internal = r.i16(), r.str(), r.i8()
        return name, (err, dict(r.arr(partition)))

    return Meta(brokers, controller, dict(r.arr(topic)))


def create_topic(w, name, partitions, rf, timeout_ms=60_000):
    """CreateTopics v2: (error code, message)."""
    t = enc_str(name) + struct.pack(">ih", partitions, rf) + struct.pack(">i", 0) + struct.pack(">i", 0)
    r = w.call(CREATE_TOPICS, 2, enc_arr([t], lambda x: x) + struct.pack(">i", timeout_ms) + b"\x00")
    r.i32()
    (res,) = r.arr(lambda: (r.str(), r.i16(), r.str()))
    return res[1], res[2]


def delete_topic(w, name, timeout_ms=60_000):
    r = w.call(DELETE_TOPICS, 1, enc_arr([name], enc_str) + struct.pack(">i", timeout_ms))
    r.i32()
    (res,) = r.arr(lambda: (r.str(), r.i16()))
    return res[1]


def find_coordinator(w, group):
    r = w.call(FIND_COORDINATOR, 1, enc_str(group) + b"\x00")
    r.i32()
    err, _msg, node, host, port = r.i16(), r.str(), r.i32(), r.str(), r.i32()
    return err, node, f"{host}:{port}"


def offset_commit_body(group, topic, offsets):
    """OffsetCommit v2, a "simple" commit (generation -1, no member): what a
    client that assigns its partitions itself sends."""
    parts = enc_arr(list(offsets.items()), lambda po: struct.pack(">iq", po[0], po[1]) + struct.pack(">h", -1))
    return (enc_str(group) + struct.pack(">i", -1) + enc_str("") + struct.pack(">q", -1)
            + enc_arr([topic], lambda t: enc_str(t) + parts))


def offset_commit_errors(r):
    """The error code of every partition in an OffsetCommit v2 response."""
    codes = []
    for _ in range(r.i32()):
        r.str()
        codes += [c for _p, c in r.arr(lambda: (r.i32(), r.i16()))]
    return codes


# ---------------------------------------------------------------------------
# etcd through its JSON gateway (one keep-alive HTTP connection per object).

def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class EtcdHttp:
    def __init__(self, endpoint):
        u = urllib.parse.urlparse(endpoint)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def _post(self, path, obj):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"etcd {path}: HTTP {resp.status}: {data[:200]!r}")
                return json.loads(data)
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise

    def get(self, key):
        """(value bytes or None, store revision)."""
        out = self._post("/v3/kv/range", {"key": b64(key)})
        kvs = out.get("kvs") or []
        value = base64.b64decode(kvs[0].get("value", "")) if kvs else None
        return value, int(out["header"]["revision"])

    def put(self, key, value):
        self._post("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def revision(self):
        return self.get("/bench-cluster/none")[1]

    def delete_prefix(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self._post("/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(end)})


# ---------------------------------------------------------------------------
# Helpers.

def wait_until(what, f, timeout=60, interval=0.005):
    """Polls f() until truthy; returns (value, monotonic time it was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        now = time.monotonic()
        if v:
            return v, now
        if now > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid):
    """User + system CPU of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(xs):
    xs = sorted(xs)
    return {"n": len(xs), "median": statistics.median(xs), "min": xs[0], "max": xs[-1], "all": xs}


class Bench:
    def __init__(self, args):
        from cluster import Cluster  # after LAMINAR_BIN is set
        self.args = args
        self.cluster = Cluster(3, prefix="/laminar", lease_ttl_ms=args.lease_ttl_ms)
        self.etcd_http = None
        self.wires = {}

    # -- cluster plumbing ---------------------------------------------------

    def start(self):
        self.cluster.start()
        self.etcd_http = EtcdHttp(self.cluster.etcd.endpoint)
        self.settle()

    def stop(self):
        for w in self.wires.values():
            try:
                w.close()
            except OSError:
                pass
        self.cluster.stop()

    def wire(self, node):
        """A cached connection to broker `node` (reopened after a restart)."""
        b = self.cluster.brokers[node]
        w = self.wires.get(node)
        if w is None or w.addr != b.bootstrap:
            if w is not None:
                w.close()
            w = Wire(b.bootstrap)
            w.addr = b.bootstrap
            self.wires[node] = w
        return w

    def drop_wire(self, node):
        w = self.wires.pop(node, None)
        if w is not None:
            w.close()

    def md(self, node, topics=None):
        try:
            return metadata(self.wire(node), topics)
        except (OSError, ConnectionError):
            self.drop_wire(node)
            raise

    def live(self):
        return [n for n, b in self.cluster.brokers.items() if b.proc is not None]

    def controller_in_etcd(self):
        v, _ = self.etcd_http.get(f"{self.cluster.prefix}/meta/controller")
        return json.loads(v)["node_id"] if v else None

    def registered_in_etcd(self, node):
        v, _ = self.etcd_http.get(f"{self.cluster.prefix}/meta/brokers/{node:010}")
        return v is not None

    def settle(self):
        """Every broker lists all three and the same live controller."""
        def ok():
            views = [self.md(n) for n in self.cluster.brokers]
            return all(v.brokers == set(self.cluster.brokers) and v.controller in v.brokers for v in views) and \
                len({v.controller for v in views}) == 1
        wait_until("the cluster to settle", ok, timeout=60, interval=0.05)

    def kill(self, node):
        b = self.cluster.brokers[node]
        self.drop_wire(node)
        t0 = time.monotonic()
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        b.proc = None
        return t0

    def restart(self, node):
        self.cluster.brokers[node].start(timeout=120)
        self.settle()

    def create_everywhere(self, name, partitions, rf, via):
        err, msg = create_topic(self.wire(via), name, partitions, rf)
        if err != NONE:
            raise RuntimeError(f"create {name}: error {err}: {msg}")
        wait_until(f"{name} visible everywhere", lambda: all(self.placed(n, name, partitions) for n in self.live()))

    def placed(self, node, name, partitions):
        t = self.md(node, [name]).topics.get(name)
        if not t or t[0] != NONE or len(t[1]) != partitions:
            return False
        return all(p[0] == NONE and p[1] >= 0 for p in t[1].values())

    def gone(self, node, name):
        t = self.md(node, [name]).topics.get(name)
        return t is None or t[0] == UNKNOWN_TOPIC

    def delete_everywhere(self, name, via):
        err = delete_topic(self.wire(via), name)
        if err not in (NONE, UNKNOWN_TOPIC):
            raise RuntimeError(f"delete {name}: error {err}")
        wait_until(f"{name} gone everywhere", lambda: all(self.gone(n, name) for n in self.live()))

    # -- 1. controller failover ---------------------------------------------

    def controller_failover(self, rep):
        old = self.controller_in_etcd()
        survivors = [n for n in self.cluster.brokers if n != old]
        probe = survivors[rep % 2]
        creator = survivors[(rep + 1) % 2]
        topic = f"failover-{rep}-{uuid.uuid4().hex[:8]}"
        create_wire = Wire(self.cluster.brokers[creator].bootstrap)
        started = threading.Event()
        result = {}

        def create_after_kill():
            started.wait()
            # Retried on what clients retry on: the first try may time out
            # waiting for a controller that is not there yet.
            while True:
                err, msg = create_topic(create_wire, topic, 1, 1, timeout_ms=30_000)
                if err == NONE:
                    result["t"] = time.monotonic()
                    return
                if err not in (REQUEST_TIMED_OUT, NOT_CONTROLLER):
                    result["error"] = f"{err}: {msg}"
                    return

        th = threading.Thread(target=create_after_kill, daemon=True)
        th.start()
        t0 = self.kill(old)
        started.set()
        seen = {}
        deadline = t0 + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            now = time.monotonic()
            if "etcd" not in seen:
                c = self.controller_in_etcd()
                if c is not None and c != old:
                    seen["etcd"] = (time.monotonic(), c)
            if "metadata" not in seen:
                m = self.md(probe)
                if m.controller >= 0 and m.controller != old:
                    seen["metadata"] = (time.monotonic(), m.controller)
            time.sleep(max(0.0, 0.005 - (time.monotonic() - now)))
        th.join(60)
        create_wire.close()
        if "error" in result or "t" not in result or len(seen) < 2:
            raise RuntimeError(f"failover round {rep}: {seen} {result}")
        out = {"old": old, "new": seen["etcd"][1], "etcd_s": seen["etcd"][0] - t0,
               "metadata_s": seen["metadata"][0] - t0, "create_s": result["t"] - t0}
        self.restart(old)
        self.delete_everywhere(topic, via=self.controller_in_etcd())
        return out

    # -- 2. broker-loss detection -------------------------------------------

    def broker_loss(self, rep):
        ctl = self.controller_in_etcd()
        others = sorted(n for n in self.cluster.brokers if n != ctl)
        victim = others[rep % len(others)]
        rf1 = f"loss-rf1-{rep}-{uuid.uuid4().hex[:8]}"
        rf3 = f"loss-rf3-{rep}-{uuid.uuid4().hex[:8]}"
        partitions = 6
        self.create_everywhere(rf1, partitions, 1, via=ctl)
        self.create_everywhere(rf3, partitions, 3, via=ctl)
        before = self.md(ctl, [rf1, rf3])
        led = {t: [p for p, v in before.topics[t][1].items() if v[1] == victim] for t in (rf1, rf3)}
        if not led[rf1] or not led[rf3]:
            raise RuntimeError(f"broker {victim} leads nothing to move: {led}")
        survivors = [n for n in self.cluster.brokers if n != victim]
        t0 = self.kill(victim)
        seen = {}

        def survivor_views():
            return {n: self.md(n, [rf1, rf3]) for n in survivors}

        deadline = t0 + 60
        while len(seen) < 4 and time.monotonic() < deadline:
            now = time.monotonic()
            if "registration" not in seen and not self.registered_in_etcd(victim):
                seen["registration"] = time.monotonic()
            views = survivor_views()
            t = time.monotonic()
            if "brokers" not in seen and all(victim not in v.brokers for v in views.values()):
                seen["brokers"] = t
            if "rf1" not in seen and all(
                    all(p[1] != victim for p in v.topics[rf1][1].values()) for v in views.values()):
                seen["rf1"] = t
            if "rf3" not in seen and all(
                    all(p[1] not in (victim, -1) for p in v.topics[rf3][1].values()) for v in views.values()):
                seen["rf3"] = t
            time.sleep(max(0.0, 0.005 - (time.monotonic() - now)))
        if len(seen) < 4:
            raise RuntimeError(f"loss round {rep}: only {sorted(seen)} within 60 s")
        after = self.md(survivors[0], [rf1, rf3])
        offline = sum(1 for p in after.topics[rf1][1].values() if p[1] == -1)
        out = {"victim": victim, "registration_s": seen["registration"] - t0, "brokers_s": seen["brokers"] - t0,
               "rf1_s": seen["rf1"] - t0, "rf3_s": seen["rf3"] - t0,
               "rf1_offline": offline, "rf1_led": len(led[rf1]), "rf3_led": len(led[rf3])}
        for t in (rf1, rf3):
            self.delete_everywhere(t, via=ctl)
        self.restart(victim)
        return out

    # -- 3. create / delete visibility --------------------------------------

    def create_delete(self, rep, partitions):
        nodes = sorted(self.cluster.brokers)
        via = nodes[rep % len(nodes)]
        name = f"visible-{partitions}-{rep}-{uuid.uuid4().hex[:8]}"
        done = {}

        def send(fn):
            w = Wire(self.cluster.brokers[via].bootstrap)
            try:
                done["result"] = fn(w)
                done["t"] = time.monotonic()
            finally:
                w.close()

        def visible_all(check):
            first = {}
            t0 = time.monotonic()
            deadline = t0 + 120
            while len(first) < len(nodes) and time.monotonic() < deadline:
                now = time.monotonic()
                for n in nodes:
                    if n not in first and check(n):
                        first[n] = time.monotonic()
                time.sleep(max(0.0, 0.005 - (time.monotonic() - now)))
            return first

        t0 = time.monotonic()
        th = threading.Thread(target=send, args=(lambda w: create_topic(w, name, partitions, 1),), daemon=True)
        th.start()
        first = visible_all(lambda n: self.placed(n, name, partitions))
        th.join(120)
        if done.get("result", (None,))[0] != NONE or len(first) < len(nodes):
            raise RuntimeError(f"create {name}: {done} {first}")
        created = {"ack_s": done["t"] - t0, "all_s": max(first.values()) - t0}
        done.clear()
        t0 = time.monotonic()
        th = threading.Thread(target=send, args=(lambda w: delete_topic(w, name),), daemon=True)
        th.start()
        first = visible_all(lambda n: self.gone(n, name))
        th.join(120)
        if done.get("result") != NONE or len(first) < len(nodes):
            raise RuntimeError(f"delete {name}: {done} {first}")
        deleted = {"ack_s": done["t"] - t0, "all_s": max(first.values()) - t0}
        return {"via": via, "create": created, "delete": deleted}

    # -- 4. committed offsets per second ------------------------------------

    def etcd_puts(self, concurrency, secs):
        """Puts of 80-byte values (a committed offset's size) to distinct
        keys, `concurrency` clients each with one put in flight, for `secs`."""
        value = "x" * 80
        counts = [0] * concurrency
        lat = [[] for _ in range(concurrency)]
        stop = threading.Event()
        barrier = threading.Barrier(concurrency + 1)

        def client(i):
            h = EtcdHttp(self.cluster.etcd.endpoint)
            h.put(f"/bench-etcd/{i}/warm", value)
            barrier.wait()
            k = 0
            while not stop.is_set():
                s = time.monotonic()
                h.put(f"/bench-etcd/{i}/{k % 1000}", value)
                lat[i].append(time.monotonic() - s)
                k += 1
            counts[i] = k

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        pids = self.pids()
        cpu0, own0 = {k: cpu_seconds(p) for k, p in pids.items()}, time.process_time()
        barrier.wait()
        t0 = time.monotonic()
        time.sleep(secs)
        stop.set()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        cpu = {k: (cpu_seconds(p) - cpu0[k]) / wall for k, p in pids.items()}
        cpu["client"] = (time.process_time() - own0) / wall
        all_lat = sorted(x for l in lat for x in l)
        self.etcd_http.delete_prefix("/bench-etcd/")
        return {"concurrency": concurrency, "puts_per_s": sum(counts) / wall,
                "p50_ms": 1000 * all_lat[len(all_lat) // 2], "cores": cpu}

    def pids(self):
        out = {"etcd": self.cluster.etcd.proc.pid}
        for n, b in self.cluster.brokers.items():
            out[f"broker{n}"] = b.proc.pid
        return out

    def offset_commits(self, groups, offsets_per_commit, secs, warmup_s=1.0):
        return asyncio.run(self._commits("commits", groups, offsets_per_commit, secs, warmup_s))

    async def _commits(self, topic, groups, per_commit, secs, warmup_s):
        run = uuid.uuid4().hex[:6]
        names = [f"bench-{run}-{g}" for g in range(groups)]
        coordinators = {}
        for g in names:
            def found(g=g):
                err, node, addr = find_coordinator(self.wire(1), g)
                return (node, addr) if err == NONE else None
            coordinators[g] = wait_until(f"a coordinator for {g}", found, timeout=30, interval=0.05)[0]
        phase = {"measuring": False, "stop": False}
        counts = {"ok": 0, "errors": 0, "lat": []}

        async def committer(g, idx):
            host, port = coordinators[g][1].rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            corr = 0
            offset = 0
            first_partition = (idx * per_commit) % self.args.commit_partitions
            partitions = [(first_partition + i) % self.args.commit_partitions for i in range(per_commit)]
            try:
                while not phase["stop"]:
                    corr += 1
                    offset += 1
                    body = offset_commit_body(g, topic, {p: offset for p in partitions})
                    s = time.monotonic()
                    writer.write(frame(OFFSET_COMMIT, 2, corr, body))
                    size = struct.unpack(">i", await reader.readexactly(4))[0]
                    data = await reader.readexactly(size)
                    lat = time.monotonic() - s
                    codes = offset_commit_errors(Reader(data[4:]))
                    if not phase["measuring"]:
                        continue
                    if all(c == NONE for c in codes):
                        counts["ok"] += len(codes)
                        counts["lat"].append(lat)
                    else:
                        counts["errors"] += 1
            finally:
                writer.close()

        tasks = [asyncio.create_task(committer(g, i)) for i, g in enumerate(names)]
        await asyncio.sleep(warmup_s)
        pids = self.pids()
        cpu0, own0 = {k: cpu_seconds(p) for k, p in pids.items()}, time.process_time()
        rev0 = self.etcd_http.revision()
        phase["measuring"] = True
        t0 = time.monotonic()
        await asyncio.sleep(secs)
        phase["measuring"] = False
        wall = time.monotonic() - t0
        rev1 = self.etcd_http.revision()
        cpu = {k: (cpu_seconds(p) - cpu0[k]) / wall for k, p in pids.items()}
        cpu["client"] = (time.process_time() - own0) / wall
        phase["stop"] = True
        await asyncio.gather(*tasks)
        lat = sorted(counts["lat"])
        return {"groups": groups, "offsets_per_commit": per_commit, "offsets_per_s": counts["ok"] / wall,
                "commits_per_s": len(lat) / wall, "errors": counts["errors"],
                "etcd_txns_per_s": (rev1 - rev0 - 1) / wall,  # the second revision read is not a write
                "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None, "cores": cpu}


# (groups, offsets per OffsetCommit request)
COMMIT_CASES = ((1, 1), (10, 1), (100, 1), (100, 10))


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "etcd": etcd,
            "loadavg_at_start": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10, help="repetitions of failover, loss, create/delete")
    ap.add_argument("--commit-secs", type=float, default=5.0, help="measured seconds per commit case")
    ap.add_argument("--etcd-secs", type=float, default=5.0, help="measured seconds per etcd put case")
    ap.add_argument("--commit-rounds", type=int, default=3, help="rounds of the commit cases and etcd's serial rate")
    ap.add_argument("--commit-partitions", type=int, default=12, help="partitions of the committed-to topic")
    ap.add_argument("--lease-ttl-ms", type=int, default=2000)
    ap.add_argument("--bin", help="laminar binary (default: $LAMINAR_BIN, else the newest target/*/laminar)")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    ap.add_argument("--only", help="comma-separated subset: failover,loss,visible,commits")
    args = ap.parse_args()
    if args.bin:
        os.environ["LAMINAR_BIN"] = str(pathlib.Path(args.bin).resolve())
    from conftest import laminar_bin
    binary = laminar_bin()
    if "/debug/" in binary:
        print(f"warning: {binary} is a debug build; figures will be several times slower", file=sys.stderr)
    only = set(args.only.split(",")) if args.only else {"failover", "loss", "visible", "commits"}
    report = {"machine": machine(), "binary": binary, "lease_ttl_ms": args.lease_ttl_ms, "repeat": args.repeat,
              "command": " ".join([sys.argv[0]] + sys.argv[1:]), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log(f"machine: {report['machine']}\nbinary: {binary}")
    t_start = time.monotonic()
    bench = Bench(args)
    try:
        bench.start()
        if "commits" in only:
            bench.create_everywhere("commits", args.commit_partitions, 1, via=1)
            writers = 3 * 2  # brokers x shards: one offset writer per shard
            report["etcd_concurrent"] = bench.etcd_puts(writers, args.etcd_secs)
            log(f"etcd puts, {writers} clients: {report['etcd_concurrent']}")
            # Rounds alternate etcd's serial rate with every commit case, so
            # each case has a reference taken minutes, not seconds, apart.
            report["commit_rounds"] = []
            for rnd in range(args.commit_rounds):
                serial = bench.etcd_puts(1, args.etcd_secs)
                log(f"round {rnd}: etcd serial puts: {serial}")
                cases = []
                for groups, per in COMMIT_CASES:
                    r = bench.offset_commits(groups, per, args.commit_secs)
                    log(f"round {rnd}: commits: {r}")
                    cases.append(r)
                report["commit_rounds"].append({"etcd_serial": serial, "cases": cases})
        if "visible" in only:
            for partitions in (1, 1000):
                runs = []
                for rep in range(args.repeat):
                    r = bench.create_delete(rep, partitions)
                    log(f"create/delete {partitions}: {r}")
                    runs.append(r)
                report[f"visible_{partitions}"] = {
                    "runs": runs,
                    **{f"{op}_{k}": stats([r[op][k] for r in runs]) for op in ("create", "delete")
                       for k in ("ack_s", "all_s")}}
        if "failover" in only:
            runs = []
            for rep in range(args.repeat):
                r = bench.controller_failover(rep)
                log(f"failover: {r}")
                runs.append(r)
            report["failover"] = {"runs": runs, **{k: stats([r[k] for r in runs])
                                                   for k in ("etcd_s", "metadata_s", "create_s")}}
        if "loss" in only:
            runs = []
            for rep in range(args.repeat):
                r = bench.broker_loss(rep)
                log(f"loss: {r}")
                runs.append(r)
            report["loss"] = {"runs": runs, **{k: stats([r[k] for r in runs])
                                               for k in ("registration_s", "brokers_s", "rf1_s", "rf3_s")}}
    finally:
        bench.stop()
    report["wall_s"] = time.monotonic() - t_start
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(report)
    log(f"wrote {path} ({report['wall_s']:.0f} s)")


def print_table(r):
    ttl = r["lease_ttl_ms"] / 1000
    print(f"\nmachine: {r['machine']['cores']} cores ({r['machine']['cpu']}), {r['machine']['etcd']}, "
          f"etcd + 3 brokers (2 shards each) + this client on the same machine; lease TTL {ttl:g} s; "
          f"{r['repeat']} repetitions, median (worst); binary {r['binary']}; load average "
          f"{r['machine']['loadavg_at_start'][0]:.1f} at start, {r['machine']['loadavg_at_end'][0]:.1f} at end\n")
    print("| measure | median | worst | note |\n|---|---|---|---|")
    if "failover" in r:
        f = r["failover"]
        print(f"| controller failover: kill → another broker holds the controller key (etcd) | "
              f"{f['etcd_s']['median']:.2f} s | {f['etcd_s']['max']:.2f} s | {f['etcd_s']['median'] / ttl:.2f} × TTL |")
        print(f"| … → a survivor's Metadata names the new controller | {f['metadata_s']['median']:.2f} s | "
              f"{f['metadata_s']['max']:.2f} s | |")
        print(f"| … → a CreateTopics sent at the kill succeeds | {f['create_s']['median']:.2f} s | "
              f"{f['create_s']['max']:.2f} s | |")
    if "loss" in r:
        f = r["loss"]
        for k, what in (("registration_s", "broker loss: kill → its registration leaves etcd"),
                        ("brokers_s", "… → no survivor's Metadata lists it"),
                        ("rf1_s", "… → RF=1: no survivor's Metadata names it leader (its partitions leaderless)"),
                        ("rf3_s", "… → RF=3: every partition it led has a new leader in every survivor's Metadata")):
            print(f"| {what} | {f[k]['median']:.2f} s | {f[k]['max']:.2f} s | {f[k]['median'] / ttl:.2f} × TTL |")
    for p in (1, 1000):
        v = r.get(f"visible_{p}")
        if not v:
            continue
        for op in ("create", "delete"):
            request = "CreateTopics" if op == "create" else "DeleteTopics"
            print(f"| {op} {p} partition(s): {request} answered | {v[f'{op}_ack_s']['median']:.3f} s | "
                  f"{v[f'{op}_ack_s']['max']:.3f} s | |")
            print(f"| {op} {p} partition(s): {'visible (all led)' if op == 'create' else 'gone'} on all 3 brokers | "
                  f"{v[f'{op}_all_s']['median']:.3f} s | {v[f'{op}_all_s']['max']:.3f} s | |")
    if "commit_rounds" in r:
        rounds = r["commit_rounds"]
        serial = [x["etcd_serial"]["puts_per_s"] for x in rounds]
        sc = r["etcd_concurrent"]
        print(f"\netcd puts, 1 client with 1 in flight (JSON gateway), each round: "
              f"{', '.join(f'{x:,.0f}' for x in serial)}/s (p50 "
              f"{statistics.median(x['etcd_serial']['p50_ms'] for x in rounds):.2f} ms); "
              f"{sc['concurrency']} clients: {sc['puts_per_s']:,.0f}/s (p50 {sc['p50_ms']:.2f} ms)\n")
        print("| groups | offsets/commit | offsets/s (rounds) | commits/s | etcd txns/s | commits per txn | p50 ms "
              "| p99 ms | ÷ etcd serial puts | errors | cores: etcd, brokers, client |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for i, (groups, per) in enumerate(COMMIT_CASES):
            cs = [x["cases"][i] for x in rounds]
            ratios = [c["offsets_per_s"] / x["etcd_serial"]["puts_per_s"] for c, x in zip(cs, rounds)]
            m = sorted(cs, key=lambda c: c["offsets_per_s"])[len(cs) // 2]  # the median round
            med = lambda k: statistics.median(c[k] for c in cs)  # noqa: E731
            brokers = sum(v for k, v in m["cores"].items() if k.startswith("broker"))
            each = ", ".join(f"{c['offsets_per_s']:,.0f}" for c in cs)
            print(f"| {groups} | {per} | {m['offsets_per_s']:,.0f} ({each}) "
                  f"| {m['commits_per_s']:,.0f} | {m['etcd_txns_per_s']:,.0f} "
                  f"| {statistics.median(c['commits_per_s'] / c['etcd_txns_per_s'] for c in cs):.2f} "
                  f"| {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {statistics.median(ratios):.2f} "
                  f"| {sum(c['errors'] for c in cs)} "
                  f"| {m['cores']['etcd']:.2f}, {brokers:.2f}, {m['cores']['client']:.2f} |")

if __name__ == "__main__":
    main()

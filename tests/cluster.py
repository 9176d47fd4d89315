"""A real cluster for end-to-end tests: one etcd (Debian's etcd-server) on
free loopback ports with a temporary data directory, and laminar brokers
joined to it with `--etcd`. Every process is started here and stopped here,
by PID (SIGTERM, then SIGKILL)."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from conftest import Broker


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    """One etcd member. `pause`/`resume` send SIGSTOP/SIGCONT (a slow or
    unreachable coordinator); `kill` and `start` keep the data directory."""

    def __init__(self, data_dir):
        self.data_dir = pathlib.Path(data_dir)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self.log = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout=20):
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed: scripts/install-test-deps.sh installs Debian's etcd-server")
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.log = open(self.data_dir.parent / f"etcd-{self.client_port}.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--data-dir", str(self.data_dir), "--name", "default",
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}",
             # Short election timeouts make 1-2 s leases possible (etcd raises
             # a TTL below 1.5 x the election timeout).
             "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def ctl(self, *args):
        """Runs etcdctl (v3 API) against this member."""
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(["etcdctl", "--endpoints", self.endpoint, *args], capture_output=True, text=True,
                           env=env, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"etcdctl {args}: {r.stderr}")
        return r.stdout

    def get_prefix(self, prefix):
        """{key: value} under `prefix`."""
        lines = self.ctl("get", "--prefix", prefix).split("\n")
        return dict(zip(lines[0::2], lines[1::2]))

    def get_json(self, key):
        v = self.get_prefix(key).get(key)
        return json.loads(v) if v else None


class Cluster:
    """etcd plus brokers 1..n; `bootstrap` lists every broker."""

    def __init__(self, n=3, extra_args=(), prefix=None, lease_ttl_ms=2000):
        self.dir = tempfile.TemporaryDirectory(prefix="laminar-cluster-")
        root = pathlib.Path(self.dir.name)
        self.etcd = Etcd(root / "etcd")
        self.prefix = prefix or "/laminar"
        self.extra_args = list(extra_args)
        self.lease_ttl_ms = lease_ttl_ms
        self.brokers = {}
        self.root = root
        self.n = n

    def start(self):
        self.etcd.start()
        for node in range(1, self.n + 1):
            self.add(node)
        return self

    def broker_args(self, node):
        return ["--etcd", self.etcd.endpoint, "--etcd-prefix", self.prefix, "--node-id", str(node),
                "--lease-ttl-ms", str(self.lease_ttl_ms), "--group-initial-rebalance-delay-ms", "0"] + self.extra_args

    def add(self, node, extra_args=(), data_name=None):
        data = self.root / (data_name or f"broker-{node}")
        b = Broker(data, self.broker_args(node) + list(extra_args))
        b.node_id = node
        self.brokers[node] = b.start()
        return b

    def wait_all_registered(self, timeout=30):
        """Every running broker's metadata lists every running broker."""
        from confluent_kafka.admin import AdminClient
        want = {n for n, b in self.brokers.items() if b.proc is not None}

        def seen_by_all():
            for b in self.brokers.values():
                if b.proc is None:
                    continue
                md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
                if set(md.brokers) != want:
                    return False
            return True
        return self.wait_for("every broker registered", seen_by_all, timeout=timeout, interval=0.1)

    def kill(self, node):
        """SIGKILL (after SIGCONT, in case it is paused); data is kept."""
        b = self.brokers[node]
        if b.proc is not None:
            b.proc.send_signal(signal.SIGCONT)
            b.proc.kill()
            b.proc.wait()
            b.proc = None

    def restart(self, node):
        """Starts a stopped broker again on its port and data directory."""
        b = self.brokers[node]
        if b.proc is None:
            b.start(timeout=60)
        return b

    def heal(self):
        """etcd and every broker running and unpaused."""
        if self.etcd.proc is not None:
            self.etcd.resume()
        for node, b in self.brokers.items():
            if b.proc is not None:
                b.proc.send_signal(signal.SIGCONT)
            else:
                self.restart(node)

    def stop_brokers(self):
        """SIGTERM every broker (a clean stop), keeping data and etcd."""
        for b in self.brokers.values():
            if b.proc is not None:
                b.proc.send_signal(signal.SIGCONT)
                b.stop()

    def bootstrap_all(self):
        """Every broker's address, running or not (restarts keep ports)."""
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers.values() if b.proc is not None)

    def controller(self):
        rec = self.etcd.get_json(f"{self.prefix}/meta/controller")
        return rec["node_id"] if rec else None

    def partitions(self, topic):
        """{partition: record} from etcd."""
        prefix = f"{self.prefix}/meta/partitions/{topic}/"
        return {int(k[len(prefix):]): json.loads(v) for k, v in self.etcd.get_prefix(prefix).items() if v}

    def wait_for(self, what, f, timeout=20, interval=0.05):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = f()
            if v:
                return v
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self):
        for b in self.brokers.values():
            if b.proc is not None:
                b.proc.kill()
                b.proc.wait()
                b.proc = None
        self.etcd.stop()
        self.dir.cleanup()

"""laminarctl, the operator's tool, against the real broker: every command
against a single node (Kafka admin API, and its embedded store once it is
stopped) and against etcd with three brokers (a fourth joins to be
decommissioned); real consumer groups moved by reset-offsets; bad input
answered with a clear message and a non-zero exit status, never a panic.

The binary: LAMINARCTL_BIN, else the newest of target/{release,debug}/laminarctl.
Exit statuses (docs/operations.md): 0 ok, 1 failed or refused, 2 usage,
3 unreachable, 4 not found, 5 condition does not hold."""

import json
import os
import pathlib
import subprocess
import tempfile
import time

import pytest

from cluster import Cluster
from conftest import ROOT, Broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402


def laminarctl_bin():
    env = os.environ.get("LAMINARCTL_BIN")
    if env:
        return env
    built = [p for p in (ROOT / "target" / prof / "laminarctl" for prof in ("release", "debug")) if p.exists()]
    if built:
        return str(max(built, key=lambda p: p.stat().st_mtime))
    raise RuntimeError("laminarctl binary not found: run `cargo build --bin laminarctl` or set LAMINARCTL_BIN")


def run(*args, rc=0, timeout=120):
    """Runs laminarctl; checks its exit status and that nothing panicked."""
    p = subprocess.run([laminarctl_bin(), *[str(a) for a in args]], capture_output=True, text=True, timeout=timeout)
    both = p.stdout + p.stderr
    assert "panicked" not in both and "RUST_BACKTRACE" not in both, both
    assert p.returncode == rc, f"laminarctl {' '.join(map(str, args))}: exit {p.returncode}, wanted {rc}\n{both}"
    return p


def run_json(*args, rc=0):
    return json.loads(run(*args, "--output", "json", rc=rc).stdout)


def produce(bootstrap, topic, values, partition=None):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for v in values:
        if partition is None:
            p.produce(topic, value=v)
        else:
            p.produce(topic, value=v, partition=partition)
    assert p.flush(60) == 0


# ---------------------------------------------------------------- single node

@pytest.fixture(scope="module")
def single():
    d = tempfile.TemporaryDirectory(prefix="laminarctl-single-")
    b = Broker(pathlib.Path(d.name) / "data", ["--group-initial-rebalance-delay-ms", "0"]).start()
    yield b
    if b.proc is not None:
        b.proc.kill()
        b.proc.wait()
    d.cleanup()


def test_single_node_topics(single):
    bs = ["--bootstrap-server", single.bootstrap]
    out = run(*bs, "topic", "create", "ctl-a", "--partitions", 3, "--config", "retention.ms=3600000").stdout
    assert "created topic ctl-a (3 partitions, replication factor 1)" in out
    run(*bs, "topic", "create", "ctl-a", rc=1)
    run(*bs, "topic", "create", "ctl-a", "--if-not-exists")
    listed = run_json(*bs, "topic", "list")
    assert {"topic": "ctl-a", "partitions": 3, "replication_factor": 1} in listed
    assert "ctl-a" in run(*bs, "topic", "list").stdout.split()

    produce(single.bootstrap, "ctl-a", [b"x" * 100] * 10, partition=1)
    [d] = run_json(*bs, "topic", "describe", "ctl-a")
    assert d["configs"] == {"retention.ms": "3600000"}
    p1 = d["partition_details"][1]
    assert (p1["leader"], p1["replicas"], p1["isr"], p1["log_start_offset"], p1["high_watermark"]) == (1, [1], [1], 0, 10)
    assert p1["size_bytes"] > 1000, "DescribeLogDirs reports the bytes on disk"
    assert d["partition_details"][0]["size_bytes"] == 0
    table = run(*bs, "topic", "describe", "ctl-a").stdout
    assert "HIGH-WATERMARK" in table and "SIZE-BYTES" in table

    out = run(*bs, "topic", "alter-config", "ctl-a", "--set", "retention.ms=7200000", "--set", "cleanup.policy=delete").stdout
    assert "retention.ms=7200000" in out
    out = run_json(*bs, "topic", "alter-config", "ctl-a", "--delete", "cleanup.policy")
    assert out["configs"] == {"retention.ms": "7200000"}
    run(*bs, "topic", "alter-config", "ctl-a", "--set", "retention.ms=soon", rc=2)

    assert "now has 5 partitions (had 3)" in run(*bs, "topic", "add-partitions", "ctl-a", "--partitions", 5).stdout
    run(*bs, "topic", "add-partitions", "ctl-a", "--partitions", 2, rc=2)
    assert "deleted topic ctl-a" in run(*bs, "topic", "delete", "ctl-a").stdout
    err = run(*bs, "topic", "describe", "ctl-a", rc=4).stderr
    assert "unknown topic ctl-a" in err
    run(*bs, "topic", "delete", "ctl-a", rc=4)


def test_single_node_status_leaders_and_reassignments(single, tmp_path):
    bs = ["--bootstrap-server", single.bootstrap]
    run(*bs, "topic", "create", "ctl-b", "--partitions", 2)
    st = run_json(*bs, "cluster", "status")
    assert st["source"] == "kafka"
    assert [(b["node"], b["state"]) for b in st["brokers"]] == [(1, "alive")]
    assert st["offline"] == [] and st["under_replicated"] == []
    assert "controller: node 1" in run(*bs, "cluster", "status").stdout

    reb = run_json(*bs, "leader", "rebalance", "--execute")
    assert reb["changes"] == [] and reb["done"]
    assert "nothing to change" in run(*bs, "leader", "rebalance").stdout

    plan = tmp_path / "plan.json"
    out = run(*bs, "partition", "reassign", "plan", "--topics", "ctl-b", "--brokers", 1, "--out", plan).stdout
    assert "0 of 2 partition(s) change" in out
    assert json.loads(plan.read_text())["partitions"][0]["replicas"] == [1]
    run(*bs, "partition", "reassign", "execute", "--file", plan)
    assert run_json(*bs, "partition", "reassign", "verify", "--file", plan)["complete"]
    assert "no reassignment in progress" in run(*bs, "partition", "reassign", "list").stdout
    assert "nothing in progress" in run(*bs, "partition", "reassign", "cancel", "--file", plan).stdout
    err = run(*bs, "partition", "reassign", "execute", "--file", plan, "--throttle", 1000000, rc=2).stderr
    assert "no replication throttle" in err
    run(*bs, "partition", "reassign", "plan", "--topics", "ctl-b", "--brokers", 7, rc=4)
    err = run(*bs, "broker", "decommission", 1, "--execute", rc=1).stderr
    assert "only live broker" in err


def kp_consume(bootstrap, group, topic, want, timeout=30):
    """kafka-python consumer in `group`: reads `want` records (or until the
    timeout), commits, leaves the group. Returns the values."""
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=1000)
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        for m in c:
            got.append(m.value)
            if len(got) >= want:
                break
    c.commit()
    c.close()
    return got


def committed(bs, group):
    d = run_json(*bs, "group", "describe", group)
    return {(o["topic"], o["partition"]): o["committed_offset"] for o in d["offsets"]}


def test_single_node_reset_offsets_moves_a_real_consumer_group(single):
    bs = ["--bootstrap-server", single.bootstrap]
    run(*bs, "topic", "create", "ctl-g", "--partitions", 1)
    produce(single.bootstrap, "ctl-g", [f"early-{i}".encode() for i in range(10)])
    time.sleep(0.05)
    middle_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce(single.bootstrap, "ctl-g", [f"late-{i}".encode() for i in range(10)])
    assert len(kp_consume(single.bootstrap, "ctl-grp", "ctl-g", 20)) == 20

    d = run_json(*bs, "group", "describe", "ctl-grp")
    assert d["state"] == "Empty" and d["members"] == []
    assert [(o["committed_offset"], o["end_offset"], o["lag"]) for o in d["offsets"]] == [(20, 20, 0)]
    assert any(g["group"] == "ctl-grp" for g in run_json(*bs, "group", "list"))

    # Dry run by default: shows, changes nothing.
    dry = run_json(*bs, "group", "reset-offsets", "ctl-grp", "--topic", "ctl-g", "--to-earliest")
    assert not dry["executed"] and dry["partitions"][0]["new_offset"] == 0
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 20}
    # To a time: the consumer re-reads exactly the late records.
    run(*bs, "group", "reset-offsets", "ctl-grp", "--all-topics", "--to-datetime", middle_ms, "--execute")
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 10}
    again = kp_consume(single.bootstrap, "ctl-grp", "ctl-g", 10)
    assert again == [f"late-{i}".encode() for i in range(10)]
    # Shift back, to an offset (kept within the log), to the end, to the start.
    run(*bs, "group", "reset-offsets", "ctl-grp", "--topic", "ctl-g:0", "--shift-by", -5, "--execute")
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 15}
    run(*bs, "group", "reset-offsets", "ctl-grp", "--topic", "ctl-g", "--to-offset", 999, "--execute")
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 20}
    run(*bs, "group", "reset-offsets", "ctl-grp", "--all-topics", "--to-earliest", "--execute")
    assert kp_consume(single.bootstrap, "ctl-grp", "ctl-g", 20)[0] == b"early-0"
    run(*bs, "group", "reset-offsets", "ctl-grp", "--all-topics", "--to-latest", "--execute")
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 20}

    # An active group is refused, and so is deleting it.
    c = Consumer({"bootstrap.servers": single.bootstrap, "group.id": "ctl-grp", "auto.offset.reset": "earliest"})
    c.subscribe(["ctl-g"])
    try:
        deadline = time.time() + 20
        while not run_json(*bs, "group", "describe", "ctl-grp")["members"] and time.time() < deadline:
            c.poll(0.2)
        d = run_json(*bs, "group", "describe", "ctl-grp")
        assert d["state"] == "Stable" and len(d["members"]) == 1
        assert d["members"][0]["assignment"] == {"ctl-g": [0]}
        err = run(*bs, "group", "reset-offsets", "ctl-grp", "--all-topics", "--to-earliest", "--execute", rc=1).stderr
        assert "active" in err and "stop its consumers" in err
        assert "active members" in run(*bs, "group", "delete", "ctl-grp", rc=1).stderr
    finally:
        c.close()
    assert committed(bs, "ctl-grp") == {("ctl-g", 0): 20}, "the refused reset changed nothing"
    assert "deleted group ctl-grp" in run(*bs, "group", "delete", "ctl-grp").stdout
    run(*bs, "group", "delete", "ctl-grp", rc=4)
    run(*bs, "group", "describe", "ctl-grp", rc=4)


def test_bad_input_gets_a_clear_message_and_a_non_zero_exit(single, tmp_path):
    bs = ["--bootstrap-server", single.bootstrap]
    err = run("--etcd", "http://127.0.0.1:1", "cluster", "status", rc=3).stderr
    assert "etcd at http://127.0.0.1:1 unreachable" in err and "check --etcd" in err
    err = run("--bootstrap-server", "127.0.0.1:1", "topic", "list", rc=3).stderr
    assert "check --bootstrap-server" in err
    run(*bs, "topic", "create", "x", "--partitions", "many", rc=2)
    run(*bs, "--output", "yaml", "topic", "list", rc=2)
    run(*bs, "group", "reset-offsets", "g", "--all-topics", rc=2)
    run(*bs, "group", "reset-offsets", "g", "--all-topics", "--to-earliest", "--to-latest", rc=2)
    err = run(*bs, "group", "reset-offsets", "g", "--all-topics", "--to-datetime", "yesterday", rc=2).stderr
    assert "not a date-time" in err
    run(*bs, "group", "reset-offsets", "g", "--topic", "nope", "--to-earliest", rc=4)
    run(*bs, "topic", "alter-config", "t", "--set", "novalue", rc=2)
    run(*bs, "topic", "describe", "no-such-topic", rc=4)
    err = run(*bs, "partition", "reassign", "execute", "--file", tmp_path / "missing.json", rc=2).stderr
    assert "cannot read" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "partitions": [{"topic": "t", "partition": 0, "replicas": [1, 1]}]}')
    assert "twice" in run(*bs, "partition", "reassign", "verify", "--file", bad, rc=2).stderr
    err = run(*bs, "metadata", "check", rc=2).stderr
    assert "--etcd" in err and "--data-dir" in err
    run("--data-dir", tmp_path / "nothing-here", "metadata", "check", rc=4)
    assert run("--help").stdout.count("Exit status") == 1


def test_single_node_metadata_backup_and_restore(tmp_path):
    """The embedded store of a stopped single node: refused while it runs;
    status, check and export once stopped; the export restores into a new
    data directory, from which a broker starts with the topic."""
    b = Broker(tmp_path / "data", []).start()
    try:
        run("--bootstrap-server", b.bootstrap, "topic", "create", "kept", "--partitions", 2,
            "--config", "retention.ms=123456")
        err = run("--data-dir", tmp_path / "data", "metadata", "export", rc=1).stderr
        assert "in use" in err and "stop the broker" in err
    finally:
        b.stop()
    dd = ["--data-dir", tmp_path / "data"]
    st = run_json(*dd, "cluster", "status")
    assert st["source"] == "embedded" and st["partitions"] == 2
    assert run_json(*dd, "metadata", "check")["errors"] == 0
    backup = tmp_path / "backup.json"
    run(*dd, "metadata", "export", "--out", backup)
    snap = json.loads(backup.read_text())
    assert snap["format"] == "laminar-metadata-export" and snap["version"] == 1
    assert any(k["key"] == "/meta/topics/kept" for k in snap["keys"])
    assert json.loads(run(*dd, "metadata", "export").stdout)["keys"] == snap["keys"], "stdout holds the same"
    err = run(*dd, "metadata", "import", "--file", backup, rc=1).stderr
    assert "--force" in err
    run(*dd, "metadata", "import", "--file", backup, "--force")
    fresh = tmp_path / "restored"
    run("--data-dir", fresh, "metadata", "import", "--file", backup)
    r = Broker(fresh, []).start()
    try:
        [d] = run_json("--bootstrap-server", r.bootstrap, "topic", "describe", "kept")
        assert d["partitions"] == 2 and d["configs"] == {"retention.ms": "123456"}
    finally:
        r.stop()


# ------------------------------------------------------- etcd and 3 brokers

@pytest.fixture(scope="module")
def cluster():
    c = Cluster(3).start()
    c.wait_all_registered()
    yield c
    c.stop()


def etcd_args(c):
    return ["--etcd", c.etcd.endpoint]


def test_cluster_status_and_topics_from_etcd(cluster):
    e = etcd_args(cluster)
    # No --bootstrap-server: the brokers are found in etcd.
    run(*e, "topic", "create", "ctl-c", "--partitions", 6, "--replication-factor", 3)
    produce(cluster.bootstrap, "ctl-c", [b"y" * 200] * 30)
    st = run_json(*e, "cluster", "status")
    assert st["source"] == "etcd" and st["controller"] in (1, 2, 3) and st["controller_epoch"] >= 1
    assert [(b["node"], b["state"], b["shards"]) for b in st["brokers"]] == [(n, "alive", 2) for n in (1, 2, 3)]
    assert sum(b["leaders"] for b in st["brokers"]) == st["partitions"]
    for b in st["brokers"]:
        assert sum(s["replicas"] for s in b["per_shard"]) == b["replicas"]
        assert sum(s["leaders"] for s in b["per_shard"]) == b["leaders"]
    assert st["under_replicated"] == [] and st["offline"] == []
    text = run(*e, "cluster", "status").stdout
    assert "NODE  SHARD  LEADERS  REPLICAS" in text and "controller: node" in text

    [d] = run_json(*e, "topic", "describe", "ctl-c")
    assert d["replication_factor"] == 3 and d["topic_id"]
    hw = sum(p["high_watermark"] for p in d["partition_details"])
    assert hw == 30
    for p in d["partition_details"]:
        assert sorted(p["isr"]) == [1, 2, 3] and len(p["shards"]) == 3
        if p["high_watermark"] > 0:
            # Every replica's size, from every broker.
            assert sorted(p["replica_sizes"]) == ["1", "2", "3"] and p["size_bytes"] > 0
    run(*e, "--etcd-prefix", "/elsewhere", "cluster", "status", rc=4)


def test_cluster_reset_offsets_moves_a_consumer_group(cluster):
    e = etcd_args(cluster)
    run(*e, "topic", "create", "ctl-r", "--partitions", 2, "--replication-factor", 3)
    for partition in (0, 1):
        produce(cluster.bootstrap, "ctl-r", [f"r{partition}-{i}".encode() for i in range(10)], partition=partition)

    def consume(want):
        c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "ctl-rg", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["ctl-r"])
        got, deadline = [], time.time() + 30
        while len(got) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        c.commit(asynchronous=False)
        c.close()
        return got

    assert len(consume(20)) == 20
    d = run_json(*e, "group", "describe", "ctl-rg")
    assert sum(o["committed_offset"] for o in d["offsets"]) == 20 and all(o["lag"] == 0 for o in d["offsets"])
    run(*e, "group", "reset-offsets", "ctl-rg", "--topic", "ctl-r", "--shift-by", -3, "--execute")
    d = run_json(*e, "group", "describe", "ctl-rg")
    assert sum(o["lag"] for o in d["offsets"]) == 6
    assert len(consume(6)) == 6
    assert sum(o["lag"] for o in run_json(*e, "group", "describe", "ctl-rg")["offsets"]) == 0


def records(c, topic):
    return c.partitions(topic)


def test_cluster_leader_rebalance_spreads_leaders_over_brokers_and_shards(cluster, tmp_path):
    e = etcd_args(cluster)
    run(*e, "topic", "create", "ctl-l", "--partitions", 6, "--replication-factor", 3)
    # Make broker 1 the preferred leader of everything, and elect it.
    before = records(cluster, "ctl-l")
    plan = {"version": 1, "partitions": [
        {"topic": "ctl-l", "partition": p, "replicas": [1] + [n for n in r["replicas"] if n != 1]}
        for p, r in before.items()]}
    f = tmp_path / "all-on-1.json"
    f.write_text(json.dumps(plan))
    run(*e, "partition", "reassign", "execute", "--file", f)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ctl-l", p) for p in range(6)]).result(30)
    cluster.wait_for("broker 1 to lead everything",
                     lambda: all(r["leader"] == 1 for r in records(cluster, "ctl-l").values()))

    dry = run_json(*e, "leader", "rebalance", "--topics", "ctl-l")
    assert not dry["executed"] and len(dry["changes"]) >= 3, dry
    assert dry["before"]["broker_spread"] >= 4
    assert all(r["leader"] == 1 for r in records(cluster, "ctl-l").values()), "a dry run changes nothing"
    out = run(*e, "leader", "rebalance", "--topics", "ctl-l", "--execute")
    assert "NODE  SHARD  LEADERS-BEFORE  LEADERS-AFTER" in out.stdout
    recs = records(cluster, "ctl-l")
    counts = {n: sum(1 for r in recs.values() if r["leader"] == n) for n in (1, 2, 3)}
    assert all(c >= 1 for c in counts.values()), counts
    # Each new leader is the preferred replica, so the controller keeps it.
    assert all(r["leader"] == r["replicas"][0] for r in recs.values())
    # Every topic's leaders count (only ctl-l's moved): even over brokers;
    # over the two shards of each broker as even as the replicas' shards
    # allow (the unit tests pin that down; here: no worse than before).
    st = run_json(*e, "cluster", "status")
    per_broker = [b["leaders"] for b in st["brokers"]]
    assert max(per_broker) - min(per_broker) <= 1, st["brokers"]
    spread = max(max(s["leaders"] for s in b["per_shard"]) - min(s["leaders"] for s in b["per_shard"])
                 for b in st["brokers"])
    assert spread <= max(1, dry["before"]["shard_spread"]), st["brokers"]
    again = run_json(*e, "leader", "rebalance", "--topics", "ctl-l")
    assert again["changes"] == [] and again["after"]["broker_spread"] <= 1


def test_cluster_reassign_plan_execute_verify(cluster, tmp_path):
    e = etcd_args(cluster)
    run(*e, "topic", "create", "ctl-m", "--partitions", 4, "--replication-factor", 2)
    produce(cluster.bootstrap, "ctl-m", [f"m{i}".encode() for i in range(40)])
    plan = tmp_path / "off-3.json"
    out = run_json(*e, "partition", "reassign", "plan", "--topics", "ctl-m", "--brokers", "1,2", "--out", plan)
    assert all(sorted(p["replicas"]) == [1, 2] for p in out["proposed"]["partitions"])
    run(*e, "partition", "reassign", "execute", "--file", plan)

    def verified():
        # 5 while a move is in progress, 0 once all are complete.
        p = subprocess.run([laminarctl_bin(), *e, "partition", "reassign", "verify", "--file", str(plan)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode in (0, 5), p.stderr
        return p.returncode == 0
    cluster.wait_for("the moves to complete", verified, timeout=60, interval=0.5)
    assert all(sorted(r["replicas"]) == [1, 2] for r in records(cluster, "ctl-m").values())
    assert "nothing in progress" in run(*e, "partition", "reassign", "cancel", "--file", plan).stdout
    got = []
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "ctl-m-read", "auto.offset.reset": "earliest"})
    c.subscribe(["ctl-m"])
    deadline = time.time() + 30
    while len(got) < 40 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(40))


def test_cluster_metadata_export_check_import(cluster, tmp_path):
    e = etcd_args(cluster)
    chk = run_json(*e, "metadata", "check")
    assert chk["errors"] == 0 and chk["brokers"] == 3, chk
    backup = tmp_path / "cluster.json"
    run(*e, "metadata", "export", "--out", backup)
    snap = json.loads(backup.read_text())
    leased = {k["key"] for k in snap["keys"] if k.get("leased")}
    assert "/meta/controller" in leased and "/meta/brokers/0000000001" in leased
    # Restore under another prefix (no broker there).
    out = run(*e, "--etcd-prefix", "/restored", "metadata", "import", "--file", backup).stdout
    assert f"imported {len(snap['keys']) - len(leased)} keys" in out
    restored = cluster.etcd.get_prefix("/restored/meta/topics/")
    assert "/restored/meta/topics/ctl-c" in restored
    run(*e, "--etcd-prefix", "/restored", "metadata", "import", "--file", backup, rc=1)
    # No broker registered there: replicas are not on live brokers.
    cluster.etcd.ctl("put", "/restored/stray", "x")
    chk = run_json(*e, "--etcd-prefix", "/restored", "metadata", "check", rc=5)
    problems = [p["problem"] for p in chk["problems"] if p["severity"] == "error"]
    assert any("not registered" in p for p in problems) and any("orphan" in p for p in problems), problems
    run(*e, "--etcd-prefix", "/restored", "metadata", "import", "--file", backup, "--force")
    assert "/restored/stray" not in cluster.etcd.get_prefix("/restored/")
    # Never over a running cluster.
    err = run(*e, "metadata", "import", "--file", backup, "--force", rc=1).stderr
    assert "stop every broker" in err


def test_cluster_decommission_leaves_nothing_under_replicated(cluster):
    e = etcd_args(cluster)
    cluster.add(4)
    cluster.wait_all_registered()
    run(*e, "topic", "create", "ctl-d", "--partitions", 8, "--replication-factor", 3)
    assert any(4 in r["replicas"] for r in records(cluster, "ctl-d").values())
    values = [f"d{i}".encode() for i in range(80)]
    produce(cluster.bootstrap, "ctl-d", values)

    dry = run_json(*e, "broker", "decommission", 4)
    assert not dry["executed"] and dry["plan"]["partitions"]
    assert any(4 in r["replicas"] for r in records(cluster, "ctl-d").values()), "a dry run moves nothing"
    out = run(*e, "broker", "decommission", 4, "--execute", "--wait-timeout-ms", 90000, timeout=120).stdout
    assert "it can be stopped now" in out
    for topic in ("ctl-c", "ctl-d", "ctl-l", "ctl-m", "ctl-r"):
        for r in records(cluster, topic).values():
            assert 4 not in r["replicas"]
    st = run_json(*e, "cluster", "status")
    assert st["under_replicated"] == [] and st["offline"] == []
    assert [b["replicas"] for b in st["brokers"] if b["node"] == 4] == [0]
    got = []
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "ctl-d-read", "auto.offset.reset": "earliest"})
    c.subscribe(["ctl-d"])
    deadline = time.time() + 30
    while len(got) < 80 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(values)
    cluster.brokers[4].stop()


def test_cluster_status_with_every_broker_down_and_disaster_recovery(cluster, tmp_path):
    """Last: it stops the cluster's brokers. With all of them down, status
    and check still read etcd. Then etcd loses every key, the backup is
    imported, and the brokers, restarted on their data directories, serve
    the topics and their records again."""
    e = etcd_args(cluster)
    backup = tmp_path / "before-the-disaster.json"
    run(*e, "metadata", "export", "--out", backup)
    for n, b in cluster.brokers.items():
        if b.proc is not None:
            cluster.kill(n)
    cluster.wait_for("the leases to expire", lambda: not cluster.etcd.get_prefix("/laminar/meta/brokers/"), timeout=20)
    st = run_json(*e, "cluster", "status")
    assert all(b["state"] == "down" for b in st["brokers"]) and st["controller"] is None
    assert st["offline"] and st["partitions"] == len(st["offline"])
    assert "offline partitions: " in run(*e, "cluster", "status").stdout
    chk = run_json(*e, "metadata", "check", rc=5)
    assert any("not alive" in p["problem"] for p in chk["problems"])
    err = run(*e, "topic", "list", rc=3).stderr
    assert "no broker is registered" in err

    cluster.etcd.ctl("del", "--prefix", "/laminar/")
    run(*e, "cluster", "status", rc=4)
    run(*e, "metadata", "import", "--file", backup)
    for n in (1, 2, 3):
        cluster.restart(n)
    cluster.wait_all_registered()
    got = []
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "ctl-dr-read", "auto.offset.reset": "earliest"})
    c.subscribe(["ctl-d"])
    deadline = time.time() + 60
    while len(got) < 80 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"d{i}".encode() for i in range(80))
    # The group offsets came back too.
    d = run_json(*e, "group", "describe", "ctl-rg")
    assert sum(o["committed_offset"] for o in d["offsets"]) == 20
    cluster.wait_for("every partition led and in sync",
                     lambda: not run_json(*e, "cluster", "status")["under_replicated"], timeout=30, interval=0.5)

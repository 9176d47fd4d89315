"""Three laminar brokers and a real etcd: topics created anywhere are served
everywhere, leaders spread over brokers and their shards, groups keep their
offsets when their coordinator dies, the controller fails over, a broker cut
off from etcd stops leading, an etcd restart loses nothing, and a second
broker with a live node id is refused. Replication factor 1 here (the
replication tests are in test_replication.py)."""

import collections
import json
import signal
import subprocess
import time
import uuid

import pytest

from cluster import Cluster

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


@pytest.fixture
def cluster():
    c = Cluster(3).start()
    yield c
    c.stop()


def create(bootstrap, name, partitions, rf=1, config=None):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, partitions, rf, config=config or {})], operation_timeout=20)[name].result(30)


def produce_all(bootstrap, topic, values, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **conf})
    acked, errors = [], []
    for v in values:
        p.produce(topic, value=v, key=v, on_delivery=lambda e, m: (errors if e else acked).append(e or m))
    assert p.flush(60) == 0
    return acked, errors


def consume_group(bootstrap, group, topic, want, timeout=60, commit=True):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    if commit and got:
        c.commit(asynchronous=False)
    c.close()
    return got


def coordinator_of(bootstrap, group):
    """The group's coordinator; retried, as coordinator slots may still be
    moving between brokers that just joined."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + 20
    while True:
        try:
            return a.describe_consumer_groups([group])[group].result(30).coordinator.id
        except ck.KafkaException as e:
            if e.args[0].code() != KafkaError.NOT_COORDINATOR or time.time() > deadline:
                raise
            time.sleep(0.2)


def metadata(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)


def leaders(md, topic):
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def test_a_topic_created_through_one_broker_is_served_by_all(cluster):
    b1, b2, b3 = (cluster.brokers[n].bootstrap for n in (1, 2, 3))
    t0 = time.time()
    create(b1, "everywhere", 6)
    # Every broker's metadata shows it, with the same leaders.
    views = [cluster.wait_for("topic visible", lambda b=b: "everywhere" in metadata(b).topics and metadata(b))
             for b in (b1, b2, b3)]
    visible_s = time.time() - t0
    assert len({json.dumps(leaders(v, "everywhere"), sort_keys=True) for v in views}) == 1
    assert sorted(views[0].brokers) == [1, 2, 3]
    assert views[0].controller_id in (1, 2, 3)
    values = [f"v{i}".encode() for i in range(600)]
    acked, errors = produce_all(b3, "everywhere", values)
    assert not errors and len(acked) == 600
    got = consume_group(cluster.bootstrap, "g-" + uuid.uuid4().hex, "everywhere", 600)
    assert sorted(m.value() for m in got) == sorted(values)
    print(f"create -> visible on all three brokers: {visible_s:.3f} s")


def test_leaders_spread_over_brokers_and_their_shards(cluster):
    create(cluster.bootstrap, "spread", 24)
    recs = cluster.wait_for("placed", lambda: (r := cluster.partitions("spread")) and len(r) == 24 and r)
    per_broker = collections.Counter(r["leader"] for r in recs.values())
    assert per_broker == {1: 8, 2: 8, 3: 8}, per_broker
    # Each broker runs two shards (cores): its leaders split evenly between them.
    per_shard = collections.Counter((r["leader"], r["shards"][r["replicas"].index(r["leader"])]) for r in recs.values())
    assert all(per_shard[(b, s)] == 4 for b in (1, 2, 3) for s in (0, 1)), per_shard


def test_a_group_keeps_its_offsets_when_its_coordinator_is_killed(cluster):
    create(cluster.bootstrap, "orders", 6)
    values = [f"o{i}".encode() for i in range(300)]
    produce_all(cluster.bootstrap, "orders", values)
    group = "g-" + uuid.uuid4().hex
    first = consume_group(cluster.bootstrap, group, "orders", 300)
    assert len(first) == 300
    committed = {}
    for m in first:
        committed[m.partition()] = max(committed.get(m.partition(), 0), m.offset() + 1)
    coordinator = coordinator_of(cluster.bootstrap, group)
    cluster.brokers[coordinator].stop(signal.SIGKILL)
    t0 = time.time()
    # Another broker takes the group over, with its committed offsets.
    survivors = ",".join(b.bootstrap for n, b in cluster.brokers.items() if n != coordinator)
    c = Consumer({"bootstrap.servers": survivors, "group.id": group})
    tps = [TopicPartition("orders", p) for p in range(6)]
    got = cluster.wait_for("offsets served by a new coordinator", lambda: _committed(c, tps), timeout=30)
    taken_over = time.time() - t0
    c.close()
    assert got == committed, (got, committed)
    new_coordinator = coordinator_of(survivors, group)
    assert new_coordinator != coordinator
    # Back to full strength: the group resumes after its commits, nothing read twice.
    cluster.brokers[coordinator].start()
    more = [f"n{i}".encode() for i in range(60)]
    acked, errors = produce_all(cluster.bootstrap, "orders", more, **{"message.timeout.ms": 30000})
    assert not errors
    second = consume_group(cluster.bootstrap, group, "orders", 60, timeout=60)
    assert sorted(m.value() for m in second) == sorted(more)
    print(f"group offsets served by broker {new_coordinator} {taken_over:.2f} s after its coordinator "
          f"{coordinator} was killed (lease TTL 2 s)")


def _committed(consumer, tps):
    try:
        res = consumer.committed(tps, timeout=2)
    except ck.KafkaException:
        return None
    return {tp.partition: tp.offset for tp in res if tp.offset >= 0}


def test_a_stable_group_is_taken_over_without_a_rebalance(cluster):
    """The group's membership at its last rebalance is in etcd: when its
    coordinator dies, the next one takes the group over Stable, and the
    members go on heartbeating with their generation and assignment: no
    revocation, no new assignment (Kafka's behaviour; without the record
    every member would get UNKNOWN_MEMBER_ID and the group rebalance)."""
    create(cluster.bootstrap, "steady", 4, rf=3)
    group = "steady-" + uuid.uuid4().hex
    events = collections.Counter()
    consumers = []
    for i in range(2):
        c = Consumer({"bootstrap.servers": cluster.bootstrap_all(), "group.id": group,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 300,
                      "partition.assignment.strategy": "range", "auto.offset.reset": "earliest"})
        c.subscribe(["steady"], on_assign=lambda c, ps: events.update(["assign"]),
                    on_revoke=lambda c, ps: events.update(["revoke"]),
                    on_lost=lambda c, ps: events.update(["lost"]))
        consumers.append(c)

    def poll_all(secs):
        deadline = time.time() + secs
        while time.time() < deadline:
            for c in consumers:
                c.poll(0.1)

    try:
        deadline = time.time() + 60
        while time.time() < deadline and sum(len(c.assignment()) for c in consumers) < 4:
            poll_all(0.5)
        assert sum(len(c.assignment()) for c in consumers) == 4, events
        poll_all(2)  # every member synced and heartbeating: Stable
        settled = dict(events)
        coordinator = coordinator_of(cluster.bootstrap, group)
        cluster.kill(coordinator)
        # Past the lease TTL (2 s), the controller's slot move and the
        # members' coordinator lookup, well inside their session timeout.
        poll_all(12)
        survivors = ",".join(b.bootstrap for n, b in cluster.brokers.items() if n != coordinator)
        assert coordinator_of(survivors, group) != coordinator
        assert dict(events) == settled, f"rebalanced after the coordinator died: {settled} -> {dict(events)}"
        admin = AdminClient({"bootstrap.servers": survivors})
        d = admin.describe_consumer_groups([group])[group].result(30)
        assert len(d.members) == 2 and str(d.state).endswith("STABLE"), d
    finally:
        for c in consumers:
            c.close()


def test_the_controller_fails_over_within_the_lease(cluster):
    create(cluster.bootstrap, "ctl", 3)
    old = cluster.wait_for("controller", cluster.controller)
    cluster.brokers[old].stop(signal.SIGKILL)
    t0 = time.time()
    new = cluster.wait_for("a new controller", lambda: (c := cluster.controller()) not in (None, old) and c, timeout=15)
    failover = time.time() - t0
    # The dead broker's partitions are marked leaderless by the new controller.
    led = cluster.wait_for("its partitions handled", lambda: all(
        r["leader"] != old for r in cluster.partitions("ctl").values()) and True, timeout=15)
    assert led
    assert failover < 2.0 + 2.0, f"controller failover took {failover:.2f} s with a 2 s lease"
    print(f"controller failover: {failover:.3f} s (lease TTL 2 s), from {old} to {new}")


def test_a_broker_cut_off_from_etcd_stops_leading_and_comes_back(cluster):
    create(cluster.bootstrap, "cut", 3)
    produce_all(cluster.bootstrap, "cut", [b"before"] * 30)
    cluster.etcd.pause()
    try:
        time.sleep(3.0)  # longer than the 2 s lease: every broker must have stopped acting
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "retries": 0,
                      "message.timeout.ms": 2000, "enable.idempotence": False})
        errors = []
        for i in range(3):
            p.produce("cut", value=b"during", partition=i, on_delivery=lambda e, m: errors.append(e))
        p.flush(10)
        assert len(errors) == 3 and all(e is not None for e in errors), f"acknowledged while cut off: {errors}"
    finally:
        cluster.etcd.resume()
    acked, errors = produce_all(cluster.bootstrap, "cut", [b"after"] * 30, **{"message.timeout.ms": 30000})
    assert not errors
    got = consume_group(cluster.bootstrap, "g-" + uuid.uuid4().hex, "cut", 60)
    assert collections.Counter(m.value() for m in got) == {b"before": 30, b"after": 30}


def test_an_etcd_restart_loses_nothing(cluster):
    create(cluster.bootstrap, "survive", 3)
    produce_all(cluster.bootstrap, "survive", [f"a{i}".encode() for i in range(90)])
    cluster.etcd.kill()
    time.sleep(1.0)
    cluster.etcd.start()
    acked, errors = produce_all(cluster.bootstrap, "survive", [f"b{i}".encode() for i in range(90)],
                                **{"message.timeout.ms": 60000})
    assert not errors
    got = consume_group(cluster.bootstrap, "g-" + uuid.uuid4().hex, "survive", 180)
    assert len(got) == 180 and len({m.value() for m in got}) == 180


def test_a_second_broker_with_a_live_node_id_is_refused(cluster):
    with pytest.raises(RuntimeError) as e:
        cluster.add(2, data_name="impostor")  # another data directory, the id of a live broker
    assert "already registered" in str(e.value) and "--node-id" in str(e.value)
    # The live broker 2 is unaffected.
    assert sorted(metadata(cluster.brokers[2].bootstrap).brokers) == [1, 2, 3]


def test_an_etcd_that_is_not_up_yet_is_waited_for(tmp_path):
    c = Cluster(1)
    try:
        from conftest import Broker
        b = Broker(tmp_path / "b", c.broker_args(1))
        import threading
        started = {}
        t = threading.Thread(target=lambda: started.setdefault("b", b.start(timeout=60)))
        t.start()
        time.sleep(2.0)
        assert b.proc is not None and b.proc.poll() is None, "the broker must wait, not exit"
        c.etcd.start()
        t.join(60)
        assert "b" in started, "the broker started once etcd came up"
        # stderr is drained by a thread started with the broker: give it a moment.
        deadline = time.time() + 10
        while "etcd is not reachable" not in b.log_text() and time.time() < deadline:
            time.sleep(0.1)
        assert "etcd is not reachable" in b.log_text()
        b.stop()
    finally:
        c.stop()


def test_a_store_written_by_a_newer_format_is_refused(cluster):
    cluster.etcd.ctl("put", f"{cluster.prefix}/format", json.dumps({"version": 99}))
    with pytest.raises(RuntimeError) as e:
        cluster.add(4)
    assert "newer Laminar" in str(e.value)


def test_topic_names_valid_for_kafka_but_awkward_as_keys(cluster):
    names = ["a.b", "a", "a-b-1", "..x", "_-_", "x" * 249]
    for n in names:
        create(cluster.bootstrap, n, 2)
    md = metadata(cluster.bootstrap)
    for n in names:
        assert len(md.topics[n].partitions) == 2, n
        acked, errors = produce_all(cluster.bootstrap, n, [n.encode()[:16]] * 4)
        assert not errors
    # "a" and "a.b" share a key prefix but not their partitions.
    assert len(cluster.partitions("a")) == 2 and len(cluster.partitions("a.b")) == 2


def test_every_client_against_the_cluster(cluster):
    create(cluster.bootstrap, "clients", 3)
    # kcat
    r = subprocess.run(["kcat", "-b", cluster.bootstrap, "-P", "-t", "clients"], input="k1\nk2\nk3\n", text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # kafka-python
    kafka = pytest.importorskip("kafka")
    kp = kafka.KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all")
    for i in range(30):
        kp.send("clients", value=f"py{i}".encode())
    kp.flush(30)
    kp.close()
    # confluent-kafka
    produce_all(cluster.bootstrap, "clients", [f"ck{i}".encode() for i in range(30)])
    # kafkajs (consumes with a group; see js/cluster_roundtrip.js)
    import pathlib
    import shutil
    js = pathlib.Path(__file__).parent / "js"
    if shutil.which("node") and (js / "node_modules" / "kafkajs").exists():
        r = subprocess.run(["node", str(js / "cluster_roundtrip.js"), cluster.bootstrap, "clients"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout.strip().splitlines()[-1])
        assert seen["count"] >= 63, seen
    # kcat reads everything back.
    r = subprocess.run(["kcat", "-b", cluster.bootstrap, "-C", "-t", "clients", "-e", "-q", "-o", "beginning"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert {"k1", "k2", "k3"} <= set(lines) and sum(1 for x in lines if x.startswith("py")) == 30


def test_a_wiped_store_stops_the_brokers_and_deletes_nothing(cluster):
    """etcd emptied under a running cluster reads as "every topic deleted";
    the brokers must notice the store is no longer theirs (its cluster id is
    gone) and stop rather than delete their partitions."""
    create(cluster.bootstrap, "precious", 3)
    acked, errors = produce_all(cluster.bootstrap, "precious", [b"keep-me"] * 30)
    assert not errors
    dirs = sorted(p.name for n in cluster.brokers for p in (cluster.root / f"broker-{n}").glob("precious-*"))
    assert len(dirs) == 3
    cluster.etcd.ctl("del", "--prefix", cluster.prefix)
    for b in cluster.brokers.values():
        rc = b.proc.wait(30)
        assert rc == 3, rc
        b.proc = None
        assert "no longer holds this cluster" in b.log_text()
    after = sorted(p.name for n in cluster.brokers for p in (cluster.root / f"broker-{n}").glob("precious-*"))
    assert after == dirs, "no partition directory was deleted"


def test_manual_replica_assignment_places_replicas_where_asked(cluster):
    """CreateTopics with a manual replica assignment: each partition lands on
    the brokers it names, the first leading, and on each broker the
    least-loaded shard, so a broker given several leaders spreads them over
    its cores."""
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = f"manual-{uuid.uuid4().hex[:8]}"
    want = [[1, 2], [1, 3], [2, 3], [1, 2]]
    a.create_topics([NewTopic(topic, len(want), replica_assignment=want)], operation_timeout=20)[topic].result(30)
    recs = cluster.wait_for("placed", lambda: (r := cluster.partitions(topic)) and len(r) == 4 and r)
    assert [recs[p]["replicas"] for p in range(4)] == want
    assert [recs[p]["leader"] for p in range(4)] == [1, 1, 2, 1]
    # Broker 1 leads partitions 0, 1 and 3: its two shards share them.
    shards_of_1 = [recs[p]["shards"][0] for p in (0, 1, 3)]
    assert sorted(collections.Counter(shards_of_1).values()) == [1, 2], shards_of_1
    acked, errors = produce_all(cluster.bootstrap, topic, [b"%d" % i for i in range(40)])
    assert not errors and len(acked) == 40

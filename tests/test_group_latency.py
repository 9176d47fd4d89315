"""Consumer groups across slow links. Every client reaches the broker through a
latency proxy (tests/latency_proxy.py): the broker advertises the proxy's
port, so the connections clients open after bootstrap (to the partition
leader and to the group coordinator) come back through it too. The proxy
reads each connection's Kafka client id and delays it by that client's
round-trip time, so one group can hold a member 300 ms away and members
next door.

Regression: a JoinGroup without a member id (KIP-394, what every current
client sends first) left a group holding only a pending member id, and the
100 ms group timer forgot such groups; the client's second JoinGroup, one
round trip later, then got UNKNOWN_MEMBER_ID, and the group never formed once
the round trip passed the timer's period."""

import time
import uuid

import pytest

from latency_proxy import LatencyProxy

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

# No initial rebalance delay: the first member forms the group alone and each
# later one causes a rebalance, so the slow link is crossed by rebalances too,
# not hidden under a 3 s wait.
GROUP_ARGS = ["--group-initial-rebalance-delay-ms", "0"]
HEARTBEAT_MS = 500

# Round trips (through the proxy) a librdkafka consumer needs from subscribe()
# to an assignment, counted from its protocol exchange: ApiVersions + Metadata
# on the bootstrap connection (2), FindCoordinator (1), ApiVersions on the
# coordinator connection (1), JoinGroup answered MEMBER_ID_REQUIRED (1),
# JoinGroup (1), SyncGroup (1), and the subscribed topics' Metadata before
# joining (1): 8. Each later member's join costs the members already in one
# heartbeat interval to notice, then JoinGroup + SyncGroup (2). Measured for
# two members: about 11 round trips (1.7 s at 150 ms, 4.5 s at 400 ms, 11 s at
# 1 s, 22 s at 2 s) and under 0.6 s at 0 ms. The bound allows 2.5x the round
# trips counted, for the scheduling noise of a shared 2-core machine, plus a
# fixed 10 s for librdkafka's own timers and the debug build: 21 s for two
# members at 400 ms. Before the fix no group formed at all from 100 ms up.
FIXED_S = 10.0
SLACK = 2.5


def formation_bound_s(rtt_ms, members):
    round_trips = 8 + 2 * (members - 1)
    return FIXED_S + members * HEARTBEAT_MS / 1000 + SLACK * round_trips * rtt_ms / 1000


@pytest.fixture
def proxied_broker(broker_factory):
    """make(rtt_ms) -> (broker, proxy); rtt_ms: number or function of the client id."""
    proxies = []

    def make(rtt_ms):
        proxy = LatencyProxy(rtt_ms).start()
        proxies.append(proxy)
        broker = broker_factory(GROUP_ARGS + ["--advertised-listener", f"127.0.0.1:{proxy.port}"])
        proxy.target_port = broker.port
        return broker, proxy

    yield make
    for p in proxies:
        p.stop()


def bootstrap(proxy):
    return f"127.0.0.1:{proxy.port}"


def create(proxy, name, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap(proxy), "client.id": "near-admin"})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce(proxy, topic, n, partitions):
    p = Producer({"bootstrap.servers": bootstrap(proxy), "client.id": "near-producer", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(60) == 0


def consumer(proxy, group, client_id):
    return Consumer({"bootstrap.servers": bootstrap(proxy), "group.id": group, "client.id": client_id,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                     "heartbeat.interval.ms": HEARTBEAT_MS})


def wait_assigned(consumers, partitions, timeout_s):
    """Polls until the consumers' assignments are disjoint, cover every
    partition and none is empty; returns the seconds that took, or fails."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        for c in consumers:
            c.poll(0.02)
        sets = [{tp.partition for tp in c.assignment()} for c in consumers]
        if all(sets) and sum(map(len, sets)) == partitions and set().union(*sets) == set(range(partitions)):
            return time.monotonic() - start
    sizes = [len(c.assignment()) for c in consumers]
    pytest.fail(f"no complete assignment within {timeout_s:.1f} s (assigned: {sizes})")


def drain_exactly_once(consumers, n, timeout_s=60):
    """Consumes until n records arrived; checks each of m0..m{n-1} came once,
    to a member that owns its partition, and nothing more within a second."""
    got = []
    owners = [{tp.partition for tp in c.assignment()} for c in consumers]
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    while time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.02)
            if m is not None and m.error() is None:
                assert m.partition() in owners[i], "record from a partition this member does not own"
                got.append((i, m.value()))
        if len(got) >= n and quiet_until is None:
            quiet_until = time.monotonic() + 1.0
        if quiet_until is not None and time.monotonic() >= quiet_until:
            break
    values = sorted(v for _, v in got)
    assert values == sorted(f"m{i}".encode() for i in range(n)), f"{len(values)} records for {n} produced"
    return {i: sum(1 for j, _ in got if j == i) for i in range(len(consumers))}


@pytest.mark.parametrize("rtt_ms", [0, 150, 400])
def test_group_forms_at_round_trip(proxied_broker, rtt_ms):
    _, proxy = proxied_broker(rtt_ms)
    topic = "lat-" + uuid.uuid4().hex[:8]
    create(proxy, topic, 4)
    group = "g-" + uuid.uuid4().hex
    members = [consumer(proxy, group, f"member-{i}") for i in range(2)]
    try:
        for c in members:
            c.subscribe([topic])
        took = wait_assigned(members, 4, formation_bound_s(rtt_ms, len(members)))
        print(f"\ngroup of 2 formed at rtt {rtt_ms} ms in {took:.2f} s")
        produce(proxy, topic, 200, 4)
        drain_exactly_once(members, 200)
    finally:
        for c in members:
            c.close()


SLOW_RTT_MS = 300


@pytest.mark.parametrize("slow_first", [True, False], ids=["slow-first", "slow-last"])
def test_mixed_group_slow_and_near_members(proxied_broker, slow_first):
    """One member 300 ms away and two near ones in one group. Slow first: it
    must form the group alone (the case the timer broke), then the near ones
    join and it rebalances across its slow link. Slow last: the near ones form
    the group and the slow one joins it. Either way every member gets
    partitions and every record is consumed exactly once."""
    _, proxy = proxied_broker(lambda client_id: SLOW_RTT_MS if (client_id or "").startswith("slow") else 0)
    topic = "mixed-" + uuid.uuid4().hex[:8]
    create(proxy, topic, 6)
    group = "g-" + uuid.uuid4().hex
    slow = consumer(proxy, group, "slow-member")
    near = [consumer(proxy, group, f"near-member-{i}") for i in range(2)]
    first, second = ([slow], near) if slow_first else (near, [slow])
    everyone = first + second
    try:
        for c in first:
            c.subscribe([topic])
        took = wait_assigned(first, 6, formation_bound_s(SLOW_RTT_MS, len(first)))
        print(f"\n{'slow' if slow_first else 'near'} member(s) formed the group in {took:.2f} s")
        for c in second:
            c.subscribe([topic])
        took = wait_assigned(everyone, 6, formation_bound_s(SLOW_RTT_MS, len(everyone)))
        print(f"all three assigned {took:.2f} s after the others subscribed")
        produce(proxy, topic, 600, 6)
        per_member = drain_exactly_once(everyone, 600)
        assert all(per_member.values()), f"every member consumed its share: {per_member}"
    finally:
        for c in everyone:
            c.close()

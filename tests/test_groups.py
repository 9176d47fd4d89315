"""Consumer groups with confluent-kafka (librdkafka): members of one group
split a topic's partitions; a leaving member's partitions move to the others;
committed offsets survive a broker restart; a second group reads everything."""

import time
import uuid

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

GROUP_ARGS = ["--group-initial-rebalance-delay-ms", "0"]


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(GROUP_ARGS)


def create(broker, name, partitions):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce(broker, topic, n, partitions, start=0):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(30) == 0


def consumer(broker, group, **conf):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **conf})


def drain(consumers, want, timeout=60, stop_when=None):
    """Polls all consumers round-robin; returns {consumer index: [messages]}."""
    got = {i: [] for i in range(len(consumers))}
    deadline = time.time() + timeout
    while time.time() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got[i].append(m)
        if sum(map(len, got.values())) >= want and (stop_when is None or stop_when()):
            break
    return got


def assignment_sizes(consumers, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.1)
        sizes = [len(c.assignment()) for c in consumers]
        if sum(sizes) == 4 and all(sizes):
            return sizes
    return [len(c.assignment()) for c in consumers]


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_two_members_split_then_one_takes_all(gbroker, strategy):
    topic = f"split-{strategy}"
    create(gbroker, topic, 4)
    group = "g-" + uuid.uuid4().hex
    a = consumer(gbroker, group, **{"partition.assignment.strategy": strategy})
    b = consumer(gbroker, group, **{"partition.assignment.strategy": strategy})
    a.subscribe([topic])
    b.subscribe([topic])
    assert assignment_sizes([a, b]) == [2, 2]
    pa = {tp.partition for tp in a.assignment()}
    pb = {tp.partition for tp in b.assignment()}
    assert pa.isdisjoint(pb) and pa | pb == {0, 1, 2, 3}

    produce(gbroker, topic, 400, 4)
    got = drain([a, b], 400)
    for i, c_parts in ((0, pa), (1, pb)):
        assert {m.partition() for m in got[i]} <= c_parts
    values = sorted(m.value() for ms in got.values() for m in ms)
    assert values == sorted(f"m{i}".encode() for i in range(400))
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)

    # b leaves: a gets all four partitions and continues from b's commits.
    b.close()
    deadline = time.time() + 30
    while len(a.assignment()) != 4 and time.time() < deadline:
        a.poll(0.1)
    assert {tp.partition for tp in a.assignment()} == {0, 1, 2, 3}
    produce(gbroker, topic, 40, 4, start=400)
    more = drain([a], 40)[0]
    assert sorted(m.value() for m in more) == sorted(f"m{i}".encode() for i in range(400, 440))
    a.close()


def test_committed_offsets_survive_restart_and_other_group_reads_all(gbroker):
    create(gbroker, "commits", 2)
    produce(gbroker, "commits", 100, 2)
    group = "g-" + uuid.uuid4().hex
    c = consumer(gbroker, group, **{"enable.auto.commit": False})
    c.subscribe(["commits"])
    got = drain([c], 60, stop_when=None)[0][:60]
    # Commit exactly what we processed, with metadata.
    last = {}
    for m in got:
        last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
    c.commit(offsets=[TopicPartition("commits", p, o + 1, metadata=f"meta-{p}") for p, o in last.items()],
             asynchronous=False)
    committed = c.committed([TopicPartition("commits", 0), TopicPartition("commits", 1)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == {p: o + 1 for p, o in last.items()}
    assert committed[0].metadata == "meta-0"
    c.close()

    gbroker.restart()

    c = consumer(gbroker, group)
    committed = c.committed([TopicPartition("commits", 0), TopicPartition("commits", 1)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == {p: o + 1 for p, o in last.items()}
    c.subscribe(["commits"])
    rest = drain([c], 100 - sum(o + 1 for o in last.values()))[0]
    for m in rest:
        assert m.offset() > last[m.partition()], "resumed after the committed offset"
    c.close()

    # A different group starts from the beginning: publish-subscribe.
    other = consumer(gbroker, "other-" + uuid.uuid4().hex)
    other.subscribe(["commits"])
    everything = drain([other], 100)[0]
    assert sorted(m.value() for m in everything) == sorted(f"m{i}".encode() for i in range(100))
    other.close()


def test_admin_lists_describes_and_deletes_groups(gbroker):
    from confluent_kafka.admin import AdminClient as Admin
    create(gbroker, "adm-groups", 1)
    produce(gbroker, "adm-groups", 10, 1)
    group = "g-" + uuid.uuid4().hex
    c = consumer(gbroker, group)
    c.subscribe(["adm-groups"])
    drain([c], 10)
    c.commit(asynchronous=False)
    a = Admin({"bootstrap.servers": gbroker.bootstrap})
    listed = a.list_consumer_groups().result(30)
    assert group in {g.group_id for g in listed.valid}
    desc = a.describe_consumer_groups([group])[group].result(30)
    assert len(desc.members) == 1
    assert desc.members[0].assignment.topic_partitions[0].topic == "adm-groups"
    # A group with members can't be deleted.
    with pytest.raises(ck.KafkaException):
        a.delete_consumer_groups([group])[group].result(30)
    c.close()
    a.delete_consumer_groups([group])[group].result(30)
    assert group not in {g.group_id for g in a.list_consumer_groups().result(30).valid}


def test_seek_and_offset_out_of_range_reset(gbroker):
    create(gbroker, "reset", 1)
    produce(gbroker, "reset", 20, 1)
    group = "g-" + uuid.uuid4().hex
    # An out-of-range committed offset is reset per auto.offset.reset.
    c = consumer(gbroker, group, **{"enable.auto.commit": False})
    c.subscribe(["reset"])
    drain([c], 1)
    c.commit(offsets=[TopicPartition("reset", 0, 999)], asynchronous=False)
    c.close()
    c = consumer(gbroker, group, **{"auto.offset.reset": "earliest"})
    c.subscribe(["reset"])
    got = drain([c], 20)[0]
    assert [m.offset() for m in got][:20] == list(range(20))
    c.seek(TopicPartition("reset", 0, 15))
    after = drain([c], 5)[0]
    assert [m.offset() for m in after][:5] == [15, 16, 17, 18, 19]
    c.close()

"""Kafka behaviours clients rely on that librdkafka's own test suite found
missing (issue 14, "Gaps already known"), each checked the way a client sees
it: response sizes under fetch.max.bytes, static members restarting without a
rebalance, ListGroups of an emptied group, authorized operations, manual
replica assignment, topic configs (compression.type, message.format.version,
LogAppendTime) and DescribeConfigs' sources and synonyms."""

import time
import uuid

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

GROUP_ARGS = ["--group-initial-rebalance-delay-ms", "0"]


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    a = admin(broker)  # held until the future resolves: a dropped client cancels it
    a.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)


def test_fetch_max_bytes_bounds_the_response(broker):
    """librdkafka 0082: 900 KB records on three partitions, fetched with
    max.partition.fetch.bytes 20 MB but fetch.max.bytes 1 MB. librdkafka
    refuses a response larger than receive.message.max.bytes (1 MB + 512), so
    a broker that answers with 20 MB makes the consumer fail; Kafka answers
    with the first batch and stops (KIP-74)."""
    topic = f"fmb-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    value = b"x" * (900 * 1024)
    for i in range(30):
        p.produce(topic, value=value, partition=i % 3)
    assert p.flush(60) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                  "max.partition.fetch.bytes": 20_000_000, "fetch.max.bytes": 1_000_000,
                  "receive.message.max.bytes": 1_000_512})
    errors = []
    c.subscribe([topic], on_assign=lambda c_, ps: None)
    got = 0
    deadline = time.time() + 30
    try:
        while got < 30 and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(m.error())
                continue
            assert len(m.value()) == len(value)
            got += 1
    finally:
        c.close()
    assert not errors, errors
    assert got == 30


def static_consumer(broker, group, instance, **conf):
    events = {"assigned": [], "revoked": []}
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.instance.id": instance,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  **conf})
    return c, events


def subscribe(c, events, topic):
    def on_assign(c_, parts):
        events["assigned"].append((time.time(), sorted(p.partition for p in parts)))

    def on_revoke(c_, parts):
        events["revoked"].append((time.time(), sorted(p.partition for p in parts)))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)


def poll_until(consumers, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.05)
        if cond():
            return True
    return False


def two_static_members(broker, topic, group):
    """c0 joins first (the group's leader), then c1; both hold two partitions."""
    create(broker, topic, 4)
    c0, e0 = static_consumer(broker, group, "a")
    subscribe(c0, e0, topic)
    assert poll_until([c0], lambda: len(c0.assignment()) == 4, 30)
    c1, e1 = static_consumer(broker, group, "b")
    subscribe(c1, e1, topic)
    assert poll_until([c0, c1], lambda: len(c0.assignment()) == 2 and len(c1.assignment()) == 2, 30)
    return (c0, e0), (c1, e1)


@pytest.mark.parametrize("restart", ["leader", "follower"])
def test_static_member_restart_keeps_assignment_without_rebalance(broker_factory, restart):
    """KIP-345 (librdkafka 0102): a static member that restarts within
    session.timeout.ms gets its partitions back and the rest of the group
    sees no rebalance, whether it was the group's leader or not."""
    broker = broker_factory(GROUP_ARGS)
    topic = f"static-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    (c0, e0), (c1, e1) = two_static_members(broker, topic, group)
    # Stable: no more rebalances pending.
    poll_until([c0, c1], lambda: False, 1.5)
    (gone, gone_ev), (other, other_ev) = ((c0, e0), (c1, e1)) if restart == "leader" else ((c1, e1), (c0, e0))
    instance = "a" if restart == "leader" else "b"
    before = sorted(p.partition for p in gone.assignment())
    other_before = sorted(p.partition for p in other.assignment())
    other_revokes = len(other_ev["revoked"])
    gone.close()  # a static member leaves no LeaveGroup behind
    start = time.time()
    back, back_ev = static_consumer(broker, group, instance)
    subscribe(back, back_ev, topic)
    try:
        assert poll_until([back, other], lambda: len(back.assignment()) > 0, 20)
        took = time.time() - start
        poll_until([back, other], lambda: False, 2)
        assert sorted(p.partition for p in back.assignment()) == before
        assert sorted(p.partition for p in other.assignment()) == other_before
        assert len(other_ev["revoked"]) == other_revokes, f"the group rebalanced: {other_ev}"
        assert took < 5, f"rejoin took {took:.1f} s"
    finally:
        back.close()
        other.close()


def test_expired_static_member_is_removed_on_time(broker_factory):
    """A static member that stops (no LeaveGroup) is removed once its session
    times out, not later: the other member is told to rebalance at its next
    heartbeat (librdkafka 0102 times this against session.timeout.ms)."""
    broker = broker_factory(GROUP_ARGS)
    topic = f"expire-{uuid.uuid4().hex[:8]}"
    (c0, e0), (c1, e1) = two_static_members(broker, topic, f"g-{topic}")
    poll_until([c0, c1], lambda: False, 1.5)
    revokes = len(e1["revoked"])
    c0.close()
    closed = time.time()
    try:
        assert poll_until([c1], lambda: len(e1["revoked"]) > revokes, 20)
        took = e1["revoked"][-1][0] - closed
        # Session 6 s from c0's last heartbeat (≤ 0.5 s before close), then
        # c1's next heartbeat (every 0.5 s) brings the news.
        assert 5.2 <= took <= 6.8, f"revoked {took:.2f} s after close"
        assert poll_until([c1], lambda: len(c1.assignment()) == 4, 10)
    finally:
        c1.close()


def test_emptied_consumer_group_is_listed_as_consumer_and_empty(broker_factory):
    """librdkafka 0081: after its members leave, a consumer group is listed
    as a consumer group (not a "simple" one) in state Empty."""
    broker = broker_factory(GROUP_ARGS)
    topic = f"lg-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    create(broker, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"v")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    assert poll_until([c], lambda: bool(c.assignment()), 30)
    c.close()  # LeaveGroup: the group empties
    a = admin(broker)
    listed = {g.group_id: g for g in a.list_consumer_groups().result(30).valid}
    assert group in listed, listed
    assert listed[group].is_simple_consumer_group is False
    assert listed[group].state == ck.ConsumerGroupState.EMPTY
    d = a.describe_consumer_groups([group])[group].result(30)
    assert d.state == ck.ConsumerGroupState.EMPTY
    assert d.is_simple_consumer_group is False


def test_authorized_operations_are_every_operation_without_acls(broker):
    """librdkafka 0081: DescribeCluster, DescribeTopics (Metadata) and
    DescribeConsumerGroups asked for authorized operations answer what Kafka
    without an authorizer answers: every operation of the resource type."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation as Op
    topic = f"ops-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 1)
    a = admin(broker)
    cluster = a.describe_cluster(include_authorized_operations=True).result(30)
    assert set(cluster.authorized_operations or []) == {
        Op.CREATE, Op.CLUSTER_ACTION, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS, Op.IDEMPOTENT_WRITE, Op.ALTER,
        Op.DESCRIBE}
    assert a.describe_cluster().result(30).authorized_operations is None
    t = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(30)
    assert set(t.authorized_operations or []) == {
        Op.READ, Op.WRITE, Op.CREATE, Op.DESCRIBE, Op.DELETE, Op.ALTER, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS}
    group = f"g-{topic}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    c.close()
    g = a.describe_consumer_groups([group], include_authorized_operations=True)[group].result(30)
    assert set(g.authorized_operations or []) == {
        Op.READ, Op.DESCRIBE, Op.DELETE, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS}


def test_create_topics_with_a_manual_replica_assignment(broker):
    """librdkafka 0081: CreateTopics naming each partition's replicas is
    accepted and followed; a bad assignment is refused as Kafka refuses it."""
    a = admin(broker)
    node = a.describe_cluster().result(30).nodes[0].id
    topic = f"manual-{uuid.uuid4().hex[:8]}"
    a.create_topics([NewTopic(topic, 3, replica_assignment=[[node], [node], [node]])])[topic].result(30)
    md = a.list_topics(topic, timeout=30).topics[topic]
    assert sorted(md.partitions) == [0, 1, 2]
    assert all(p.replicas == [node] and p.leader == node for p in md.partitions.values())
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(3):
        p.produce(topic, value=b"v", partition=i)
    assert p.flush(30) == 0

    def refused(new_topic, code):
        with pytest.raises(ck.KafkaException) as e:
            a.create_topics([new_topic])[new_topic.topic].result(30)
        assert e.value.args[0].code() == code, e.value.args[0]
        return e.value.args[0].str()

    bad = f"bad-{uuid.uuid4().hex[:8]}"
    assert "broker 99" in refused(NewTopic(bad, 1, replica_assignment=[[99]]), KafkaError.INVALID_REPLICA_ASSIGNMENT)
    assert "more than once" in refused(NewTopic(bad, 1, replica_assignment=[[node, node]]),
                                       KafkaError.INVALID_REPLICA_ASSIGNMENT)
    # Adding partitions by hand, too.
    from confluent_kafka.admin import NewPartitions
    a.create_partitions([NewPartitions(topic, 5, replica_assignment=[[node], [node]])])[topic].result(30)
    assert sorted(a.list_topics(topic, timeout=30).topics[topic].partitions) == [0, 1, 2, 3, 4]


def describe(broker, topic):
    from confluent_kafka.admin import ConfigResource
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return a.describe_configs([res])[res].result(30)


def refused_config(broker, config):
    topic = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ck.KafkaException) as e:
        create(broker, topic, 1, config)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value.args[0]
    return e.value.args[0].str()


def test_compression_type_producer_and_message_format_version(broker):
    """librdkafka 0081/0092: compression.type=producer is accepted (batches
    are kept as the producer compressed them); the codecs, which would need
    recompression on the broker, are refused naming the reason;
    message.format.version (deprecated) is accepted, ignored and described."""
    topic = f"comp-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 1, {"compression.type": "producer", "message.format.version": "0.10.0"})
    d = describe(broker, topic)
    assert d["compression.type"].value == "producer"
    assert d["message.format.version"].value == "0.10.0"
    msg = refused_config(broker, {"compression.type": "gzip"})
    assert "compression.type" in msg and "recompress" in msg, msg
    assert "compression.type" in refused_config(broker, {"compression.type": "brotli"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4"})
    p.produce(topic, value=b"v" * 1000)
    assert p.flush(30) == 0


def test_log_append_time_topic_stamps_the_brokers_clock(broker):
    """librdkafka 0052: on a message.timestamp.type=LogAppendTime topic the
    broker stamps each batch with its append time; the produce answer carries
    it and consumers see it, whatever the producer set."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    topic = f"lat-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    assert describe(broker, topic)["message.timestamp.type"].value == "LogAppendTime"
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    reports = []
    before = int(time.time() * 1000)
    for i in range(5):
        p.produce(topic, value=b"v%d" % i, timestamp=1_000 + i, on_delivery=lambda e, m: reports.append((e, m)))
        p.flush(30)
    after = int(time.time() * 1000)
    assert len(reports) == 5 and all(e is None for e, _ in reports), reports
    stamped = [m.timestamp() for _, m in reports]
    assert all(t[0] == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= t[1] <= after + 1000 for t in stamped), stamped
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < 5 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.timestamp())
    c.close()
    assert got == stamped


def test_create_time_timestamps_outside_the_window_are_refused(broker):
    """CreateTime topics check producers' timestamps against
    message.timestamp.before.max.ms / after.max.ms (INVALID_TIMESTAMP)."""
    topic = f"ct-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 1, {"message.timestamp.before.max.ms": "60000",
                              "message.timestamp.after.max.ms": "60000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    now = int(time.time() * 1000)
    results = {}
    for name, ts in [("now", now), ("old", now - 3_600_000), ("future", now + 3_600_000)]:
        p.produce(topic, value=name.encode(), timestamp=ts,
                  on_delivery=lambda e, m, name=name: results.__setitem__(name, e))
        p.flush(30)
    assert results["now"] is None
    assert results["old"].code() == KafkaError.INVALID_TIMESTAMP, results
    assert results["future"].code() == KafkaError.INVALID_TIMESTAMP, results


KAFKA_4_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
    "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
    "message.downconversion.enable", "message.format.version", "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms", "message.timestamp.type", "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms", "min.insync.replicas", "preallocate", "remote.log.copy.disable",
    "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes", "retention.ms", "segment.bytes",
    "segment.index.bytes", "segment.jitter.ms", "segment.ms", "unclean.leader.election.enable",
}


def test_describe_configs_lists_every_kafka_topic_config_with_sources_and_synonyms(broker_factory):
    """Every topic config Kafka 4.x documents is described with Kafka's
    default, its source (topic override, broker default from the command
    line, Kafka's default) and its synonyms as Kafka lists them."""
    from confluent_kafka.admin import ConfigSource
    broker = broker_factory(["--topic-default", "max.message.bytes=2000000"])
    topic = f"dc-{uuid.uuid4().hex[:8]}"
    create(broker, topic, 1, {"retention.ms": "3600000", "min.compaction.lag.ms": "1000"})
    d = describe(broker, topic)
    assert set(d) == KAFKA_4_TOPIC_CONFIGS, set(d) ^ KAFKA_4_TOPIC_CONFIGS
    ret = d["retention.ms"]
    assert (ret.value, ret.source) == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert [(s.name, s.source) for s in ret.synonyms.values()] == [
        ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)]
    seg = d["segment.bytes"]
    assert (seg.value, seg.source) == ("1073741824", ConfigSource.DEFAULT_CONFIG.value)
    assert {(s.name, s.value, s.source) for s in seg.synonyms.values()} == {
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG.value)}
    mmb = d["max.message.bytes"]
    assert (mmb.value, mmb.source) == ("2000000", ConfigSource.STATIC_BROKER_CONFIG.value)
    # Under the broker config's name (the client keeps one synonym per name:
    # Kafka's default, listed after the command line's value).
    assert "message.max.bytes" in mmb.synonyms
    for name, value in [("preallocate", "false"), ("remote.storage.enable", "false"), ("segment.jitter.ms", "0"),
                        ("unclean.leader.election.enable", "false"), ("message.timestamp.type", "CreateTime"),
                        ("min.compaction.lag.ms", "1000"), ("local.retention.ms", "-2")]:
        assert d[name].value == value, (name, d[name].value)


@pytest.mark.parametrize("name,value,why", [
    ("preallocate", "true", "preallocate"),
    ("remote.storage.enable", "true", "tiered storage"),
    ("segment.jitter.ms", "1000", "segment.jitter.ms"),
    ("leader.replication.throttled.replicas", "0:1", "throttle"),
    ("cleanup.policy", "compact", "cleanup.policy"),
    ("message.timestamp.difference.max.ms", "1000", "removed in Kafka 4.0"),
    ("compression.gzip.level", "0", "compression.gzip.level"),
    ("no.such.config", "1", "no.such.config"),
])
def test_topic_configs_laminar_does_not_honour_are_refused_naming_them(broker, name, value, why):
    assert why in refused_config(broker, {name: value})


def test_topic_configs_without_effect_here_are_accepted(broker):
    """Configs whose effect cannot arise in Laminar (compaction knobs on a
    delete topic, recompression levels, deprecated ones) are accepted, as
    Kafka accepts them on such topics; so are the values that are Laminar's
    own behaviour."""
    topic = f"ok-{uuid.uuid4().hex[:8]}"
    config = {"delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0.3", "compression.zstd.level": "5",
              "message.downconversion.enable": "false", "preallocate": "false", "segment.index.bytes": "10485760",
              "unclean.leader.election.enable": "true", "file.delete.delay.ms": "0"}
    create(broker, topic, 1, config)
    d = describe(broker, topic)
    assert {k: d[k].value for k in config} == config

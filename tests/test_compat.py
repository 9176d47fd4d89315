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

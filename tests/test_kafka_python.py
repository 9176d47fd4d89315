"""kafka-python (a pure-Python client with its own protocol code) against
the real broker: admin, produce with compression, consume by assignment."""

import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402


@pytest.mark.parametrize("compression", [None, "gzip", "lz4", "zstd"])
def test_produce_consume(broker, compression):
    if compression == "lz4":
        pytest.importorskip("lz4")
    if compression == "zstd":
        pytest.importorskip("zstandard")
    topic = f"kp-{compression or 'none'}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=compression, acks="all", linger_ms=5)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2) for i in range(400)]
    metas = [f.get(timeout=30) for f in futures]
    p.close()
    assert sorted(m.offset for m in metas if m.partition == 0) == list(range(200))
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    got = {0: [], 1: []}
    for m in c:
        got[m.partition].append(m.value)
        if sum(map(len, got.values())) == 400:
            break
    c.close()
    assert got[0] == [f"v{i}".encode() for i in range(0, 400, 2)]
    assert got[1] == [f"v{i}".encode() for i in range(1, 400, 2)]


def test_offsets_lookup(broker):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(10):
        p.send("kp-offsets", value=b"x", partition=0, timestamp_ms=1_700_000_000_000 + i * 10).get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = TopicPartition("kp-offsets", 0)
    assert c.beginning_offsets([tp])[tp] == 0
    assert c.end_offsets([tp])[tp] == 10
    found = c.offsets_for_times({tp: 1_700_000_000_000 + 55})[tp]
    assert found.offset == 6
    c.close()


def test_group_consume_with_commits(broker_factory):
    broker = broker_factory(["--group-initial-rebalance-delay-ms", "0"])
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("kp-group", num_partitions=3, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    for i in range(90):
        p.send("kp-group", value=f"v{i}".encode(), partition=i % 3)
    p.flush()
    p.close()

    def group_consumer():
        c = KafkaConsumer("kp-group", bootstrap_servers=broker.bootstrap, group_id="kp-g", enable_auto_commit=False,
                          auto_offset_reset="earliest", consumer_timeout_ms=3000)
        return c

    c = group_consumer()
    first = []
    for m in c:
        first.append(m)
        if len(first) == 50:
            break
    c.commit()
    committed = {tp.partition: c.committed(tp) for tp in c.assignment()}
    c.close()
    assert sum(committed.values()) == 50

    c = group_consumer()
    rest = list(c)
    c.close()
    seen = sorted(m.value for m in first + rest)
    assert seen == sorted(f"v{i}".encode() for i in range(90)), "resumed at the commit: nothing lost or repeated"


def test_produce_pinned_to_0_10_1_fails_fast(broker):
    """api_version=(0, 10, 1) makes kafka-python send Produce v2 (message
    format v1), which the broker advertises but does not serve. The answer is
    UNSUPPORTED_VERSION, which kafka-python does not retry; a closed connection
    used to make it retry until the delivery timeout."""
    from kafka.errors import UnsupportedVersionError
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(0, 10, 1), acks=1,
                      request_timeout_ms=10000, delivery_timeout_ms=30000)
    start = time.monotonic()
    with pytest.raises(UnsupportedVersionError):
        p.send("kp-old-format", value=b"x").get(timeout=60)
    took = time.monotonic() - start
    p.close()
    assert took < 5, f"failed after {took:.1f} s: retried instead of failing fast"
    assert "closing connection" not in broker.log_text()
    # Nothing was stored: a current client reads an empty partition.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = TopicPartition("kp-old-format", 0)
    assert c.end_offsets([tp])[tp] == 0
    c.close()

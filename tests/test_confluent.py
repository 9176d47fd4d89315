"""confluent-kafka (librdkafka) against the real broker: admin, produce with
every compression type and acks setting, message size limits, list offsets,
seek, and durability across restarts."""

import time
import uuid

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    a = admin(broker)  # must outlive its futures
    fs = a.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=10)
    fs[name].result(30)


def produce(broker, topic, values, partition=None, **conf):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})
    errors = []
    acked = []

    def cb(err, msg):
        (errors if err else acked).append(err or msg)

    for i, v in enumerate(values):
        kwargs = {"value": v, "on_delivery": cb}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return acked, errors


def consumer(broker, **conf):
    # No group: partitions are assigned by hand (groups are a later feature).
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-" + uuid.uuid4().hex,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", **conf})


def consume(broker, topic, partition, offset, count, timeout=30):
    c = consumer(broker)
    c.assign([TopicPartition(topic, partition, offset)])
    out = []
    deadline = time.time() + timeout
    while len(out) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    return out


def test_admin_create_describe_alter_delete(broker):
    a = admin(broker)
    create(broker, "adm", 3, {"retention.ms": "3600000"})
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("adm", 3, 1)])["adm"].result(30)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad", 0, 1)])["bad"].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"].result(30)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("no-such-config", 1, 1, config={"compression.type": "lz4"})])[
            "no-such-config"].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG

    md = a.list_topics(timeout=10)
    assert len(md.topics["adm"].partitions) == 3

    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = a.describe_configs([res])[res].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert configs["segment.bytes"].value == "1073741824"

    # Incremental: set one, leave the other.
    res.add_incremental_config(ConfigEntry("retention.bytes", "1048576",
                                           incremental_operation=AlterConfigOpType.SET))
    a.incremental_alter_configs([res])[res].result(30)
    configs = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm")])[res].result(30)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].value == "3600000"

    # Configs and partition growth persist across a restart.
    a.create_partitions([NewPartitions("adm", 5)])["adm"].result(30)
    broker.restart()
    a = admin(broker)
    assert len(a.list_topics(timeout=10).topics["adm"].partitions) == 5
    configs = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm")])[res].result(30)
    assert configs["retention.bytes"].value == "1048576"

    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("adm", 2)])["adm"].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    a.delete_topics(["adm"])["adm"].result(30)
    assert "adm" not in a.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["adm"])["adm"].result(30)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_every_compression(broker, compression):
    topic = f"comp-{compression}"
    create(broker, topic)
    values = [(f"{compression}-{i}-" + "x" * (i % 300)).encode() for i in range(3000)]
    acked, errors = produce(broker, topic, values, partition=0, **{"compression.type": compression})
    assert not errors
    assert len(acked) == len(values)
    got = consume(broker, topic, 0, 0, len(values))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks_settings(broker, acks):
    topic = f"acks-{acks}"
    create(broker, topic)
    values = [f"a{i}".encode() for i in range(500)]
    acked, errors = produce(broker, topic, values, partition=0, acks=acks)
    assert not errors and len(acked) == 500
    got = consume(broker, topic, 0, 0, 500)
    assert [m.value() for m in got] == values


def test_message_size_limit(broker):
    create(broker, "big", config={"max.message.bytes": "200000"})
    conf = {"message.max.bytes": 10_000_000, "compression.type": "none", "linger.ms": 0}
    acked, errors = produce(broker, "big", [b"n" * 190_000], partition=0, **conf)
    assert not errors and len(acked) == 1
    acked, errors = produce(broker, "big", [b"o" * 300_000], partition=0, **conf)
    assert not acked
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # The rejected batch left nothing behind.
    c = consumer(broker)
    assert c.get_watermark_offsets(TopicPartition("big", 0), timeout=10) == (0, 1)
    c.close()


def test_list_offsets_and_seek(broker):
    create(broker, "seek")
    base = int(time.time() * 1000) - 100_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(100):
        p.produce("seek", value=f"v{i}".encode(), partition=0, timestamp=base + i * 1000)
    assert p.flush(30) == 0

    c = consumer(broker)
    assert c.get_watermark_offsets(TopicPartition("seek", 0), timeout=10) == (0, 100)
    found = c.offsets_for_times([TopicPartition("seek", 0, base + 42_500)], timeout=10)
    assert found[0].offset == 43
    after_end = c.offsets_for_times([TopicPartition("seek", 0, base + 10_000_000)], timeout=10)
    assert after_end[0].offset == -1  # no record that late: Kafka answers "end"

    c.assign([TopicPartition("seek", 0, 10)])
    m = None
    while m is None:
        m = c.poll(1)
    assert m.offset() == 10 and m.value() == b"v10"
    c.seek(TopicPartition("seek", 0, 77))
    m = None
    while m is None or m.offset() < 77:
        m = c.poll(1)
    assert m.offset() == 77 and m.value() == b"v77"
    c.close()


def test_out_of_range_resets_per_auto_offset_reset(broker):
    create(broker, "oor")
    produce(broker, "oor", [b"a", b"b", b"c"], partition=0)
    c = consumer(broker, **{"auto.offset.reset": "latest"})
    c.assign([TopicPartition("oor", 0, 1000)])
    produce(broker, "oor", [b"d"], partition=0)
    deadline = time.time() + 20
    got = []
    while time.time() < deadline and not got:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
        if m is None and not got:
            # Reset to latest happened: new records now arrive.
            produce(broker, "oor", [b"e"], partition=0)
    c.close()
    assert got and got[0].offset() >= 3


def test_acks_all_survives_sigkill(broker):
    import signal
    create(broker, "durable")
    values = [f"d{i}".encode() for i in range(2000)]
    acked, errors = produce(broker, "durable", values, partition=0, acks="all")
    assert not errors and len(acked) == 2000
    broker.restart(sig=signal.SIGKILL)
    got = consume(broker, "durable", 0, 0, 2000)
    assert [m.value() for m in got] == values


def test_consumer_long_poll_wakes_on_produce(broker):
    create(broker, "lp")
    c = consumer(broker, **{"fetch.wait.max.ms": 5000})
    c.assign([TopicPartition("lp", 0, 0)])
    c.poll(1)  # let the first fetch park on the empty partition
    t0 = time.time()
    produce(broker, "lp", [b"wake"], partition=0, **{"linger.ms": 0})
    m = None
    while m is None and time.time() - t0 < 10:
        m = c.poll(0.1)
    c.close()
    assert m is not None and m.value() == b"wake"
    # Delivered by the append's wake-up, not by fetch.wait.max.ms running out.
    assert time.time() - t0 < 2.5


def test_retention_deletes_old_segments(broker_factory):
    broker = broker_factory(["--retention-check-interval-ms", "200"])
    create(broker, "ret", config={"segment.bytes": "65536", "retention.bytes": "131072"})
    values = [b"r" * 1000] * 1000  # ~1 MB: many 64 KiB segments
    acked, errors = produce(broker, "ret", values, partition=0, **{"linger.ms": 0, "batch.num.messages": 10})
    assert not errors
    c = consumer(broker)
    deadline = time.time() + 20
    # Retention runs every 200 ms: wait until the start has moved and then
    # held still across several passes (a pass may have run while the last
    # batches were still being written, and the next one moves it again).
    readings = []
    while time.time() < deadline and (len(readings) < 4 or readings[-1][0] == 0 or len(set(readings[-4:])) > 1):
        readings.append(c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10, cached=False))
        time.sleep(0.25)
    low, high = readings[-1]
    assert high == 1000
    assert 0 < low < 1000, "retention advanced the log start"
    # What is left is readable from the new start, and nothing before it.
    got = consume(broker, "ret", 0, low, high - low)
    assert [m.offset() for m in got] == list(range(low, high))
    c.close()


def test_delete_records_and_describe_cluster(broker):
    a = admin(broker)
    create(broker, "dr")
    produce(broker, "dr", [f"x{i}".encode() for i in range(50)], partition=0)
    res = a.delete_records([TopicPartition("dr", 0, 20)])
    low = res[TopicPartition("dr", 0, 20)].result(30)
    assert low.low_watermark == 20
    c = consumer(broker)
    assert c.get_watermark_offsets(TopicPartition("dr", 0), timeout=10, cached=False) == (20, 50)
    c.close()
    got = consume(broker, "dr", 0, 20, 30)
    assert got[0].offset() == 20 and got[0].value() == b"x20"
    # The new log start survives a restart.
    broker.restart()
    c = consumer(broker)
    assert c.get_watermark_offsets(TopicPartition("dr", 0), timeout=10, cached=False) == (20, 50)
    c.close()
    a = admin(broker)
    desc = a.describe_cluster().result(30)
    assert [n.id for n in desc.nodes] == [1]
    assert desc.controller.id == 1 and desc.cluster_id


def test_alter_configs_replaces_the_set(broker):
    a = admin(broker)
    create(broker, "alt", config={"retention.ms": "1000000", "retention.bytes": "5000000"})
    res = ConfigResource(ConfigResource.Type.TOPIC, "alt", set_config={"segment.bytes": "1048576"})
    a.alter_configs([res])[res].result(30)
    got = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "alt")])
    configs = list(got.values())[0].result(30)
    assert configs["segment.bytes"].value == "1048576"
    # AlterConfigs (unlike the incremental API) replaces: the others are back to defaults.
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.bytes"].value == "-1"
    bad = ConfigResource(ConfigResource.Type.TOPIC, "alt", set_config={"segment.bytes": "12"})
    with pytest.raises(KafkaException) as e:
        a.alter_configs([bad])[bad].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_auto_create_can_be_disabled(broker_factory):
    broker = broker_factory(["--auto-create-topics", "false"])
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000})
    errors = []
    p.produce("not-there", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT)
    assert "not-there" not in admin(broker).list_topics(timeout=10).topics


def test_produce_with_message_format_v0_fails_fast(broker):
    """librdkafka told the broker is 0.9.0 (no ApiVersions) sends Produce v1
    with message format v0. Produce v0-v2 are advertised but not served: the
    answer is UNSUPPORTED_VERSION, a permanent error for librdkafka, rather
    than a closed connection it would retry until message.timeout.ms."""
    conf = {"bootstrap.servers": broker.bootstrap, "api.version.request": False,
            "broker.version.fallback": "0.9.0", "message.timeout.ms": 30000}
    try:
        p = Producer(conf)
    except KafkaException as e:  # a librdkafka that dropped the pre-0.10 fallback
        pytest.skip(f"librdkafka no longer speaks to 0.9 brokers: {e}")
    create(broker, "old-format")
    results = []
    start = time.monotonic()
    p.produce("old-format", value=b"x", on_delivery=lambda err, msg: results.append((err, time.monotonic() - start)))
    p.flush(60)
    assert len(results) == 1
    err, took = results[0]
    assert err is not None and err.code() == KafkaError.UNSUPPORTED_VERSION, err
    assert took < 5, f"failed after {took:.1f} s: retried instead of failing fast"
    assert consume(broker, "old-format", 0, 0, 1, timeout=2) == []

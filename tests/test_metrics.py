"""`--metrics-listen`: /metrics scraped while real clients produce and
consume, parsed with Prometheus' own parser (the `prometheus_client`
package's OpenMetrics parser, which refuses malformed text), and checked
for plausible values: bytes in against bytes produced, request counts
against requests sent, histograms well formed and only growing. The
cluster test checks the replication and lease metrics on etcd + 3 brokers."""

import socket
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cluster import Cluster, free_port

VALUE_BYTES = 1000


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers["Content-Type"]
        text = r.read().decode()
    samples = {}
    families = {}
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, families


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def total(samples, name, **labels):
    """Sum over every sample of `name` whose labels include `labels`."""
    want = {k: str(v) for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and want.items() <= dict(ls).items())


def check_histograms(families):
    """Buckets cumulative and non-decreasing, +Inf equal to the count."""
    checked = 0
    for fam in families.values():
        if fam.type != "histogram":
            continue
        series = {}
        for s in fam.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "count": None, "sum": None})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
            elif s.name.endswith("_sum"):
                series[key]["sum"] = s.value
        for key, h in series.items():
            bounds = [b for b, _ in h["buckets"]]
            counts = [c for _, c in h["buckets"]]
            assert bounds == sorted(bounds) and bounds[-1] == float("inf"), (fam.name, key)
            assert counts == sorted(counts), (fam.name, key, counts)
            assert counts[-1] == h["count"], (fam.name, key)
            assert h["sum"] >= 0
            checked += 1
    return checked


def test_metrics_follow_real_produce_and_fetch(broker_factory):
    port = free_port()
    b = broker_factory(["--metrics-listen", f"127.0.0.1:{port}"])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("metered", num_partitions=2, replication_factor=1)])["metered"].result(10)
    before, _ = scrape(port)

    # One produce request per message: linger 0 and a flush after each.
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": False})
    sent = 60
    for i in range(sent):
        p.produce("metered", value=bytes([i % 256]) * VALUE_BYTES, partition=i % 2)
        p.flush(10)
    produced_bytes = sent * VALUE_BYTES

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "meters", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["metered"])
    got = 0
    deadline = time.time() + 30
    while got < sent and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got += 1
    assert got == sent
    c.commit(asynchronous=False)
    # Produced after the commit: the group's lag.
    behind = 7
    for i in range(behind):
        p.produce("metered", value=b"x" * VALUE_BYTES, partition=0)
    p.flush(10)
    c.close()

    after, families = scrape(port)
    # Bytes in: the values plus record and batch overhead (small next to 1 KB values).
    bytes_in = value(after, "laminar_topic_bytes_in_total", topic="metered")
    assert produced_bytes <= bytes_in - value(before, "laminar_topic_bytes_in_total", topic="metered") <= 1.5 * (
        produced_bytes + behind * VALUE_BYTES), bytes_in
    bytes_out = value(after, "laminar_topic_bytes_out_total", topic="metered", fetcher="consumer")
    assert produced_bytes <= bytes_out <= 3 * produced_bytes, bytes_out
    assert value(after, "laminar_topic_bytes_out_total", topic="metered", fetcher="follower") == 0

    # At least one request per produce call; Fetches and Metadata were sent too.
    produces = value(after, "laminar_requests_total", api="Produce") - value(before, "laminar_requests_total", api="Produce")
    assert produces >= sent + 1, produces
    assert value(after, "laminar_requests_total", api="Fetch") >= 1
    assert value(after, "laminar_requests_total", api="OffsetCommit") >= 1
    assert value(after, "laminar_request_duration_seconds_count", api="Produce") == value(
        after, "laminar_requests_total", api="Produce")
    assert value(after, "laminar_request_duration_seconds_sum", api="Produce") > 0

    # Histograms are well formed, and only grow between scrapes.
    assert check_histograms(families) >= 5
    for (name, labels), v in before.items():
        if name.endswith(("_total", "_count", "_bucket", "_sum")) and "topic" not in dict(labels):
            assert after.get((name, labels), 0) >= v, (name, labels)

    # acks=all is fdatasync'ed on a single node.
    assert value(after, "laminar_fsync_duration_seconds_count", kind="fdatasync") >= sent
    assert value(after, "laminar_fsync_duration_seconds_sum", kind="fdatasync") > 0
    # Both shards exist, ran, and between them lead the topic's partitions.
    for shard in ("0", "1"):
        assert value(after, "laminar_shard_busy_seconds_total", shard=shard) > 0
        assert ("laminar_shard_mailbox_depth", (("shard", shard),)) in after
    assert total(after, "laminar_partitions", role="leader") == 2
    assert value(after, "laminar_under_replicated_partitions") == 0
    # Appends go through the shards' io_uring.
    assert total(after, "laminar_io_uring_submissions_total") > 0
    assert total(after, "laminar_io_uring_completions_total") > 0
    # The group's lag is exactly what was produced after its commit.
    assert total(after, "laminar_consumer_group_lag", group="meters") == behind
    # The embedded store serves the metadata; the single node renews its lease.
    assert total(after, "laminar_metastore_request_duration_seconds_count", store="embedded") > 0
    assert value(after, "laminar_lease_renewals_total", result="ok") > 0
    assert value(after, "laminar_lease_acting") == 1
    assert value(after, "laminar_metrics_shards_unanswered") == 0


def test_only_get_metrics_is_served(broker_factory):
    port = free_port()
    broker_factory(["--metrics-listen", f"127.0.0.1:{port}"])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


def test_a_taken_metrics_port_stops_the_broker_at_start(broker_factory):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError) as e:
            broker_factory(["--metrics-listen", f"127.0.0.1:{port}"])
        assert f"binding the metrics address 127.0.0.1:{port}" in str(e.value)


def test_no_metrics_port_by_default(broker_factory):
    b = broker_factory()
    assert "metrics" not in b.log_text()


def test_cluster_metrics_show_under_replication_isr_changes_and_leases():
    c = Cluster(3, extra_args=["--replica-lag-time-max-ms", "2000"])
    ports = {}
    try:
        c.etcd.start()
        for node in (1, 2, 3):
            ports[node] = free_port()
            c.add(node, extra_args=["--metrics-listen", f"127.0.0.1:{ports[node]}"])
        c.wait_all_registered()
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("replicated", num_partitions=3, replication_factor=3)])["replicated"].result(20)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(30):
            p.produce("replicated", value=b"v" * 100, partition=i % 3)
        assert p.flush(30) == 0

        def scrapes(nodes):
            return {n: scrape(ports[n])[0] for n in nodes}

        def cluster_total(s, name, **labels):
            return sum(total(x, name, **labels) for x in s.values())

        # Leases are renewed every TTL/4 from registration on.
        c.wait_for("lease renewals on every broker", lambda: all(
            value(x, "laminar_lease_renewals_total", result="ok") > 0 for x in scrapes((1, 2, 3)).values()))
        s = scrapes((1, 2, 3))
        for n, x in s.items():
            assert total(x, "laminar_metastore_request_duration_seconds_count", store="etcd") > 0, n
            assert value(x, "laminar_lease_renewals_total", result="error") == 0, n
            assert value(x, "laminar_lease_acting") == 1
        assert cluster_total(s, "laminar_partitions", role="leader") == 3
        assert cluster_total(s, "laminar_partitions", role="follower") == 6
        # Followers replicate: leaders sent them the records.
        assert cluster_total(s, "laminar_topic_bytes_out_total", topic="replicated", fetcher="follower") >= 3000
        c.wait_for("a whole ISR", lambda: cluster_total(scrapes((1, 2, 3)), "laminar_under_replicated_partitions") == 0)

        # A broker dies: the partitions it replicated are under-replicated.
        c.kill(3)
        c.wait_for("under-replicated partitions",
                   lambda: cluster_total(scrapes((1, 2)), "laminar_under_replicated_partitions") == 3, timeout=30)
        expands_before = cluster_total(scrapes((1, 2)), "laminar_isr_expands_total")

        # It comes back and catches up: the leaders add it to their ISRs again.
        c.restart(3)
        c.wait_for("the ISR whole again",
                   lambda: cluster_total(scrapes((1, 2, 3)), "laminar_under_replicated_partitions") == 0, timeout=60)
        s = scrapes((1, 2, 3))
        assert cluster_total(s, "laminar_isr_expands_total") >= expands_before + 1
        # Broker 3's lease is renewed again after its restart.
        c.wait_for("broker 3's renewals", lambda: value(scrape(ports[3])[0], "laminar_lease_renewals_total", result="ok") > 0)
    finally:
        c.stop()

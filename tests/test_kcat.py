"""kcat (librdkafka) against the real broker: metadata, keyed produce,
consume with format strings."""

import json
import shutil
import subprocess
import zlib

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")


def kcat(broker, *args, input=None, timeout=60):
    r = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kcat {args} failed: {r.stderr}"
    return r.stdout


def test_metadata_lists_broker_and_auto_created_topic(broker):
    # Producing to a missing topic auto-creates it (auto.create.topics.enable).
    kcat(broker, "-P", "-t", "auto-made", input="hello\n")
    meta = json.loads(kcat(broker, "-L", "-J"))
    assert meta["brokers"] == [{"id": 1, "name": f"127.0.0.1:{broker.port}"}]
    topics = {t["topic"]: t for t in meta["topics"]}
    assert "auto-made" in topics
    assert topics["auto-made"]["partitions"][0]["leader"] == 1


def test_produce_with_keys_and_consume_with_format(broker, tmp_path):
    lines = "".join(f"key{i}:value-{i}\n" for i in range(100))
    kcat(broker, "-P", "-t", "keyed", "-K:", input=lines)
    out = kcat(broker, "-C", "-t", "keyed", "-e", "-f", "%k=%s@%p/%o\n")
    got = [line for line in out.splitlines() if line]
    assert len(got) == 100
    for i, line in enumerate(got):
        kv, pos = line.split("@")
        assert kv == f"key{i}=value-{i}"
        assert pos == f"0/{i}"


def test_keyed_messages_land_on_the_partition_the_client_picks(broker_factory):
    # librdkafka's default partitioner (consistent_random) is CRC32(key) % n.
    # The broker stores whatever partition the client chose; check it holds
    # across a restart.
    broker = broker_factory(["--num-partitions", "4"])
    keys = [f"user-{i}" for i in range(40)]
    for round_ in range(2):
        kcat(broker, "-P", "-t", "spread", "-K:", input="".join(f"{k}:r{round_}\n" for k in keys))
        if round_ == 0:
            broker.restart()
    out = kcat(broker, "-C", "-t", "spread", "-e", "-f", "%k %p %s\n")
    seen = {}
    for line in out.splitlines():
        k, p, _ = line.split(" ")
        seen.setdefault(k, set()).add(int(p))
    assert set(seen) == set(keys)
    for k, parts in seen.items():
        assert parts == {zlib.crc32(k.encode()) % 4}, k


def test_consume_from_offset_and_end(broker):
    kcat(broker, "-P", "-t", "offs", input="".join(f"m{i}\n" for i in range(10)))
    out = kcat(broker, "-C", "-t", "offs", "-o", "7", "-e", "-f", "%s\n")
    assert out.split() == ["m7", "m8", "m9"]
    out = kcat(broker, "-C", "-t", "offs", "-o", "-2", "-e", "-f", "%s\n")
    assert out.split() == ["m8", "m9"]

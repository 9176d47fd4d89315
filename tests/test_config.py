"""The configuration file (`--config`), flags over it, refusals of bad
values, `--print-config`, and the JSON log format, against the real binary."""

import json
import subprocess
import time

from confluent_kafka.admin import AdminClient

from conftest import ROOT, laminar_bin

EXAMPLE = ROOT / "docs" / "laminar.example.toml"


def run(*args, timeout=30):
    return subprocess.run([laminar_bin(), *args], capture_output=True, text=True, timeout=timeout)


def partitions_of(broker, topic):
    """Partitions of `topic`, auto-created by asking for it (the first
    answers may come while it is still being created)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deadline = time.time() + 15
    while True:
        md = admin.list_topics(topic=topic, timeout=10)
        n = len(md.topics[topic].partitions)
        if n > 0 or time.time() > deadline:
            return n
        time.sleep(0.1)


def test_the_example_config_loads_and_prints():
    r = run("--config", str(EXAMPLE), "--print-config")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '"num.partitions" = 6' in out
    assert '"listeners" = "0.0.0.0:9092"' in out
    assert '"min.insync.replicas" = 2' in out
    assert '"metrics.listen" = "0.0.0.0:9644"' in out
    assert '"logging.format" = "json"' in out


def test_print_config_round_trips(tmp_path):
    first = run("--config", str(EXAMPLE), "--num-partitions", "4", "--print-config")
    assert first.returncode == 0, first.stderr
    saved = tmp_path / "printed.toml"
    saved.write_text(first.stdout)
    second = run("--config", str(saved), "--print-config")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert '"num.partitions" = 4' in second.stdout


def test_a_config_file_configures_a_running_broker_and_flags_override_it(tmp_path, broker_factory):
    conf = tmp_path / "laminar.toml"
    conf.write_text(
        'num.partitions = 3\n'
        '[auto.create.topics]\n'
        'enable = true\n'
    )
    b = broker_factory(["--config", str(conf)])
    assert partitions_of(b, "from-file") == 3
    b2 = broker_factory(["--config", str(conf), "--num-partitions", "2"])
    assert partitions_of(b2, "from-flag") == 2


def test_bad_values_are_refused_naming_key_value_and_reason(tmp_path):
    cases = [
        ("num.partition = 3\n", ["unknown key 'num.partition'", "did you mean 'num.partitions'"]),
        ('num.partitions = "three"\n', ["num.partitions", '"three"', "expected an integer"]),
        ("num.partitions = 0\n", ["num.partitions = 0", "must be ≥ 1"]),
        ("log.segment.bytes = 10\n", ["log.segment.bytes = 10", "segment.bytes must be in"]),
        ('listeners = "SSL://127.0.0.1:9093"\n', ["listeners", "SSL is not supported"]),
        ("pin.shards = 1\n", ["pin.shards = 1", "expected true or false"]),
        ("this is not toml\n", ["not valid TOML", "line 1"]),
    ]
    for text, wanted in cases:
        conf = tmp_path / "bad.toml"
        conf.write_text(text)
        r = run("--config", str(conf), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"))
        assert r.returncode != 0, text
        assert str(conf) in r.stderr, r.stderr
        for w in wanted:
            assert w in r.stderr, (text, r.stderr)
        # Refused before anything was started or written.
        assert not (tmp_path / "d").exists()
    r = run("--lease-ttl-ms", "5")
    assert r.returncode != 0
    assert "flag --lease-ttl-ms" in r.stderr and "lease.ttl.ms = 5" in r.stderr


def test_json_logs_are_one_object_per_line(broker_factory):
    b = broker_factory(["--log-format", "json"])
    partitions_of(b, "logged")
    b.stop()
    deadline = time.time() + 5
    while "stopped cleanly" not in b.log_text() and time.time() < deadline:
        time.sleep(0.05)  # the reader thread drains what is left
    lines = [line for line in b.log_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all("level" in r and "timestamp" in r and "fields" in r for r in records)
    assert any(r["fields"].get("message") == "laminar is serving" for r in records), lines

"""kafkajs (Node.js) against the real broker: group consume with commits and
a consumer restart that resumes from the committed offsets."""

import json
import pathlib
import shutil
import subprocess

import pytest

JS = pathlib.Path(__file__).parent / "js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "kafkajs").exists(),
    reason="node or kafkajs not installed (scripts/install-test-deps.sh installs them)",
)


def test_kafkajs_group_consume_with_commits(broker_factory):
    broker = broker_factory(["--group-initial-rebalance-delay-ms", "0"])
    r = subprocess.run(["node", str(JS / "group_consume.js"), broker.bootstrap], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(out["first"]) == sorted(f"v{i}" for i in range(100))
    assert sorted(out["second"]) == sorted(f"v{i}" for i in range(100, 110)), "resumed after the commits"
    assert out["committed"] == 110

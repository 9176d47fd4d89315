#!/usr/bin/env bash
# Installs everything Laminar's tests and benchmarks need. Idempotent: each
# step is skipped when its tool is already present, so re-running is cheap.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v kcat >/dev/null || need_apt+=(kcat)
[ -e /usr/include/librdkafka/rdkafka.h ] || need_apt+=(librdkafka-dev)
command -v fio >/dev/null || need_apt+=(fio)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v etcd >/dev/null || need_apt+=(etcd-server)
# etcdctl: the cluster tests read cluster state straight from etcd.
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    # Debian starts etcd as a service on install; tests start their own.
    if [[ " ${need_apt[*]} " == *" etcd-server "* ]]; then
        $SUDO systemctl stop etcd 2>/dev/null || $SUDO service etcd stop 2>/dev/null || true
    fi
fi

py_missing=()
python3 -c 'import confluent_kafka' 2>/dev/null || py_missing+=(confluent-kafka)
python3 -c 'import kafka' 2>/dev/null || py_missing+=(kafka-python)
python3 -c 'import pytest' 2>/dev/null || py_missing+=(pytest)
# kafka-python's lz4 and zstd codecs.
python3 -c 'import lz4' 2>/dev/null || py_missing+=(lz4)
python3 -c 'import zstandard' 2>/dev/null || py_missing+=(zstandard)
# Parses /metrics in tests/test_metrics.py with Prometheus' own parser.
python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus-client)
# tests/test_security.py makes its TLS certificates with it.
python3 -c 'import cryptography' 2>/dev/null || py_missing+=(cryptography)
if [ ${#py_missing[@]} -gt 0 ]; then
    python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}"
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$here/tests/js/package.json" ] && [ ! -d "$here/tests/js/node_modules/kafkajs" ]; then
    (cd "$here/tests/js" && npm install --silent --no-audit --no-fund)
fi

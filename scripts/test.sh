#!/usr/bin/env bash
# Laminar's whole test suite: installs what the tests need (idempotent), then
# format and lint checks, unit and integration tests, and end-to-end tests
# with real Kafka clients against the real binary. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== end-to-end tests (real clients, real binary)"
cargo build --bin laminar
LAMINAR_BIN="$PWD/target/debug/laminar" python3 -m pytest -q tests/

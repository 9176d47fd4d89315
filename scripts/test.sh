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
# Tests that cannot run here say SKIPPED and add a line to this file; the
# count is printed at the end, so a skip is never silent.
export LAMINAR_SKIP_LOG="$PWD/target/skipped-tests.txt"
mkdir -p target
rm -f "$LAMINAR_SKIP_LOG"

echo "== cargo test"
# The Rust end-to-end tests (broker/tests) run the debug binary: its
# overflow checks turn arithmetic on hostile input into a loud failure.
cargo test --workspace
echo "== end-to-end tests (real clients, the release binary users get)"
cargo build --release --bin laminar --bin laminarctl
LAMINAR_BIN="$PWD/target/release/laminar" LAMINARCTL_BIN="$PWD/target/release/laminarctl" \
    python3 -m pytest -q tests/

if [ -s "$LAMINAR_SKIP_LOG" ]; then
    echo "== $(wc -l <"$LAMINAR_SKIP_LOG") test(s) SKIPPED:"
    cat "$LAMINAR_SKIP_LOG"
fi

#!/usr/bin/env bash
# Set up, then run every check and test: formatting, clippy, unit, end-to-end and CLI tests.
# This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

started=$(date +%s)
scripts/setup.sh
scripts/build-handlers.sh
scripts/brokers.sh
scripts/browser-tools.sh
echo "== rustfmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --quiet --workspace --all-targets --exclude uppercase --exclude json-enrich --exclude faulty \
  --exclude wrong-world --exclude needs-wasi -- -D warnings
echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --exclude uppercase --exclude json-enrich --exclude faulty --exclude wrong-world \
  --exclude needs-wasi 2>&1 | tee "$log"
echo "== all checks passed in $(( $(date +%s) - started ))s"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

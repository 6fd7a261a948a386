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
scripts/schema-tools.sh
echo "== rustfmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --quiet --workspace --all-targets --exclude uppercase --exclude json-enrich --exclude faulty \
  --exclude wrong-world --exclude needs-wasi -- -D warnings
echo "== tests (cargo-nextest: every test in its own process; .config/nextest.toml runs broker restarts alone)"
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo nextest run --workspace --exclude uppercase --exclude json-enrich --exclude faulty --exclude wrong-world \
  --exclude needs-wasi 2>&1 | tee "$log"
echo "== all checks passed in $(( $(date +%s) - started ))s"
# One plain closing line for the whole run, from nextest's summary.
sed -nE 's/^ *Summary .* ([0-9]+) tests? run: ([0-9]+) passed(.*)$/\2 passed\3/p' "$log" | tail -n 1 |
  awk '{ f = 0; for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) f = $i; printf "tests: %d passed, %d failed\n", $1, f }'

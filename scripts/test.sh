#!/usr/bin/env bash
# Set up, then run every check and test: formatting, clippy, unit, end-to-end and CLI tests.
# This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

started=$(date +%s)
scripts/setup.sh
echo "== rustfmt"
cargo fmt --all --check
echo "== clippy"
cargo clippy --quiet --workspace --all-targets --exclude uppercase --exclude json-enrich --exclude faulty \
  --exclude wrong-world --exclude needs-wasi -- -D warnings
echo "== tests"
cargo test --workspace --exclude uppercase --exclude json-enrich --exclude faulty --exclude wrong-world \
  --exclude needs-wasi
echo "== all checks passed in $(( $(date +%s) - started ))s"

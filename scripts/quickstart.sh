#!/usr/bin/env bash
# Set up, then run the quickstart pipeline: generated events → json-enrich → stdout.
# No broker needed. Malformed events land in quickstart-dead-letter.jsonl with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# SLUICE_SKIP_SETUP=1 runs the quickstart on what an earlier setup built (the test suite does, as
# its own setup has just run).
[ "${SLUICE_SKIP_SETUP:-}" = 1 ] || scripts/setup.sh
exec "$CARGO_TARGET_DIR/debug/sluice" run pipelines/quickstart.yaml

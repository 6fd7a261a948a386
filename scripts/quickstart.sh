#!/usr/bin/env bash
# Set up, then run the quickstart pipeline: generated events → json-enrich → stdout.
# No broker needed. Malformed events land in quickstart-dead-letter.jsonl with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
scripts/setup.sh
exec "$CARGO_TARGET_DIR/debug/sluice" run pipelines/quickstart.yaml

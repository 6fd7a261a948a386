#!/usr/bin/env bash
# Build dist/{{name}}.wasm with componentize-py (pip install componentize-py==0.25.1).
# --stub-wasi: CPython's WASI imports (files, sockets, clocks) become traps, so the component
# imports only what the host offers every handler.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p dist
componentize-py -d wit -w handler componentize --stub-wasi app -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"

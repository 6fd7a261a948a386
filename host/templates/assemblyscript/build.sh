#!/usr/bin/env bash
# Build dist/{{name}}.wasm: asc (npm `assemblyscript` 0.28.20) compiles assembly/handler.ts to a
# core WebAssembly module (asconfig.json), then `sluice plugin componentize` wraps it into a
# component of the world `handler` in wit/world.wit.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p dist
# The transform gives the exports their component names. It is named here, not in asconfig.json,
# because asc 0.28 resolves a relative transform path from a config file as a package name.
asc --config asconfig.json --transform ./assembly/sluice/names.mjs
sluice plugin componentize dist/handler.core.wasm --wit wit --world handler -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"

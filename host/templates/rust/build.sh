#!/usr/bin/env bash
# Build dist/{{name}}.wasm: a core module for wasm32-unknown-unknown (no WASI at all), turned into
# a component by `sluice plugin componentize`.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --quiet --release --target wasm32-unknown-unknown
mkdir -p dist
sluice plugin componentize "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/{{crate}}.wasm" \
  -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"

#!/usr/bin/env bash
# Build the example and test plugins into plugins/dist/*.wasm.
#
# Rust handlers compile for wasm32-unknown-unknown (so they import no WASI at all), then
# `sluice plugin componentize` wraps each core module into a component.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for target in wasm32-unknown-unknown wasm32-wasip2; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
# The `sluice` binary that wraps core modules into components: debug by default, or
# SLUICE_PROFILE=release (the container build).
profile="${SLUICE_PROFILE:-dev}"
bin_dir=debug
[ "$profile" = dev ] || bin_dir="$profile"

plugins=(uppercase json-enrich faulty wrong-world)
# `--list`: the file names this script puts in plugins/dist (scripts/image.sh copies these).
if [ "${1:-}" = --list ]; then
  printf '%s.wasm\n' "${plugins[@]}" needs-wasi
  exit 0
fi
args=()
for p in "${plugins[@]}"; do args+=(-p "$p"); done
# Not --quiet: a first build takes minutes, and cargo's progress shows it is moving.
cargo build --target wasm32-unknown-unknown --profile plugin "${args[@]}"
cargo build -p sluice --bin sluice --profile "$profile"

mkdir -p plugins/dist
for p in "${plugins[@]}"; do
  module="$CARGO_TARGET_DIR/wasm32-unknown-unknown/plugin/${p//-/_}.wasm"
  "$CARGO_TARGET_DIR/$bin_dir/sluice" plugin componentize "$module" -o "plugins/dist/$p.wasm"
done
# A test plugin that imports WASI on purpose: wasm32-wasip2 makes the component itself.
cargo build --target wasm32-wasip2 --profile plugin -p needs-wasi
cp "$CARGO_TARGET_DIR/wasm32-wasip2/plugin/needs_wasi.wasm" plugins/dist/needs-wasi.wasm

echo "built: $(cd plugins/dist && ls *.wasm | tr '\n' ' ')"

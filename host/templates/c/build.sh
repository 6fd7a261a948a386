#!/usr/bin/env bash
# Build dist/{{name}}.wasm: C bindings for the world in wit/ from `sluice plugin bindings c`,
# clang for wasm32-wasi against wasi-libc (see README.md for the packages), then
# `sluice plugin componentize`, which takes the world from build/handler_component_type.o.
# -lc-printscan-long-double keeps printf and strtod from pulling in WASI's fd_write (the host
# refuses a component that imports it); --strip-debug drops wasi-libc's debug sections.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build dist
sluice plugin bindings c --wit wit --world handler -o build >/dev/null
"${CC:-clang}" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -I build \
  handler.c build/handler.c build/handler_component_type.o \
  -lc-printscan-long-double -Wl,--strip-debug -o build/{{name}}.core.wasm
sluice plugin componentize build/{{name}}.core.wasm -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"

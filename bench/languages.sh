#!/usr/bin/env bash
# The per-language figures of docs/languages.md: for each LANG, pipelines/languages/LANG-enrich.yaml
# run with one message on an empty compile cache (cold start: Cranelift compiles the component),
# again with the cache filled (warm start), then with 20,000 messages; per message =
# (20,000-message run − warm start) / 20,000. Medians of REPS runs (default 5).
#
#   cargo build --release -p sluice && scripts/build-plugins.sh && scripts/build-handlers.sh
#   bench/languages.sh rust python js ts c zig as go
#
# SLUICE picks the binary (default target/release/sluice).
set -euo pipefail
cd "$(dirname "$0")/.."
sluice=${SLUICE:-${CARGO_TARGET_DIR:-target}/release/sluice}
reps=${REPS:-5}

seconds() { # run the command, print its wall time in seconds
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f\n", b - a }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

run() { # count cache-dir pipeline
  ENRICH_COUNT=$1 "$sluice" --cache-dir "$2" run --admin-addr off --no-watch "$3"
}

printf "%-6s %12s %10s %10s %14s\n" lang size cold_s warm_s per_msg_us
for lang in "$@"; do
  pipeline=pipelines/languages/$lang-enrich.yaml
  plugin=$(awk '/plugin:/ { print $2; exit }' "$pipeline")
  size=$(stat -c %s "pipelines/languages/$plugin")
  cold=() warm=() per=()
  for _ in $(seq "$reps"); do
    cache=$(mktemp -d)
    cold+=("$(seconds run 1 "$cache" "$pipeline")")
    w=$(seconds run 1 "$cache" "$pipeline")
    warm+=("$w")
    full=$(seconds run 20000 "$cache" "$pipeline")
    per+=("$(awk -v f="$full" -v w="$w" 'BEGIN { printf "%.2f\n", (f - w) / 20000 * 1e6 }')")
    rm -rf "$cache"
  done
  printf "%-6s %12s %10s %10s %14s\n" "$lang" "$size" \
    "$(printf '%s\n' "${cold[@]}" | median)" "$(printf '%s\n' "${warm[@]}" | median)" \
    "$(printf '%s\n' "${per[@]}" | median)"
done

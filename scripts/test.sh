#!/usr/bin/env bash
# Set up, then run every check and test: formatting, clippy (during the test build), unit,
# end-to-end and CLI tests.
# This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

started=$(date +%s)
# Each step's time, so that a slower CI run shows where the time went.
step_started=$started
step_name=""
step() {
  local now
  now=$(date +%s)
  [ -z "$step_name" ] || echo "== $step_name took $((now - step_started))s"
  step_name=$1
  step_started=$now
  echo "== $1"
}
# Starting the brokers and installing tools (browser, schema validator, the handlers'
# toolchains) mostly waits on the network and on processes starting: it runs beside the first
# build, which keeps both cores busy. One after another, since two apt-get runs would collide.
prepared=$(mktemp)
(scripts/brokers.sh && scripts/browser-tools.sh && scripts/schema-tools.sh &&
  scripts/helm-tools.sh && scripts/container-tools.sh && scripts/build-handlers.sh tools) >"$prepared" 2>&1 &
preparing=$!
step "setup (WebAssembly targets, example plugins; brokers and tools beside it)"
if ! scripts/setup.sh; then
  kill "$preparing" 2>/dev/null || true
  echo "setup failed (above); what ran beside it:" >&2
  cat "$prepared" >&2
  exit 1
fi
step "brokers and tools (started beside the setup)"
if ! wait "$preparing"; then
  cat "$prepared"
  echo "starting the brokers or installing tools failed (above)" >&2
  exit 1
fi
cat "$prepared"
rm -f "$prepared"
step "guest-language handlers"
scripts/build-handlers.sh
step "rustfmt"
cargo fmt --all --check
step "tests: build, linted by clippy"
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Clippy lints the workspace's own crates while they are compiled for the tests: clippy-driver
# stands in for rustc for them (what `cargo clippy` does in check mode), so linting costs no
# second compile of every dependency (5 minutes of a cold run). Lints are errors, as with
# `cargo clippy --all-targets -- -D warnings`: the test build compiles every lib, test and bin
# of the workspace, and `cargo build --bins` the binaries no test runs. The wrapper is cargo
# configuration, not the environment, so the cargo that tests run (a `sluice new` project's
# build) does not lint.
clippy_driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
lint=(--config "build.rustc-workspace-wrapper=\"$clippy_driver\"")
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
workspace=(--workspace --exclude uppercase --exclude json-enrich --exclude faulty --exclude wrong-world
  --exclude needs-wasi)
cargo nextest run --no-run "${lint[@]}" "${workspace[@]}"
cargo build --quiet "${lint[@]}" "${workspace[@]}" --bins
step "tests: running (cargo-nextest: every test in its own process; .config/nextest.toml runs broker restarts alone)"
cargo nextest run "${lint[@]}" "${workspace[@]}" 2>&1 | tee "$log"

step "a RabbitMQ-only host (--no-default-features --features rabbitmq): no other broker client linked, its own tests pass"
for features in rabbitmq rabbitmq,default-build-deps; do
  if cargo tree -q -p sluice --no-default-features --features "$features" -e normal --prefix none |
    grep -E '^(rdkafka|aws-sdk-sqs|azure_storage_queue|azure_identity|zeromq) '; then
    echo "a host built with --features $features links another broker family's client (above)" >&2
    exit 1
  fi
done
echo "(not run again here, loudly: cli::sluice_new_projects_build_and_pass_their_own_tests_after_a_move and"
echo " cli::sluice_test_runs_pipeline_unit_tests_and_shows_a_diff build or run handlers in several languages and"
echo " use no broker; they ran above in the default build, and take minutes. Nor container::*: the image is"
echo " the default build's, and they ran above)"
# `default-build-deps` turns on in shared, broker-neutral dependencies (HTTP, TLS, utility crates)
# the features the default build has, so that this build reuses its compiled dependencies (47 s
# instead of 186 s on the CI machine); it adds no broker client (the `cargo tree` check above is
# of the build as a user makes it, without it).
cargo nextest run --no-run "${lint[@]}" -p sluice --no-default-features --features rabbitmq,default-build-deps
step "RabbitMQ-only tests: running"
cargo nextest run "${lint[@]}" -p sluice --no-default-features --features rabbitmq,default-build-deps \
  -E 'not test(/^cli::sluice_(new_projects_build|test_runs_pipeline_unit_tests)/) and not test(/^container::/)' 2>&1 | tee -a "$log"

step "done"
echo "== all checks passed in $(( $(date +%s) - started ))s"
# One plain closing line for the whole run, from nextest's summaries (one per run above).
sed -nE 's/^ *Summary .* [0-9]+ tests? run: ([0-9]+) passed(.*)$/\1 passed\2/p' "$log" |
  awk '{ p += $1; for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) f += $i }
       END { printf "tests: %d passed, %d failed\n", p, f }'

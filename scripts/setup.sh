#!/usr/bin/env bash
# Set up a machine for Sluice: the WebAssembly targets, the host, the example plugins.
# Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
for target in wasm32-unknown-unknown wasm32-wasip2; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
echo "setup: building the host and the example plugins (a first build takes 5-10 minutes on 2 cores; later ones seconds)"
scripts/build-plugins.sh

# `sluice` on PATH, as the README, the guides and `sluice new`'s projects call it: a link in
# cargo's bin directory (on PATH wherever rustup installed Rust) to the binary just built, so it
# follows every rebuild. A `sluice` there that is not a link (`cargo install --path host
# --locked`, a release build) is left alone.
# The link must not depend on where it is read from: an absolute target directory.
binary="$(cd "$CARGO_TARGET_DIR" && pwd)/debug/sluice"
cargo_home="${CARGO_HOME:-${HOME:+$HOME/.cargo}}"
bin_dir="${cargo_home:+$cargo_home/bin}"
if [ -n "$bin_dir" ] && [ -d "$bin_dir" ] && { [ -L "$bin_dir/sluice" ] || [ ! -e "$bin_dir/sluice" ]; }; then
  ln -sfn "$binary" "$bin_dir/sluice"
  echo "setup: $bin_dir/sluice -> $binary"
fi
command -v sluice >/dev/null ||
  echo "setup: sluice is not on PATH; add ${bin_dir:-the cargo bin directory} to it (or run $binary)" >&2

#!/usr/bin/env bash
# Build the Sluice container image from the Dockerfile, the one file users build with.
#
#   scripts/image.sh [--tag NAME] [--binary PATH]
#
# With a Docker engine, or podman and a registry that serves the official images, this is
# `docker build .`: the host and the example plugins compile in the Dockerfile's Rust stage.
# Where no registry is reachable (this project's CI machine), the Rust image cannot be pulled:
# the host is built here (`--binary PATH` names one already built, a debug build is fine for
# tests) and handed to the Dockerfile's `prebuilt` stage through target/image/, and the runtime
# base is made from Debian's packages by scripts/container-tools.sh. Either way the runtime stage,
# what users run, is the same lines of the same Dockerfile.
# Default tag: localhost/sluice:<version>, also tagged localhost/sluice:latest.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

tag=""
binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --binary) binary=$(realpath "$2"); shift 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
version=$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml | head -1)
tag=${tag:-localhost/sluice:$version}

if command -v docker >/dev/null && docker info >/dev/null 2>&1 && [ -z "$binary" ]; then
  echo "image.sh: docker build (official bases, host compiled in the image)" >&2
  docker build -t "$tag" .
  exit 0
fi

base=$(scripts/container-tools.sh)
# The podman settings that start a container on this machine (scripts/container-tools.sh).
export CONTAINERS_CONF="${SLUICE_TOOLS:-/var/tmp/sluice-tools}/containers.conf"
# One build of the image at a time (tests run in parallel, and share target/image/).
mkdir -p target
exec 9>target/image.lock
flock 9
artifacts=prebuilt
if [ -z "$binary" ] && [ "$base" = docker.io/library/debian:bookworm-slim ] &&
  timeout 120 podman pull -q docker.io/library/rust:1.95-bookworm >/dev/null 2>&1; then
  artifacts=build
fi
if [ "$artifacts" = prebuilt ]; then
  if [ -z "$binary" ]; then
    echo "image.sh: no registry serves the Rust image: building the host (release) and plugins here" >&2
    SLUICE_PROFILE=release scripts/build-plugins.sh >&2
    binary="$CARGO_TARGET_DIR/release/sluice"
  elif [ ! -f plugins/dist/json-enrich.wasm ]; then
    scripts/build-plugins.sh >&2
  fi
  rm -rf target/image
  mkdir -p target/image/plugins/dist
  # Symbols and debug information are for debuggers, not for an image (as the Rust stage does):
  # a release build's binary loses a fifth, a debug build's several times that.
  strip -o target/image/sluice "$binary"
  # The plugins the Rust stage builds, not the guest-language ones plugins/dist may also hold.
  for plugin in $(scripts/build-plugins.sh --list); do
    cp "plugins/dist/$plugin" target/image/plugins/dist/
  done
fi
# The base made here already has the packages the runtime stage installs: no network needed.
network=()
[ "$base" = docker.io/library/debian:bookworm-slim ] || network=(--network=none)
echo "image.sh: podman build (runtime base $base, host and plugins from the '$artifacts' stage)" >&2
podman build --quiet "${network[@]}" --pull=never --build-arg "RUNTIME_BASE=$base" \
  --build-arg "ARTIFACTS=$artifacts" --layers=true -t "$tag" -t localhost/sluice:latest . >/dev/null
# What earlier builds left unnamed (their prebuilt stages): gone, or every test run would add one.
podman image prune -f >/dev/null
echo "$tag"

#!/usr/bin/env bash
# What scripts/image.sh needs to build the container image on a machine with no Docker engine and
# no registry: podman (Debian's), and a Debian base image; and podman-compose, for the compose file. The base is the official
# debian:bookworm-slim when a registry serves it; otherwise it is made here from Debian's own
# packages (`debootstrap --variant=minbase`, then `podman import`) as
# localhost/sluice-debian:bookworm-slim, with the two packages the runtime stage needs (libssl3,
# ca-certificates) already in it, so building the image needs no network either.
# Idempotent: when podman and a base are there this is a quick no-op. Prints the base's name last.
#
# It also writes $SLUICE_TOOLS/containers.conf, which scripts/image.sh and the container tests
# use (CONTAINERS_CONF): empty where podman's defaults start a container, and where they do not
# (a sandbox that refuses crun's cgroup setup and raising rlimits past its own, as this project's
# CI machine does), runc and limits the sandbox allows.
set -euo pipefail

LOCAL_BASE=localhost/sluice-debian:bookworm-slim
OFFICIAL_BASE=docker.io/library/debian:bookworm-slim
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Tests run in parallel: one install at a time.
state=${SLUICE_TOOLS:-/var/tmp/sluice-tools}
mkdir -p "$state"
exec 9>"$state/container.lock"
flock 9

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "container-tools: installing ${missing[*]} (apt-get)" >&2
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { as_root apt-get update -q >&2 && as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
fi

# podman-compose, to check deploy/compose/compose.yaml (tests/compose/check.py): pinned, from PyPI,
# outside any site-packages (Debian's 1.0.3 has no `config`).
PODMAN_COMPOSE=1.6.0
if ! PYTHONPATH="$state/compose" python3 -S -c "
import sys
from importlib.metadata import version
sys.exit(0 if version('podman-compose') == '$PODMAN_COMPOSE' else 1)" 2>/dev/null; then
  echo "container-tools: installing podman-compose $PODMAN_COMPOSE (pip) into $state/compose" >&2
  rm -rf "$state/compose"
  python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$state/compose" \
    "podman-compose==$PODMAN_COMPOSE" >&2
fi

conf="$state/containers.conf"
[ -f "$conf" ] || : >"$conf"
export CONTAINERS_CONF="$conf"
# Whether podman starts a container from $1 here, with the settings in $conf.
starts() { podman run --rm --network=none "$1" true >/dev/null 2>"$state/podman-run.log"; }
runnable() {
  starts "$1" && return 0
  : >"$conf"
  starts "$1" && return 0
  command -v runc >/dev/null ||
    as_root apt-get install -y -q --no-install-recommends runc >&2
  # nproc: this sandbox refuses 65536 and accepts 10000.
  {
    echo "# Written by scripts/container-tools.sh: podman's defaults do not start a container here:"
    echo "# $(head -c 300 "$state/podman-run.log" | tr '\n' ' ')"
    echo "[containers]"
    echo "default_ulimits = [\"nofile=$(ulimit -Hn):$(ulimit -Hn)\", \"nproc=10000:10000\"]"
    echo "[engine]"
    echo "runtime = \"runc\""
  } >"$conf"
  starts "$1" || {
    cat "$state/podman-run.log" >&2
    echo "container-tools: podman cannot start a container here (above)" >&2
    exit 1
  }
}

for base in "$OFFICIAL_BASE" "$LOCAL_BASE"; do
  if podman image exists "$base"; then
    runnable "$base"
    echo "$base"
    exit 0
  fi
done
# A registry answers at once or not at all here (no DNS): a short bound is enough.
if timeout 60 podman pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
  runnable "$OFFICIAL_BASE"
  echo "$OFFICIAL_BASE"
  exit 0
fi
echo "container-tools: no registry serves $OFFICIAL_BASE; making $LOCAL_BASE with debootstrap from $MIRROR (about a minute)" >&2
root=$(mktemp -d "$state/rootfs.XXXXXX")
trap 'as_root rm -rf "$root"' EXIT
as_root debootstrap --variant=minbase --include=libssl3,ca-certificates bookworm "$root" "$MIRROR" \
  >"$state/debootstrap.log" 2>&1 ||
  { cat "$state/debootstrap.log" >&2; echo "container-tools: debootstrap failed (above)" >&2; exit 1; }
# What debian:bookworm-slim leaves out too: package lists and caches, documentation, locales.
as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/log/*.log "$root"/var/log/apt/*
as_root tar -C "$root" -c . | podman import --quiet --change 'CMD ["bash"]' - "$LOCAL_BASE" >/dev/null
runnable "$LOCAL_BASE"
echo "$LOCAL_BASE"

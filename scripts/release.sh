#!/usr/bin/env bash
# Build the release layout: everything an installed `sluice` needs, nothing from this checkout.
#
#   scripts/release.sh [--binary PATH] [--out DIR] [--no-archive]
#
# Writes DIR/sluice-<version>-<target>/ (default DIR: dist) and a .tar.gz of it, with
# DIR/sluice.tar.gz a link to the newest:
#   bin/sluice                                  the host (a release build unless --binary names one)
#   share/sluice/sdk/, share/sluice/wit/        the Rust SDK and the WIT contracts (0.1, 0.2), as
#                                               `sluice new --lang rust` copies them into a project
#   share/sluice/templates/                     the `sluice new` templates (also inside the binary)
#   share/sluice/sluice.schema.json             the pipeline schema of this build (editors)
#   share/man/man1/sluice.1                     the man page
#   share/bash-completion/completions/sluice, share/zsh/site-functions/_sluice,
#   share/fish/vendor_completions.d/sluice.fish shell completions
#   share/doc/sluice/README.md                  the README
# A prefix layout: `tar -xzf sluice-*.tar.gz -C ~/.local --strip-components 1` installs it into
# ~/.local (bin/sluice on PATH there). Idempotent: the layout is written afresh each time.
set -euo pipefail

# Paths given are taken from where the script is called.
binary="" out="" archive=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$(realpath "$2")"; shift 2 ;;
    --out) out="$(realpath -m "$2")"; shift 2 ;;
    --no-archive) archive=0; shift ;;
    *) echo "release: unknown argument $1 (expected --binary PATH, --out DIR, --no-archive)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
out="${out:-$PWD/dist}"
if [ -z "$binary" ]; then
  echo "release: building sluice (release profile; a first build takes 10-15 minutes on 2 cores)"
  cargo build -p sluice --release --locked
  binary="$CARGO_TARGET_DIR/release/sluice"
fi
[ -x "$binary" ] || { echo "release: $binary is not an executable" >&2; exit 1; }

version=$("$binary" --version | awk '{ print $2 }')
# The target triple of this machine (what the binary was built for, unless it was cross-built:
# SLUICE_TARGET names it then).
target="${SLUICE_TARGET:-$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')}"
target="${target:-$(uname -m)-unknown-linux-gnu}"
name="sluice-$version-$target"
mkdir -p "$out"
root="$(cd "$out" && pwd)/$name"
rm -rf "$root" "$root.tar.gz"
mkdir -p "$root/bin" "$root/share/sluice" "$root/share/man/man1" \
  "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
  "$root/share/fish/vendor_completions.d" "$root/share/doc/sluice"

cp "$binary" "$root/bin/sluice"
bin="$root/bin/sluice"
# The SDK exactly as `sluice new` copies it into a project (its manifest stands alone): taken
# from such a project, so there is one source for both.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$bin" new sdk-copy --lang rust --dir "$scratch" >/dev/null
cp -r "$scratch/sdk-copy/vendor/sluice-sdk" "$root/share/sluice/sdk"
mkdir -p "$root/share/sluice/wit"
cp -r wit/v0.1 wit/v0.2 "$root/share/sluice/wit/"
cp -r host/templates "$root/share/sluice/templates"
"$bin" schema >"$root/share/sluice/sluice.schema.json"
"$bin" man >"$root/share/man/man1/sluice.1"
"$bin" completions bash >"$root/share/bash-completion/completions/sluice"
"$bin" completions zsh >"$root/share/zsh/site-functions/_sluice"
"$bin" completions fish >"$root/share/fish/vendor_completions.d/sluice.fish"
cp README.md "$root/share/doc/sluice/README.md"

if [ "$archive" = 1 ]; then
  tar -czf "$root.tar.gz" -C "$(dirname "$root")" "$name"
  ln -sfn "$name.tar.gz" "$out/sluice.tar.gz"
  echo "release: $root.tar.gz ($(du -h "$root.tar.gz" | cut -f1)); $out/sluice.tar.gz links to it"
fi
echo "release: $root"
